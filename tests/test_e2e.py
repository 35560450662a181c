"""One reading from a board to a browser, with real parts at every hop.

Three simulated boards run the real device/ code (umqtt.simple over TCP) into
a private Mosquitto; `edgewire edge` and `edgewire cloud` run as real
processes; an SSE client watches the live feed while the samples flow.
"""

from pathlib import Path

from edgewire.mosquitto import PrivateMosquitto
from tests.helpers import Service, SseClient, edge_service, eventually, run_edgewire

BOARDS = 3
PER_BOARD = 200


def test_every_sample_arrives_once_and_live(
    tmp_path: Path, mosquitto: PrivateMosquitto, cloud: Service, edge: Service
) -> None:
    with SseClient(cloud.url + "/api/stream") as live:
        sim = run_edgewire(
            "sim",
            "--broker", mosquitto.url,
            "--devices", str(BOARDS),
            "--rate", "100",
            "--count", str(PER_BOARD),
            "--prefix", "board",
            "--timeout", "60",
            "--data-dir", str(tmp_path / "boards"),
            timeout=90,
        )  # fmt: skip
        assert sim.returncode == 0, sim.stdout + sim.stderr
        seen = eventually(lambda: len(live.samples()) >= BOARDS * PER_BOARD and live.samples())

    expected = {(f"board-{n}", seq) for n in range(1, BOARDS + 1) for seq in range(PER_BOARD)}
    live_keys = [(s["device"], s["seq"]) for s in seen]
    assert sorted(live_keys) == sorted(expected), "the live feed saw each sample once"
    ids = [s["id"] for s in seen]
    assert ids == sorted(ids), "events arrive in id order"

    readings = cloud.get("/api/readings", metric="temp_c", limit=10_000)
    stored = [(r["device"], r["seq"]) for r in readings]
    assert sorted(stored) == sorted(expected), "every sample stored exactly once"
    assert all(isinstance(r["value"], float) for r in readings)

    devices = {d["id"]: d for d in cloud.get("/api/devices")}
    assert set(devices) == {f"board-{n}" for n in range(1, BOARDS + 1)}
    for device in devices.values():
        assert device["samples"] == PER_BOARD
        assert device["metrics"] == ["rh", "temp_c"]
        # The boards said goodbye at the end of the run.
        assert device["status"] == "offline"

    # The edge deleted what the cloud acknowledged (its report is refreshed
    # every half second).
    health = eventually(lambda: (h := edge.get("/healthz"))["buffered"] == 0 and h)
    assert health["dead_letters"] == 0
    # Each board shows the edge it came through and how that edge's buffer stands.
    rows = eventually(
        lambda: (r := cloud.get("/api/devices")) and all(d["edge_buffered"] == 0 for d in r) and r
    )
    assert {d["edge"] for d in rows} == {"test-edge"}
    # /metrics of the edge says when it last heard from each board.
    for n in range(1, BOARDS + 1):
        seen = edge.get_metric(
            f'edgewire_edge_device_last_seen_timestamp_seconds{{device="board-{n}"}}'
        )
        assert seen is not None
        assert seen > 1.7e9


def test_board_status_goes_online_then_offline(
    tmp_path: Path, mosquitto: PrivateMosquitto, cloud: Service, edge: Service
) -> None:
    with SseClient(cloud.url + "/api/stream?device=solo-1") as live:
        sim = run_edgewire(
            "sim", "--broker", mosquitto.url, "--devices", "1", "--rate", "20",
            "--count", "5", "--prefix", "solo", "--data-dir", str(tmp_path / "b"),
            "--timeout", "30",
        )  # fmt: skip
        assert sim.returncode == 0, sim.stderr
        eventually(lambda: len([e for e in live.events if e.get("event") == "status"]) >= 2)
    statuses = [e["data"] for e in live.events if e.get("event") == "status"]
    assert '"online"' in statuses[0]
    assert '"offline"' in statuses[-1]


def test_a_gzip_compressed_cloud_stream(
    tmp_path: Path, mosquitto: PrivateMosquitto, cloud: Service
) -> None:
    edge = edge_service(
        tmp_path, mosquitto.url, cloud.grpc_port, extra=["--cloud-compression", "gzip"]
    ).start()
    sim = run_edgewire(
        "sim", "--broker", mosquitto.url, "--devices", "2", "--rate", "50", "--count", "50",
        "--prefix", "gz", "--data-dir", str(tmp_path / "b"), "--timeout", "30",
    )  # fmt: skip
    assert sim.returncode == 0, sim.stderr
    eventually(lambda: len(cloud.get("/api/readings", metric="temp_c", limit=1000)) == 100)
    assert edge.stop() == 0
