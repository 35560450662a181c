"""`edgewire flash --update` end to end (issue 7): a board on the real
MicroPython unix port under a 32 KB heap, talking to a private Mosquitto
with a real edge and cloud behind it, takes a new program over MQTT while
it runs. A good version comes online and stays, and no reading is lost on
the way; a version that crashes at start is rolled back after two tries and
the board goes on with the old one."""

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from edgewire.mosquitto import PrivateMosquitto
from edgewire.paths import DEVICE_DIR
from edgewire.procs import edgewire_argv
from edgewire.sim.micropython import MicroPythonBoard
from edgewire.sim.runner import board_config
from edgewire.urls import parse_endpoint
from firmware.build import build, mpy_cross
from firmware.update import UpdateOptions, UpdateReport, update
from tests.helpers import Service, eventually

HEAP = "32K"  # an ESP8266's heap, on the 64-bit port (as tests/test_board.py)
RING_BYTES = 2048


@pytest.fixture(scope="module")
def compiled(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("build")
    build(out)
    return out


def variant(compiled: Path, folder: Path, module: str, source: str) -> Path:
    """The build with one module compiled from other source."""
    shutil.copytree(compiled, folder)
    (folder / f"{module}.py").write_text(source)
    subprocess.run(
        [mpy_cross(), "-O2", "-X", "no-source-lines", "-o", f"{module}.mpy", f"{module}.py"],
        cwd=folder,
        check=True,
        capture_output=True,
    )
    (folder / f"{module}.py").unlink()
    return folder


def marked_sensors(compiled: Path, folder: Path) -> Path:
    """A new version that can be told apart: its samples carry `ota_v`."""
    source = (DEVICE_DIR / "ew_sensors.py").read_text()
    source = source.replace('"rh": round(rh, 1)}', '"rh": round(rh, 1), "ota_v": 2}')
    assert "ota_v" in source
    return variant(compiled, folder, "ew_sensors", source)


def start_board(tmp_path: Path, compiled: Path, port: int, device: str) -> MicroPythonBoard:
    folder = tmp_path / device
    folder.mkdir()
    config = board_config(device, "127.0.0.1", port, rate=5, count=None, ring_bytes=RING_BYTES)
    (folder / "config.json").write_text(json.dumps(config))
    board = MicroPythonBoard(folder, compiled, HEAP)
    board.start()
    return board


def readings(cloud: Service, device: str, metric: str) -> list[dict[str, object]]:
    found: list[dict[str, object]] = cloud.get(
        "/api/readings", device=device, metric=metric, limit=10_000
    )
    return found


def send(built: Path, device: str, mosquitto: PrivateMosquitto) -> UpdateReport:
    options = UpdateOptions(
        device_id=device,
        broker=parse_endpoint(mosquitto.url, ("mqtt",)),
        trial_s=30,
        timeout_s=120,
    )
    lines: list[str] = []
    report = update(options, lines.append, built=built)
    print("\n".join(lines))
    return report


def program(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.suffix in (".py", ".mpy")}


def test_a_good_update_comes_online_and_no_reading_is_lost(
    tmp_path: Path,
    compiled: Path,
    mosquitto: PrivateMosquitto,
    cloud: Service,
    edge: Service,
    stepping: list[MicroPythonBoard],
) -> None:
    device = "ota-good"
    board = start_board(tmp_path, compiled, mosquitto.port, device)
    stepping.append(board)
    eventually(lambda: len(readings(cloud, device, "temp_c")) >= 10, show=board.console)
    new = marked_sensors(compiled, tmp_path / "new")

    report = send(new, device, mosquitto)

    assert report.state == "done", (report.error, board.console()[-3000:])
    assert report.needed == ["ew_sensors.mpy"], "only the changed file is sent"
    assert program(board.folder) == program(new)
    # Kept: the old file stays until the next start or update tidies up.
    assert (board.folder / "ota.ok").exists()
    assert (board.folder / "ew_sensors.mpy.old").read_bytes() == (
        compiled / "ew_sensors.mpy"
    ).read_bytes()
    # The new code runs: its samples carry the mark.
    eventually(lambda: readings(cloud, device, "ota_v"), show=board.console)
    # Nothing was lost through two restarts (into update mode and into the
    # new version): one boot, every seq from 0 stored.
    seqs = sorted({(r["boot"], r["seq"]) for r in readings(cloud, device, "temp_c")})
    assert {boot for boot, _ in seqs} == {seqs[0][0]}, "the boot went on through the update"
    assert [seq for _, seq in seqs] == list(range(len(seqs)))
    assert board.exit_codes.count(75) == 2, board.exit_codes
    assert "MemoryError" not in board.console()
    assert "Traceback" not in board.console(), board.console()[-3000:]

    # The same build again: nothing to send, and the update mode it passes
    # through tidies up and goes straight back to the program.
    again = send(new, device, mosquitto)
    assert (again.state, again.needed) == ("done", [])
    assert [p.name for p in board.folder.iterdir() if p.name.startswith("ota.")] == []
    assert list(board.folder.glob("*.old")) == []
    count = len(readings(cloud, device, "ota_v"))
    eventually(lambda: len(readings(cloud, device, "ota_v")) > count + 5, timeout_s=20)


def test_a_version_that_crashes_is_rolled_back(
    tmp_path: Path,
    compiled: Path,
    mosquitto: PrivateMosquitto,
    cloud: Service,
    edge: Service,
    stepping: list[MicroPythonBoard],
) -> None:
    device = "ota-bad"
    board = start_board(tmp_path, compiled, mosquitto.port, device)
    stepping.append(board)
    eventually(lambda: len(readings(cloud, device, "temp_c")) >= 5, show=board.console)
    before = program(board.folder)
    broken = variant(
        compiled, tmp_path / "broken", "ew_start", "def begin(app):\n    raise OSError('broken')\n"
    )

    report = send(broken, device, mosquitto)

    assert report.state == "failed"
    assert report.error is not None
    assert "did not come online: rolled back" in report.error
    assert program(board.folder) == before, "the old program is back"
    left = [p.name for p in board.folder.iterdir() if p.name.startswith("ota.")]
    assert left == ["ota.say"], "what it said is forgotten at the next start"
    assert list(board.folder.glob("*.old")) + list(board.folder.glob("*.new")) == []
    assert board.console().count("broken") == 2, "the new version got two tries"
    # The old program samples again, and not in safe mode.
    count = len(readings(cloud, device, "temp_c"))
    eventually(lambda: len(readings(cloud, device, "temp_c")) > count + 5, show=board.console)
    assert "MemoryError" not in board.console()


def test_the_cli_sends_the_checkout_program_to_a_board_with_an_older_one(
    tmp_path: Path,
    compiled: Path,
    mosquitto: PrivateMosquitto,
    stepping: list[MicroPythonBoard],
) -> None:
    device = "ota-cli"
    older = marked_sensors(compiled, tmp_path / "older")
    board = start_board(tmp_path, older, mosquitto.port, device)
    stepping.append(board)
    argv = edgewire_argv(
        "flash", "--update", "--device-id", device, "--broker", mosquitto.url, "--trial", "30",
    )  # fmt: skip
    result = subprocess.run(
        argv, capture_output=True, text=True, timeout=180, stdin=subprocess.DEVNULL, check=False
    )
    assert result.returncode == 0, (result.stdout, result.stderr, board.console()[-3000:])
    assert "updated to" in result.stdout
    assert "1 of" in result.stdout, result.stdout
    assert program(board.folder) == program(compiled)
