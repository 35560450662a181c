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
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import grpc
import httpx
import websockets

from bench.common import Cloud, cpu_seconds, write_result
from edgewire.sample import Sample
from edgewire.v1 import edgewire_pb2 as pb
from edgewire.v1 import edgewire_pb2_grpc as pb_grpc
from edgewire.wire import to_proto


def send(grpc_port: int, rate: float, seconds: float, done: threading.Event) -> int:
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
    done.set()
    return acked


async def sse_client(url: str, latencies: list[float], ready: asyncio.Event) -> None:
    async with (
        httpx.AsyncClient(timeout=None) as client,
        client.stream("GET", url + "/api/stream?device=fan") as response,
    ):
        ready.set()
        data = None
        async for line in response.aiter_lines():
            if line.startswith("data: "):
                data = line[6:]
            elif not line and data is not None:
                sample = json.loads(data)
                latencies.append(time.time() - sample["m"]["sent"])
                data = None


async def ws_client(url: str, latencies: list[float], ready: asyncio.Event) -> None:
    async with websockets.connect(url + "/api/ws", max_size=2**20) as socket:
        await socket.send(json.dumps({"subscribe": {"devices": ["fan"]}}))
        ready.set()
        async for raw in socket:
            message = json.loads(raw)
            now = time.time()
            for sample in message.get("samples", ()):
                latencies.append(now - sample["m"]["sent"])


async def run_clients(
    http: str, ws: str, clients: int, seconds: float
) -> tuple[list[float], list[float]]:
    sse_latencies: list[float] = []
    ws_latencies: list[float] = []
    ready = [asyncio.Event() for _ in range(2 * clients)]
    tasks = [asyncio.create_task(sse_client(http, sse_latencies, ready[i])) for i in range(clients)]
    tasks += [
        asyncio.create_task(ws_client(ws, ws_latencies, ready[clients + i])) for i in range(clients)
    ]
    await asyncio.gather(*(event.wait() for event in ready))
    print(f"{2 * clients} clients connected", flush=True)
    await asyncio.sleep(seconds)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return sse_latencies, ws_latencies


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
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="edgewire-bench-fanout-") as scratch:
        cloud = Cloud(Path(scratch)).start()
        assert cloud.process is not None
        try:
            http = f"http://127.0.0.1:{cloud.http_port}"
            ws = f"ws://127.0.0.1:{cloud.http_port}"
            result_box: dict[str, Any] = {}
            done = threading.Event()

            def clients() -> None:
                result_box["latencies"] = asyncio.run(
                    run_clients(http, ws, args.clients, args.seconds + 3)
                )

            client_thread = threading.Thread(target=clients)
            client_thread.start()
            time.sleep(max(2.0, args.clients / 50))  # let them connect
            cpu_before = cpu_seconds(cloud.process.pid)
            started = time.monotonic()
            acked = send(cloud.grpc_port, args.rate, args.seconds, done)
            wall = time.monotonic() - started
            cpu = cpu_seconds(cloud.process.pid) - cpu_before
            client_thread.join()
        finally:
            cloud.process.terminate()
            cloud.process.wait(30)
    sse, wsl = result_box["latencies"]
    expected = acked * args.clients
    write_result(
        "fanout",
        {
            "clients": {"sse": args.clients, "websocket": args.clients},
            "rate_in": args.rate,
            "seconds": args.seconds,
            "samples_acked": acked,
            "sse": {**percentiles(sse), "delivered_share": round(len(sse) / expected, 4)},
            "websocket": {**percentiles(wsl), "delivered_share": round(len(wsl) / expected, 4)},
            "cloud_cpu_share_of_one_core": round(cpu / wall, 2),
        },
    )


if __name__ == "__main__":
    main()
