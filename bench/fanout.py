"""Live-feed fan-out (issue 5): N SSE and N WebSocket clients on one cloud
while samples arrive at a steady rate; the time from a sample's arrival at
ingest to its delivery to each client, p50 and p99, and the cloud's CPU.

    .venv/bin/python -m bench.fanout [--clients 200] [--rate 1000] [--seconds 20]

The sender stamps each sample with the time it hands it to gRPC (`sent`, a
metric), on this same machine's clock; each client, in one asyncio process
of its own, notes when the sample reached it. Results go to
bench/results/fanout.json.
"""

import argparse
import asyncio
import json
import multiprocessing
import re
import statistics
import tempfile
import time
from array import array
from pathlib import Path
from typing import Any

import grpc
import websockets

from bench.common import Cloud, cpu_seconds, write_result
from edgewire.sample import Sample
from edgewire.v1 import edgewire_pb2 as pb
from edgewire.v1 import edgewire_pb2_grpc as pb_grpc
from edgewire.wire import to_proto


def send(grpc_port: int, rate: float, seconds: float) -> int:
    """Batches every 20 ms at `rate` samples/s; how many were acknowledged."""
    outbox: list[pb.EdgeMessage] = [
        pb.EdgeMessage(hello=pb.Hello(edge_id="bench", software_version="bench"))
    ]
    per_batch = max(1, round(rate * 0.02))
    acked = 0
    with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
        stub = pb_grpc.TelemetryStub(channel)  # type: ignore[no-untyped-call]

        def messages() -> Any:
            yield outbox[0]
            seq = 0
            started = time.monotonic()
            batch_id = 0
            while time.monotonic() - started < seconds:
                batch_id += 1
                now = time.time()
                samples = [Sample("fan", 1, seq + i, now, {"sent": now}) for i in range(per_batch)]
                seq += per_batch
                batch = pb.Batch(batch_id=batch_id, samples=[to_proto(s) for s in samples])
                yield pb.EdgeMessage(batch=batch)
                next_at = started + batch_id * 0.02
                time.sleep(max(0.0, next_at - time.monotonic()))

        for reply in stub.Ingest(messages()):
            if reply.WhichOneof("kind") == "ack":
                acked += reply.ack.stored
    return acked


# The clients note arrival times and pull each sample's `sent` out of the
# raw bytes with one regular expression (C speed): full JSON parsing of
# 400,000 samples a second in Python would make the clients, not the cloud,
# the thing measured. Each client still sees every sample's own stamp.
SENT = re.compile(rb'"sent":([0-9.e+-]+)')


