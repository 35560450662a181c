"""Store-and-forward figures (issue 3), measured with real processes.

    .venv/bin/python -m bench.custody              # everything
    .venv/bin/python -m bench.custody rate drain   # some of it

- rate:     samples/s from a C publisher (mosquitto_pub -l, one sample per
            QoS 1 message) through Mosquitto, the edge (durable buffer) and
            the cloud, against what a C subscriber (mosquitto_sub) receives
            of the same stream from the same broker, in the same run; and a
            naive design (paho callback -> one unary gRPC call per sample,
            committed one by one) for contrast.
- drain:    time to drain a backlog of 1,000,000 buffered samples, and the
            edge's peak RSS while draining.
- recovery: SIGKILL the edge under load; time from restart until the first
            new sample is stored in the cloud.
- disk:     bytes on disk per buffered sample.
Results go to bench/results/custody.json.
"""

import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from bench.common import (
    Cloud,
    Edge,
    cpu_seconds,
    publish_lines,
    publish_many,
    sample_lines,
    wait_until,
    write_result,
)
from edge.buffer import Caps, SqliteBuffer
from edgewire.mosquitto import PrivateMosquitto
from edgewire.procs import free_port, stop
from edgewire.sample import Sample
from edgewire.wire import encode_sample

RATE_SAMPLES = 200_000
DRAIN_SAMPLES = 1_000_000


