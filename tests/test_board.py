"""The board program, whole, on both interpreters: CPython through the board
twin, and the real MicroPython unix port under a heap cap, loading the .mpy
files a board would get. Each board is its own process, talking MQTT through
micropython-lib's umqtt.simple to a private Mosquitto, with a real edge and
cloud behind it."""

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from edgewire.mosquitto import PrivateMosquitto
from edgewire.sim.micropython import MicroPythonBoard
from edgewire.sim.runner import board_config
from firmware.build import build
from tests.helpers import BlackHoleProxy, Service, eventually

# The smallest heap this program passes in on the 64-bit unix port (objects
# there are about twice their size on a 32-bit board), plus room for a ring.
HEAP = "52K"
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
    config = board_config(device_id, "127.0.0.1", port, rate=10, count=None, ring_bytes=8192)
    config.update(settings)
    (folder / "config.json").write_text(json.dumps(config))
    if runtime == "micropython":
        return MicroPythonBoard(folder, compiled, HEAP)
    return MicroPythonBoard(folder, None, None)


@pytest.fixture
def boards() -> Iterator[list[MicroPythonBoard]]:
    started: list[MicroPythonBoard] = []
    yield started
    for board in started:
        board.stop()


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
    board = make_board(
        tmp_path, runtime, compiled, mosquitto.port, device, max_samples=200, interval_s=0.1
    )
    boards.append(board)
    board.start()
    eventually(lambda: len(stored_seqs(cloud, device)) >= 30, show=board.console)
    mosquitto.stop()
    board.step()
    eventually(lambda: "link lost" in board.console(), timeout_s=10, show=board.console)
    mosquitto.start()
    acks = subprocess.Popen(
        ["mosquitto_sub", "-h", "127.0.0.1", "-p", str(mosquitto.port), "-q", "1",
         "-t", f"edgewire/{device}/cmd/ack", "-C", "2", "-W", "60"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    for command in ('{"id": "c1", "set": {"interval_s": 0.01}}', '{"id": "c2", "fly": true}'):
        subprocess.run(
            ["mosquitto_pub", "-h", "127.0.0.1", "-p", str(mosquitto.port), "-q", "1",
             "-t", f"edgewire/{device}/cmd", "-m", command],
            check=True, timeout=10,
        )  # fmt: skip
    out, _ = acks.communicate(timeout=70)
    answers = [json.loads(line) for line in out.splitlines()]
    assert answers[0] == {"id": "c1", "ok": True}
    assert answers[1]["id"] == "c2"
    assert answers[1]["ok"] is False
    assert "unknown command" in answers[1]["error"]
    run_to_end(board, timeout_s=90)
    summary = board.summary()
    assert summary is not None
    assert summary["samples"] == 200
    assert summary["dropped"] == 0, "the ring held the backlog through the restart"
    assert stored_seqs(cloud, device) == list(range(200))


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
        tmp_path, runtime, compiled, proxy.port, device, max_samples=120, interval_s=0.1, answer_s=2
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