async def sse_client(port: int, latencies: "array[float]", ready: asyncio.Event) -> None:
    """A bare HTTP/1.1 SSE reader: whole events only (up to the last blank line)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        b"GET /api/stream?device=fan HTTP/1.1\r\nHost: bench\r\nAccept: text/event-stream\r\n\r\n"
    )
    await writer.drain()
    ready.set()
    pending = b""
    try:
        while data := await reader.read(1 << 18):
            now = time.time()
            pending += data
            cut = pending.rfind(b"\n\n")
            if cut < 0:
                continue
            whole, pending = pending[: cut + 2], pending[cut + 2 :]
            latencies.extend(now - float(sent) for sent in SENT.findall(whole))
    finally:
        writer.close()


async def ws_client(port: int, latencies: "array[float]", ready: asyncio.Event) -> None:
    async with websockets.connect(f"ws://127.0.0.1:{port}/api/ws", max_size=2**22) as socket:
        await socket.send(json.dumps({"subscribe": {"devices": ["fan"]}}))
        ready.set()
        async for raw in socket:
            now = time.time()
            data = raw.encode() if isinstance(raw, str) else raw
            latencies.extend(now - float(sent) for sent in SENT.findall(data))


async def _clients(
    port: int, sse: int, ws: int, seconds: float, started: Any
) -> tuple[bytes, bytes, float]:
    sse_latencies, ws_latencies = array("d"), array("d")
    ready = [asyncio.Event() for _ in range(sse + ws)]
    tasks = [asyncio.create_task(sse_client(port, sse_latencies, ready[i])) for i in range(sse)]
    tasks += [asyncio.create_task(ws_client(port, ws_latencies, ready[sse + i])) for i in range(ws)]
    await asyncio.gather(*(event.wait() for event in ready))
    started.set()
    cpu0 = time.process_time()
    await asyncio.sleep(seconds)
    cpu = time.process_time() - cpu0
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return sse_latencies.tobytes(), ws_latencies.tobytes(), cpu


def client_process(port: int, sse: int, ws: int, seconds: float, started: Any, out: Any) -> None:
    """One process holding `sse` + `ws` clients; sends back their latencies."""
    out.send(asyncio.run(_clients(port, sse, ws, seconds, started)))
    out.close()


def percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {"count": 0}
    ordered = sorted(values)
    return {
        "count": len(ordered),
        "p50_ms": round(statistics.median(ordered) * 1000, 1),
        "p99_ms": round(ordered[int(len(ordered) * 0.99) - 1] * 1000, 1),
        "max_ms": round(ordered[-1] * 1000, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clients", type=int, default=200, help="SSE clients, and as many WS")
    parser.add_argument("--rate", type=float, default=1000, help="samples/s in")
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--client-procs", type=int, default=2, help="processes the clients share")
    parser.add_argument("--out", default="fanout", help="result name under bench/results/")
    parser.add_argument("cloud_args", nargs="*", help="extra `edgewire cloud` arguments (after --)")
    args = parser.parse_args()
    spawn = multiprocessing.get_context("spawn")
    with tempfile.TemporaryDirectory(prefix="edgewire-bench-fanout-") as scratch:
        # Every client comes from 127.0.0.1: lift the per-address limit.
        no_limit = ["--http-connections-per-ip", "0", "--grpc-subscriptions-per-ip", "0"]
        cloud = Cloud(Path(scratch), *no_limit, *args.cloud_args).start()
        assert cloud.process is not None
        workers = []
        try:
            for k in range(args.client_procs):
                share = range(k, args.clients, args.client_procs)
                started = spawn.Event()
                receive, out = spawn.Pipe(duplex=False)
                process = spawn.Process(
                    target=client_process,
                    args=(cloud.http_port, len(share), len(share), args.seconds + 3, started, out),
                )
                process.start()
                workers.append((process, started, receive))
            for _, started, _ in workers:
                if not started.wait(120):
                    raise RuntimeError("clients did not connect")
            print(f"{2 * args.clients} clients connected", flush=True)
            time.sleep(1)
            cpu_before = cpu_seconds(cloud.process.pid)
            started_at = time.monotonic()
            acked = send(cloud.grpc_port, args.rate, args.seconds)
            wall = time.monotonic() - started_at
            cpu = cpu_seconds(cloud.process.pid) - cpu_before
            sse, wsl, client_cpu = array("d"), array("d"), 0.0
            for process, _, receive in workers:
                sse_bytes, ws_bytes, used = receive.recv()
                sse.frombytes(sse_bytes)
                wsl.frombytes(ws_bytes)
                client_cpu += used
                process.join()
        finally:
            for process, _, _ in workers:
                process.kill()
            cloud.process.terminate()
            cloud.process.wait(30)
    expected = acked * args.clients
    write_result(
        args.out,
        {
            "clients": {"sse": args.clients, "websocket": args.clients},
            "client_processes": args.client_procs,
            "cloud_args": args.cloud_args,
            "rate_in": args.rate,
            "seconds": args.seconds,
            "samples_acked": acked,
            "sse": {**percentiles(list(sse)), "delivered_share": round(len(sse) / expected, 4)},
            "websocket": {
                **percentiles(list(wsl)),
                "delivered_share": round(len(wsl) / expected, 4),
            },
            "cloud_cpu_share_of_one_core": round(cpu / wall, 2),
            "clients_cpu_share_of_one_core": round(client_cpu / (args.seconds + 3), 2),
        },
    )


if __name__ == "__main__":
    main()
