"""Crash and outage tests of the delivery promises (contract §5).

Simulated boards running the real device/ code publish known (boot, seq)
ranges at QoS 1 through a private Mosquitto to real edge and cloud processes;
parts are SIGKILLed or stopped along the way; at the end the cloud must hold
every sample exactly once (or exactly the ones a counted drop left).
"""

import json
import os
import random
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from edgewire.mosquitto import PrivateMosquitto
from edgewire.procs import edgewire_argv, spawn
from tests.helpers import Service, SseClient, cloud_service, edge_service, eventually

# Printed so a failing run can be repeated: EDGEWIRE_FAULT_SEED=N pytest ...
SEED = int(os.environ.get("EDGEWIRE_FAULT_SEED", str(random.SystemRandom().randrange(1 << 30))))


@pytest.fixture
def rng() -> random.Random:
    print(f"fault seed: {SEED}")
    return random.Random(SEED)


def start_sim(
    tmp_path: Path, broker: str, prefix: str, devices: int, rate: float, count: int
) -> subprocess.Popen[bytes]:
    return spawn(
        edgewire_argv(
            "sim", "--broker", broker, "--devices", str(devices), "--rate", str(rate),
            "--count", str(count), "--prefix", prefix, "--timeout", "150",
            "--data-dir", str(tmp_path / f"boards-{prefix}"),
        ),
        tmp_path / f"sim-{prefix}.log",
    )  # fmt: skip


def wait_sim(process: subprocess.Popen[bytes], tmp_path: Path, prefix: str) -> None:
    code = process.wait(timeout=170)
    log = (tmp_path / f"sim-{prefix}.log").read_text()
    assert code == 0, f"boards did not see all their samples stored:\n{log[-3000:]}"


def stored_keys(cloud: Service, device_prefix: str) -> list[tuple[str, int]]:
    rows = cloud.get("/api/readings", metric="temp_c", limit=100_000)
    return [(r["device"], r["seq"]) for r in rows if r["device"].startswith(device_prefix)]


def assert_exactly_once(cloud: Service, prefix: str, devices: int, count: int) -> None:
    keys = stored_keys(cloud, prefix)
    expected = {(f"{prefix}-{n}", seq) for n in range(1, devices + 1) for seq in range(count)}
    assert len(keys) == len(set(keys)), "a sample was stored twice"
    missing = expected - set(keys)
    assert not missing, f"{len(missing)} samples lost, e.g. {sorted(missing)[:5]}"
    assert set(keys) == expected


@pytest.fixture
def running_edge(tmp_path: Path, mosquitto: PrivateMosquitto, cloud: Service) -> Iterator[Service]:
    edge = edge_service(tmp_path, mosquitto.url, cloud.grpc_port).start()
    yield edge
    if edge.process is not None and edge.process.poll() is None:
        assert edge.stop() == 0


@pytest.mark.parametrize(
    ("victim", "rounds"),
    [
        ("edge", 3),
        ("cloud", 2),
        # Mosquitto's queue is a periodic snapshot: a SIGKILL loses what it
        # held. The boards resend what the edge's `stored` did not cover.
        ("broker", 2),
    ],
)
def test_sigkill_mid_stream(
    tmp_path: Path,
    mosquitto: PrivateMosquitto,
    cloud: Service,
    running_edge: Service,
    rng: random.Random,
    victim: str,
    rounds: int,
) -> None:
    victims: dict[str, Service | PrivateMosquitto] = {
        "edge": running_edge,
        "cloud": cloud,
        "broker": mosquitto,
    }
    target = victims[victim]
    prefix = f"{victim[0]}k"
    sim = start_sim(tmp_path, mosquitto.url, prefix, devices=3, rate=40, count=400)
    for _ in range(rounds):
        time.sleep(rng.uniform(0.5, 2.0))
        target.kill()
        time.sleep(rng.uniform(0.0, 1.0))
        target.start()
    wait_sim(sim, tmp_path, prefix)
    eventually(lambda: len(stored_keys(cloud, prefix)) >= 1200, timeout_s=60)
    assert_exactly_once(cloud, prefix, 3, 400)


def publish_lines(mosquitto: PrivateMosquitto, device: str, seqs: range, tmp_path: Path) -> None:
    """Publish one sample per line with mosquitto_pub (a C client), QoS 1."""
    now = time.time()
    lines = "".join(
        json.dumps({"seq": seq, "boot": 1, "ts": now, "m": {"temp_c": seq / 10}}) + "\n"
        for seq in seqs
    )
    subprocess.run(
        ["mosquitto_pub", "-h", "127.0.0.1", "-p", str(mosquitto.port), "-q", "1",
         "-t", f"edgewire/{device}/telemetry", "-l"],
        input=lines.encode(), check=True, timeout=120,
    )  # fmt: skip