def c_subscriber_rate(broker: PrivateMosquitto, n: int) -> float:
    sub = subprocess.Popen(
        ["mosquitto_sub", "-h", "127.0.0.1", "-p", str(broker.port), "-q", "1",
         "-t", "edgewire/+/telemetry", "-C", str(n)],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    time.sleep(0.5)
    started = time.monotonic()
    publishers = publish_many(broker.port, "c-sub", n)
    try:
        sub.wait(timeout=300)
    finally:
        sub.kill()
    elapsed = time.monotonic() - started
    for pub in publishers:
        pub.wait(timeout=60)
    return n / elapsed


def edgewire_rate(broker: PrivateMosquitto, workdir: Path, n: int) -> dict[str, Any]:
    cloud = Cloud(workdir).start()
    edge = Edge(workdir, broker.url, cloud.grpc_port).start()
    try:
        pids = {"edge": edge.process.pid, "cloud": cloud.process.pid, "broker": broker.process.pid}  # type: ignore[union-attr]
        cpu_before = {name: cpu_seconds(pid) for name, pid in pids.items()}
        started = time.monotonic()
        publishers = publish_many(broker.port, "bench", n)
        published = wait_until(lambda: all(p.poll() is not None for p in publishers), 600)
        done = wait_until(lambda: cloud.stored() >= n, 600, interval_s=0.05)
        return {
            "samples_per_s": n / (done - started),
            "publisher_samples_per_s": n / (published - started),
            "edge_peak_rss_mb": edge.peak_rss_mb(),
            "cpu_us_per_sample": {
                name: (cpu_seconds(pid) - cpu_before[name]) / n * 1e6 for name, pid in pids.items()
            },
        }
    finally:
        stop(edge.process)  # type: ignore[arg-type]
        stop(cloud.process)  # type: ignore[arg-type]


def naive_rate(broker: PrivateMosquitto, workdir: Path, n: int) -> float:
    """paho on_message -> one unary gRPC call per sample -> one commit each."""
    db = sqlite3.connect(workdir / "naive.db", check_same_thread=False, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute("CREATE TABLE s (payload BLOB)")
    lock = threading.Lock()
    stored = 0

    def put(request: bytes, context: Any) -> bytes:
        nonlocal stored
        with lock:
            db.execute("INSERT INTO s VALUES (?)", (request,))
            stored += 1
        return b""

    server = grpc.server(futures.ThreadPoolExecutor(4))
    handler = grpc.unary_unary_rpc_method_handler(put)
    server.add_generic_rpc_handlers(
        [grpc.method_handlers_generic_handler("naive.Ingest", {"Put": handler})]
    )
    port = server.add_insecure_port(f"127.0.0.1:{free_port()}")
    server.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    call = channel.unary_unary(
        "/naive.Ingest/Put", request_serializer=None, response_deserializer=None
    )
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="naive")
    client.on_message = lambda c, u, m: call(m.payload)
    client.connect("127.0.0.1", broker.port)
    client.subscribe("edgewire/+/telemetry", qos=1)
    client.loop_start()
    time.sleep(0.5)
    try:
        started = time.monotonic()
        publishers = publish_many(broker.port, "naive", n)
        done = wait_until(lambda: stored >= n, 600, interval_s=0.05)
        for pub in publishers:
            pub.wait(60)
        return n / (done - started)
    finally:
        client.loop_stop()
        client.disconnect()
        server.stop(0)
        channel.close()
        db.close()


def fill_buffer(data_dir: Path, n: int) -> None:
    """Write n samples straight into an edge buffer, as an outage would."""
    buffer = SqliteBuffer(data_dir / "buffer.db", Caps(n * 2, 1 << 40, 100))
    now = time.time() - 3600
    chunk = 20_000
    for start in range(0, n, chunk):
        records = [
            encode_sample(
                Sample(f"dev-{seq % 50}", 1, seq, now + seq / 1000, {"temp_c": 21.5, "rh": 40.0})
            )
            for seq in range(start, min(n, start + chunk))
        ]
        buffer.append(records, [])
    buffer.close()


def idle(workdir: Path) -> dict[str, float]:
    """The edge's resident memory after start-up, connected and with nothing to do."""
    broker = PrivateMosquitto(workdir / "mq-idle")
    broker.start()
    (workdir / "idle").mkdir()
    cloud = Cloud(workdir / "idle").start()
    edge = Edge(workdir / "idle", broker.url, cloud.grpc_port).start()
    try:
        time.sleep(3)
        assert edge.process is not None
        status = Path(f"/proc/{edge.process.pid}/status").read_text()
        rss = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS"))
        return {"edge_idle_rss_mb": rss / 1024}
    finally:
        stop(edge.process)  # type: ignore[arg-type]
        stop(cloud.process)  # type: ignore[arg-type]
        broker.stop()


def drain(workdir: Path, n: int) -> dict[str, float]:
    workdir.mkdir()
    broker = PrivateMosquitto(workdir / "mq-drain")
    broker.start()
    edge_dir = workdir / "drain"
    fill_buffer(edge_dir / "edge", n)
    files = [p for p in (edge_dir / "edge").iterdir() if p.name.startswith("buffer.db")]
    disk = sum(p.stat().st_size for p in files)
    cloud = Cloud(edge_dir).start()
    edge = Edge(edge_dir, broker.url, cloud.grpc_port)
    try:
        started = time.monotonic()
        edge.start(wait=False)
        wait_until(lambda: cloud.stored() >= n, 1200, interval_s=0.1)
        elapsed = time.monotonic() - started
        return {
            "backlog_samples": n,
            "drain_s": elapsed,
            "drain_samples_per_s": n / elapsed,
            "edge_peak_rss_mb": edge.peak_rss_mb(),
            "buffer_bytes_on_disk": disk,
            "bytes_on_disk_per_sample": disk / n,
        }
    finally:
        stop(edge.process)  # type: ignore[arg-type]
        stop(cloud.process)  # type: ignore[arg-type]
        broker.stop()


def recovery(workdir: Path, rounds: int = 5) -> dict[str, object]:
    broker = PrivateMosquitto(workdir / "mq-recovery")
    broker.start()
    (workdir / "rec").mkdir()
    cloud = Cloud(workdir / "rec").start()
    edge = Edge(workdir / "rec", broker.url, cloud.grpc_port).start()
    stop_publishing = threading.Event()

    def publisher() -> None:
        seq = 0
        while not stop_publishing.is_set():
            pub = publish_lines(
                broker.port, "edgewire/rec-1/telemetry", sample_lines(range(seq, seq + 50))
            )
            pub.wait()
            seq += 50
            time.sleep(0.05)

    thread = threading.Thread(target=publisher, daemon=True)
    thread.start()
    times = []
    try:
        for _ in range(rounds):
            time.sleep(1.0)
            assert edge.process is not None
            edge.process.send_signal(signal.SIGKILL)
            edge.process.wait()
            before = cloud.stored()
            started = time.monotonic()
            edge.start(wait=False)
            done = wait_until(lambda b=before: cloud.stored() > b, 30, interval_s=0.01)  # type: ignore[misc]
            times.append(done - started)
    finally:
        stop_publishing.set()
        thread.join()
        stop(edge.process)  # type: ignore[arg-type]
        stop(cloud.process)  # type: ignore[arg-type]
        broker.stop()
    return {"recovery_s": times, "recovery_max_s": max(times)}


def main(which: list[str]) -> None:
    which = which or ["rate", "drain", "recovery", "idle"]
    result: dict[str, object] = {}
    with tempfile.TemporaryDirectory(prefix="edgewire-bench-") as scratch:
        workdir = Path(scratch)
        if "rate" in which:
            broker = PrivateMosquitto(workdir / "mq-rate", max_queued_messages=1_000_000)
            broker.start()
            try:
                c_rate = c_subscriber_rate(broker, RATE_SAMPLES)
                (workdir / "rate").mkdir()
                ours = edgewire_rate(broker, workdir / "rate", RATE_SAMPLES)
                naive = naive_rate(broker, workdir, 20_000)
            finally:
                broker.stop()
            result["rate"] = {
                "samples": RATE_SAMPLES,
                "c_subscriber_per_s": c_rate,
                "edgewire_per_s": ours["samples_per_s"],
                "ratio_to_c_subscriber": ours["samples_per_s"] / c_rate,
                "publisher_per_s": ours["publisher_samples_per_s"],
                "edge_peak_rss_mb": ours["edge_peak_rss_mb"],
                "cpu_us_per_sample": ours["cpu_us_per_sample"],
                "naive_per_s": naive,
            }
        if "drain" in which:
            # Two sizes: the edge's memory must not depend on the backlog.
            result["drain_small"] = drain(workdir / "small", DRAIN_SAMPLES // 10)
            result["drain"] = drain(workdir / "large", DRAIN_SAMPLES)
        if "idle" in which:
            result["idle"] = idle(workdir)
        if "recovery" in which:
            result["recovery"] = recovery(workdir)
    write_result("custody", result)


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main(sys.argv[1:])
    os._exit(0)
