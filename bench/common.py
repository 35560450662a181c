"""Shared pieces of the bench scripts: processes, publishers, measurements.

Bench scripts are run by hand (never in CI) and write JSON to bench/results/.
"""

import json
import os
import platform
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from edgewire.procs import edgewire_argv, free_port, spawn, wait_for_health

RESULTS = Path(__file__).resolve().parent / "results"


def sample_lines(device_seq: range, boot: int = 1, ts: float | None = None) -> bytes:
    """One JSON sample a line, the shape a board publishes."""
    ts = time.time() if ts is None else ts
    return "".join(
        f'{{"seq":{seq},"boot":{boot},"ts":{ts:.3f},'
        f'"m":{{"temp_c":{20 + seq % 100 / 10:.2f},"rh":41.5}}}}\n'
        for seq in device_seq
    ).encode()


# mosquitto_pub -l has no flow control for QoS 1: past about 34,000 queued
# lines Mosquitto 2.0.11 drops the connection ("out of memory"), so a large
# stream is split over several publishers of at most this many lines each.
LINES_PER_PUBLISHER = 25_000


def publish_many(port: int, prefix: str, n: int) -> list[subprocess.Popen[bytes]]:
    """n samples over ceil(n / LINES_PER_PUBLISHER) devices `prefix-<k>`,
    one mosquitto_pub each, all at once; seqs 0.. per device."""
    processes = []
    for k, start in enumerate(range(0, n, LINES_PER_PUBLISHER), 1):
        count = min(LINES_PER_PUBLISHER, n - start)
        lines = sample_lines(range(count))
        processes.append(publish_lines(port, f"edgewire/{prefix}-{k}/telemetry", lines))
    return processes


def publish_lines(port: int, topic: str, lines: bytes) -> subprocess.Popen[bytes]:
    """mosquitto_pub (a C client) publishing each line as one QoS 1 message."""
    process = subprocess.Popen(
        ["mosquitto_pub", "-h", "127.0.0.1", "-p", str(port), "-q", "1", "-t", topic, "-l"],
        stdin=subprocess.PIPE,
    )
    assert process.stdin is not None
    process.stdin.write(lines)
    process.stdin.close()
    return process


class Cloud:
    def __init__(self, workdir: Path, *extra: str) -> None:
        self.grpc_port = free_port()
        self.http_port = free_port()
        self.argv = edgewire_argv(
            "cloud", "--host", "127.0.0.1", "--grpc-port", str(self.grpc_port),
            "--http-port", str(self.http_port), "--db", f"sqlite:///{workdir}/cloud.db",
            "--log-level", "warning", *extra,
        )  # fmt: skip
        self.log = workdir / "cloud.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> "Cloud":
        self.process = spawn(self.argv, self.log)
        wait_for_health(self.http_port, 30, self.process)
        return self

    def stored(self) -> float:
        return metric(self.http_port, "edgewire_cloud_samples_stored_total")


class Edge:
    def __init__(self, workdir: Path, mqtt_url: str, grpc_port: int, *extra: str) -> None:
        self.http_port = free_port()
        self.data_dir = workdir / "edge"
        self.argv = edgewire_argv(
            "edge", "--mqtt", mqtt_url, "--cloud", f"grpc://127.0.0.1:{grpc_port}",
            "--data-dir", str(self.data_dir), "--http-host", "127.0.0.1",
            "--http-port", str(self.http_port), "--edge-id", "bench", "--log-level", "warning",
            *extra,
        )  # fmt: skip
        self.log = workdir / "edge.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, wait: bool = True) -> "Edge":
        self.process = spawn(self.argv, self.log)
        if wait:
            wait_for_health(self.http_port, 60, self.process)
        return self

    def health(self) -> dict[str, object]:
        result: dict[str, object] = httpx.get(
            f"http://127.0.0.1:{self.http_port}/healthz", timeout=5
        ).json()
        return result

    def peak_rss_mb(self) -> float:
        assert self.process is not None
        return peak_rss_mb(self.process.pid)


def metric(port: int, series: str) -> float:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    for line in text.splitlines():
        if line.startswith(series + " "):
            return float(line.split()[1])
    return 0.0


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM")


def wait_until(check: Callable[[], bool], timeout_s: float, interval_s: float = 0.02) -> float:
    """Poll until `check()`; the monotonic time it first held."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return time.monotonic()
        time.sleep(interval_s)
    raise TimeoutError(f"not done within {timeout_s} s")


def write_result(name: str, result: dict[str, object]) -> Path:
    RESULTS.mkdir(exist_ok=True)
    result = {
        "bench": name,
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpus": _cpus(), "python": platform.python_version()},
        **result,
    }
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return path


def _cpus() -> int:
    return len(os.sched_getaffinity(0))
