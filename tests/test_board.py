"""The board program, whole, on both interpreters: CPython through the board
twin, and the real MicroPython unix port under a heap cap, loading the .mpy
files a board would get. Each board is its own process, talking MQTT through
micropython-lib's umqtt.simple to a private Mosquitto, with a real edge and
cloud behind it."""

import json
from pathlib import Path

import pytest

from edgewire.mosquitto import PrivateMosquitto
from edgewire.sim.micropython import MicroPythonBoard
from edgewire.sim.runner import board_config
from firmware.build import build
from tests.helpers import BlackHoleProxy, Service, eventually, mqtt_pub, mqtt_sub, retained

# An ESP8266's heap, on the 64-bit unix port (where objects are about twice
# their size on a 32-bit board), and the ring that fits beside the program.
HEAP = "32K"
RING_BYTES = 2048
RUNTIMES = ["cpython", "micropython"]


@pytest.fixture(scope="module")
def compiled(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("build")
    build(out)
    return out


def make_board(
    tmp_path: Path, runtime: str, compiled: Path, port: int, device_id: str, **settings: object
) -> MicroPythonBoard:
    folder = tmp_path / device_id
    folder.mkdir()
    config = board_config(device_id, "127.0.0.1", port, rate=10, count=None, ring_bytes=RING_BYTES)
    config.update(settings)
    (folder / "config.json").write_text(json.dumps(config))
    if runtime == "micropython":
        return MicroPythonBoard(folder, compiled, HEAP)
    return MicroPythonBoard(folder, None, None)


def run_to_end(board: MicroPythonBoard, timeout_s: float) -> None:
    eventually(lambda: not board.step(), timeout_s=timeout_s, show=lambda: board.console()[-2000:])
    assert board.exit_codes[-1] == 0, board.console()[-3000:]
    assert "MemoryError" not in board.console()
    assert "Traceback" not in board.console(), board.console()[-3000:]


def stored_seqs(cloud: Service, device: str) -> list[int]:
    return sorted(
        r["seq"] for r in cloud.get("/api/readings", device=device, metric="temp_c", limit=10_000)
    )


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_a_broker_restart_loses_nothing_and_commands_are_answered(
    tmp_path: Path,
    runtime: str,
    compiled: Path,
    mosquitto: PrivateMosquitto,
    cloud: Service,
    edge: Service,
    boards: list[MicroPythonBoard],
) -> None:
    device = f"{runtime[:2]}-board"
    # 5 samples a second: the 3 KB ring holds about 9 s of them, more than a
    # broker restart and the board's reconnect backoff take.
    board = make_board(
        tmp_path, runtime, compiled, mosquitto.port, device, max_samples=500, interval_s=0.2
    )
    boards.append(board)
    board.start()
    eventually(lambda: len(stored_seqs(cloud, device)) >= 30, show=board.console)
    mosquitto.stop()
    board.step()
    eventually(lambda: "link lost" in board.console(), timeout_s=10, show=board.console)
    mosquitto.start()
    acks = mqtt_sub(mosquitto.port, f"edgewire/{device}/cmd/ack", "-q", "1", "-C", "2", "-W", "60")
    for command in ('{"id": "c1", "set": {"interval_s": 0.05}}', '{"id": "c2", "fly": true}'):
        mqtt_pub(mosquitto.port, f"edgewire/{device}/cmd", command)
    out, _ = acks.communicate(timeout=70)
    answers = [json.loads(line) for line in out.splitlines()]
    assert answers[0] == {"id": "c1", "ok": True}
    assert answers[1]["id"] == "c2"
    assert answers[1]["ok"] is False
    assert "unknown command" in answers[1]["error"]
    run_to_end(board, timeout_s=150)
    summary = board.summary()
    assert summary is not None
    assert summary["samples"] == 500
    assert summary["dropped"] == 0, "the ring held the backlog through the restart"
    assert stored_seqs(cloud, device) == list(range(500))
    if runtime == "micropython":
        assert 0 < summary["heap_peak"] <= 32 * 1024


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_a_half_open_link_is_noticed_and_nothing_is_lost(
    tmp_path: Path,
    runtime: str,
    compiled: Path,
    mosquitto: PrivateMosquitto,
    cloud: Service,
    edge: Service,
    boards: list[MicroPythonBoard],
) -> None:
    proxy = BlackHoleProxy(mosquitto.port)
    device = f"{runtime[:2]}-halfopen"
    board = make_board(
        tmp_path, runtime, compiled, proxy.port, device, max_samples=120, interval_s=0.2, answer_s=2
    )
    boards.append(board)
    try:
        board.start()
        eventually(lambda: len(stored_seqs(cloud, device)) >= 20, show=board.console)
        proxy.blackhole()
        eventually(lambda: "link lost" in board.console(), timeout_s=15, show=board.console)
        run_to_end(board, timeout_s=90)
    finally:
        proxy.close()
    summary = board.summary()
    assert summary is not None
    assert summary["dropped"] == 0
    assert stored_seqs(cloud, device) == list(range(120))
    assert "stopped answering" in board.console()


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_quick_crashes_put_the_board_in_safe_mode(
    tmp_path: Path,
    runtime: str,
    compiled: Path,
    mosquitto: PrivateMosquitto,
    cloud: Service,
    edge: Service,
    boards: list[MicroPythonBoard],
) -> None:
    device = f"{runtime[:2]}-crashy"
    # A sensor whose reading raises something no driver expects: the board
    # crashes in its sampling path at every start.
    board = make_board(
        tmp_path, runtime, compiled, mosquitto.port, device,
        sensors=[{"type": "synthetic", "phase": "not a number"}], interval_s=0.1,
    )  # fmt: skip
    boards.append(board)
    board.start()

    def in_safe_mode() -> bool:
        board.step()
        crashes = (
            (board.folder / "crash.dat").read_text()
            if (board.folder / "crash.dat").exists()
            else "0"
        )
        status = retained(mosquitto.port, f"edgewire/{device}/status")
        return int(crashes) > 3 and status == "online"

    eventually(in_safe_mode, timeout_s=60, show=board.console)
    assert board.exit_codes.count(75) >= 3, "crashes reboot the board"
    assert stored_seqs(cloud, device) == [], "no sampling in safe mode"
    acks = mqtt_sub(mosquitto.port, f"edgewire/{device}/cmd/ack", "-q", "1", "-C", "1", "-W", "30")
    mqtt_pub(mosquitto.port, f"edgewire/{device}/cmd", '{"id": "s1", "safe_mode": false}')
    out, _ = acks.communicate(timeout=40)
    assert json.loads(out) == {"id": "s1", "ok": True}


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_deep_sleep_duty_cycle_keeps_the_boot_and_every_sample(
    tmp_path: Path,
    runtime: str,
    compiled: Path,
    mosquitto: PrivateMosquitto,
    cloud: Service,
    edge: Service,
    boards: list[MicroPythonBoard],
) -> None:
    device = f"{runtime[:2]}-sleepy"
    board = make_board(
        tmp_path, runtime, compiled, mosquitto.port, device,
        interval_s=0.25, sleep={"awake_s": 2, "sleep_s": 1},
    )  # fmt: skip
    boards.append(board)
    board.start()
    statuses = mqtt_sub(mosquitto.port, f"edgewire/{device}/status", "-v", "-W", "25")

    def slept_three_times() -> bool:
        board.step()
        return board.exit_codes.count(76) >= 3

    eventually(slept_three_times, timeout_s=40, show=board.console)
    eventually(lambda: len(stored_seqs(cloud, device)) >= 8)
    board.stop()
    statuses.terminate()
    seen = statuses.communicate()[0]
    seqs = stored_seqs(cloud, device)
    assert seqs == list(range(len(seqs))), "one boot across the sleeps: seqs go on"
    boots = {r["boot"] for r in cloud.get("/api/readings", device=device, limit=1000)}
    assert len(boots) == 1
    assert "sleeping" in seen
    assert "online" in seen
