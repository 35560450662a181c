"""What the edge agent costs a Pi owner (issue 6): its RSS and CPU while
boards send 0, 100 and 1,000 samples a second through it to the cloud.

    .venv/bin/python -m bench.edge_cost [--seconds 30] [--rates 0 100 1000]

A steady publisher (paho, QoS 1, 20 board topics, one sample a message)
feeds a private Mosquitto; the edge buffers durably and streams to a
private cloud, as in production. CPU is the edge process's user + system
time over the measured window, as a share of one core; RSS is its resident
size at the end, and its peak. Results go to bench/results/edge_cost.json.
"""

import argparse
import json
import tempfile
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from bench.common import Cloud, Edge, cpu_seconds, peak_rss_mb, write_result
from edgewire.mosquitto import PrivateMosquitto

BOARDS = 20
WARM_UP_S = 5.0


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def publish_steadily(port: int, rate: float, until: threading.Event) -> int:
    """One sample a message at `rate` a second, spread over BOARDS topics."""
    if rate <= 0:
        until.wait()
        return 0
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-boards")
    client.connect("127.0.0.1", port)
    client.loop_start()
    sent = 0
    started = time.monotonic()
    try:
        while not until.is_set():
            due = int((time.monotonic() - started) * rate)
            while sent < due:
                board = sent % BOARDS
                payload = json.dumps(
                    {"seq": sent // BOARDS, "boot": 1, "ts": time.time(),
                     "m": {"temp_c": 20 + sent % 50 / 10, "rh": 40.5}}
                )  # fmt: skip
                client.publish(f"edgewire/cost-{board}/telemetry", payload, qos=1)
                sent += 1
            time.sleep(0.005)
    finally:
        client.disconnect()
        client.loop_stop()
    return sent


def measure(workdir: Path, rate: float, seconds: float) -> dict[str, float]:
    broker = PrivateMosquitto(workdir / f"mq-{rate:g}")
    broker.start()
    (workdir / f"cloud-{rate:g}").mkdir(parents=True)
    cloud = Cloud(workdir / f"cloud-{rate:g}").start()
    assert cloud.process is not None
    edge = Edge(workdir / f"edge-{rate:g}", broker.url, cloud.grpc_port).start()
    assert edge.process is not None
    done = threading.Event()
    sent: list[int] = []
    publisher = threading.Thread(
        target=lambda: sent.append(publish_steadily(broker.port, rate, done))
    )
    try:
        publisher.start()
        time.sleep(WARM_UP_S)
        cpu_before = cpu_seconds(edge.process.pid)
        started = time.monotonic()
        time.sleep(seconds)
        cpu = cpu_seconds(edge.process.pid) - cpu_before
        wall = time.monotonic() - started
        result = {
            "rate_in": rate,
            "edge_cpu_share_of_one_core": round(cpu / wall, 4),
            "edge_rss_mb": round(rss_mb(edge.process.pid), 1),
            "edge_peak_rss_mb": round(peak_rss_mb(edge.process.pid), 1),
        }
        done.set()
        publisher.join()
        result["samples_published"] = sent[0]
        result["samples_stored"] = cloud.stored()
        return result
    finally:
        done.set()
        for process in (edge.process, cloud.process):
            process.terminate()
            process.wait(30)
        broker.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=30.0, help="measured window per rate")
    parser.add_argument("--rates", type=float, nargs="+", default=[0, 100, 1000])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="edgewire-bench-edge-") as scratch:
        runs = [measure(Path(scratch), rate, args.seconds) for rate in args.rates]
    write_result("edge_cost", {"seconds": args.seconds, "boards": BOARDS, "runs": runs})


if __name__ == "__main__":
    main()