def test_cloud_outage_builds_a_backlog_that_drains_while_live_samples_flow(
    tmp_path: Path, mosquitto: PrivateMosquitto
) -> None:
    cloud = cloud_service(tmp_path)  # not started: the edge cannot reach it
    edge = edge_service(
        tmp_path, mosquitto.url, cloud.grpc_port,
        # Small batches, one in flight: the drain takes seconds, not a blink.
        extra=["--batch-max-samples", "20", "--window-batches", "1", "--reconnect-max-s", "1"],
    ).start()  # fmt: skip
    backlog, live_count = 30_000, 60
    publish_lines(mosquitto, "bulk-1", range(backlog), tmp_path)
    eventually(lambda: edge.get("/healthz")["buffered"] == backlog, timeout_s=60)
    assert edge.get("/healthz")["cloud"] == "disconnected"
    assert edge.get("/healthz")["drain_eta_s"] is None, "nothing drains while the cloud is away"
    cloud.start()
    eventually(lambda: edge.get("/healthz")["cloud"] == "connected")
    live = start_sim(tmp_path, mosquitto.url, "live", devices=1, rate=20, count=live_count)
    wait_sim(live, tmp_path, "live")
    eventually(lambda: edge.get("/healthz")["buffered"] == 0, timeout_s=90)
    with SseClient(cloud.url + "/api/stream", headers={"Last-Event-ID": "0"}) as feed:
        eventually(lambda: len(feed.samples()) >= backlog + live_count, timeout_s=60)
    events = feed.samples()
    bulk_ids = [e["id"] for e in events if e["device"] == "bulk-1"]
    live_ids = [e["id"] for e in events if e["device"] == "live-1"]
    assert sorted(e["seq"] for e in events if e["device"] == "bulk-1") == list(range(backlog))
    assert sorted(e["seq"] for e in events if e["device"] == "live-1") == list(range(live_count))
    assert bulk_ids == sorted(bulk_ids), "the backlog went out oldest first"
    assert min(live_ids) < max(bulk_ids), "live samples went out while the backlog drained"
    health = edge.get("/healthz")
    assert health["drain_eta_s"] == 0.0
    assert health["delivery_rate"] > 0
    assert edge.stop() == 0
    assert cloud.stop() == 0


@pytest.mark.parametrize("policy", ["drop_oldest", "backpressure"])
def test_a_full_buffer_follows_its_policy(
    tmp_path: Path, mosquitto: PrivateMosquitto, policy: str
) -> None:
    cap, sent = 1000, 3000
    cloud = cloud_service(tmp_path)
    edge = edge_service(
        tmp_path, mosquitto.url, cloud.grpc_port,
        extra=["--buffer-max-records", str(cap), "--buffer-full-policy", policy],
    ).start()  # fmt: skip
    publish_lines(mosquitto, "fill-1", range(sent), tmp_path)
    dropped_series = 'edgewire_edge_samples_dropped_total{reason="buffer_full"}'
    if policy == "drop_oldest":
        eventually(lambda: edge.get_metric("edgewire_edge_samples_buffered_total") == sent)
        assert edge.get_metric(dropped_series) == sent - cap
        eventually(lambda: edge.get("/healthz")["buffered"] == cap)  # refreshed every 0.5 s
        expected = list(range(sent - cap, sent))
    else:
        eventually(lambda: edge.get("/healthz")["backpressure"] is True)
        eventually(lambda: edge.get("/healthz")["buffered"] == cap)
        assert (edge.get_metric(dropped_series) or 0) == 0
        expected = list(range(sent))
    cloud.start()
    eventually(
        lambda: (
            sorted(r["seq"] for r in cloud.get("/api/readings", device="fill-1", limit=10_000))
            == expected
        ),
        timeout_s=60,
        show=lambda: len(cloud.get("/api/readings", device="fill-1", limit=10_000)),
    )
    if policy == "backpressure":
        assert edge.get_metric("edgewire_edge_backpressure_episodes_total") >= 1  # type: ignore[operator]
        eventually(lambda: edge.get("/healthz")["backpressure"] is False)
    assert edge.stop() == 0
    assert cloud.stop() == 0
