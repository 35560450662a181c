"""`edgewire flash` and `edgewire boards`: the plan on its own, then the
whole thing against a simulated board (the MicroPython unix port behind a
pty, edgewire.sim.serial_board), and the flashed folder run as a board that
publishes to a private Mosquitto."""

import json
import os
import re
import subprocess
import time
from collections.abc import Iterator
from hashlib import sha256
from pathlib import Path

import pytest

from edgewire.errors import ConfigError
from edgewire.mosquitto import PrivateMosquitto
from edgewire.paths import DEVICE_DIR
from edgewire.sim.micropython import MicroPythonBoard
from edgewire.sim.serial_board import SerialBoard
from firmware.boardfs import BoardFs, Stored
from firmware.build import build
from firmware.flash import (
    BoardSettings,
    EsptoolStep,
    FlashOptions,
    Payload,
    Report,
    Uf2Step,
    describe_plan,
    flash,
    make_plan,
    micropython_step,
    render_config,
)
from firmware.rawrepl import BoardError, OutOfSpaceError, PortError, RawRepl
from tests.helpers import mqtt_sub, run_edgewire

SECRET = "hunter2-wifi-secret"

Built = tuple[Path, list[Path]]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    out = tmp_path_factory.mktemp("build")
    return out, build(out)


@pytest.fixture
def board(tmp_path: Path) -> Iterator[SerialBoard]:
    with SerialBoard(tmp_path / "board") as simulated:
        yield simulated


def settings(broker: str = "mqtt://127.0.0.1:1883", **more: object) -> BoardSettings:
    fields: dict[str, object] = {
        "device_id": "flashed-1",
        "broker": broker,
        "wifi_ssid": "home",
        "wifi_password": SECRET,
        "sensor": "synthetic",
        "interval_s": 0.2,
    }
    return BoardSettings(**{**fields, **more})  # type: ignore[arg-type]


def run_flash(port: str, built: Built, board_settings: BoardSettings, **options: object) -> Report:
    lines: list[str] = []
    report = flash(
        FlashOptions(port=port, progress=False, **options),  # type: ignore[arg-type]
        board_settings,
        lines.append,
        built=built,
    )
    assert SECRET not in "\n".join(lines)
    return report


def wanted_files(built: Built, board_settings: BoardSettings) -> dict[str, bytes]:
    root, files = built
    wanted = {f.relative_to(root).as_posix(): f.read_bytes() for f in files}
    wanted["config.json"] = render_config(board_settings, "flashed-1")
    return wanted


def assert_board_holds(folder: Path, wanted: dict[str, bytes]) -> None:
    for path, data in wanted.items():
        assert sha256((folder / path).read_bytes()).digest() == sha256(data).digest(), path
    assert not list(folder.rglob("*.new")), "no half-copied file left behind"


# -- the plan, pure -----------------------------------------------------------


def stored(data: bytes) -> Stored:
    return Stored(sha256(data).hexdigest(), len(data))


@pytest.mark.parametrize(
    ("on_board", "force", "copy", "skip", "remove"),
    [
        pytest.param({}, False, ["a.mpy", "lib/b.mpy", "main.py"], [], [], id="empty board"),
        pytest.param(
            {"a.mpy": b"A", "lib/b.mpy": b"B", "main.py": b"M"},
            False,
            [],
            ["a.mpy", "lib/b.mpy", "main.py"],
            [],
            id="all the same",
        ),
        pytest.param(
            {"a.mpy": b"A", "lib/b.mpy": b"old", "main.py": b"M"},
            False,
            ["lib/b.mpy"],
            ["a.mpy", "main.py"],
            [],
            id="one changed",
        ),
        pytest.param(
            {"a.mpy": b"A", "lib/b.mpy": b"B", "main.py": b"M"},
            True,
            ["a.mpy", "lib/b.mpy", "main.py"],
            [],
            [],
            id="forced",
        ),
        pytest.param(
            {"a.py": b"source", "main.py.new": b"hal", "main.py": b"M"},
            False,
            ["a.mpy", "lib/b.mpy"],
            ["main.py"],
            ["a.py", "main.py.new"],
            id="a shadowing source and a half copy",
        ),
    ],
)
def test_plan_copies_only_what_differs(
    on_board: dict[str, bytes], force: bool, copy: list[str], skip: list[str], remove: list[str]
) -> None:
    payloads = [Payload("a.mpy", b"A"), Payload("lib/b.mpy", b"B"), Payload("main.py", b"M")]
    plan = make_plan(payloads, {k: stored(v) for k, v in on_board.items()}, force)
    assert [p.path for p in plan.copy] == copy
    assert [p.path for p in plan.skip] == skip
    assert [path for path, _ in plan.remove] == remove
    assert plan.dirs == (["lib"] if "lib/b.mpy" in copy else [])


@pytest.mark.parametrize(
    ("sizes", "on_board", "block", "needed"),
    [
        pytest.param([1, 4096, 4097], {}, 4096, 4 * 4096, id="whole blocks"),
        pytest.param([0], {}, 4096, 0, id="an empty file"),
        # Replacing a file needs room for the new copy while the old exists.
        pytest.param([10_000], {"f0": 10_000}, 1024, 10 * 1024, id="replace one"),
        # ... and the old ones' room comes back file by file.
        pytest.param([3000, 3000], {"f0": 3000, "f1": 3000}, 1000, 3000, id="replace two"),
        # What is removed first makes room.
        pytest.param([6000], {"f0.new": 5000}, 1000, 1000, id="a half copy removed"),
    ],
)
def test_space_needed(sizes: list[int], on_board: dict[str, int], block: int, needed: int) -> None:
    payloads = [Payload(f"f{i}", bytes(size)) for i, size in enumerate(sizes)]
    plan = make_plan(payloads, {k: Stored("0" * 64, v) for k, v in on_board.items()}, force=True)
    assert plan.space_needed(block) == needed


def test_config_has_the_keys_the_board_reads_and_never_shows_the_password() -> None:
    config = json.loads(render_config(settings(broker="mqtt://dev:pw@10.0.0.2:1884"), "b-1"))
    assert config["device_id"] == "b-1"
    assert config["wifi"] == {"ssid": "home", "password": SECRET}
    assert config["broker"] == {"host": "10.0.0.2", "port": 1884, "user": "dev", "password": "pw"}
    assert config["sensors"] == [{"type": "synthetic"}]
    assert config["ring"] == {"max_samples": 200, "max_bytes": 8192}
    # device/ew_start.py reads these names; nothing else is needed.
    start = (Path(__file__).parent.parent / "device" / "ew_start.py").read_text()
    for key in config:
        assert f'"{key}"' in start, key
    again = render_config(settings(broker="mqtt://dev:pw@10.0.0.2:1884"), "b-1")
    assert again == render_config(settings(broker="mqtt://dev:pw@10.0.0.2:1884"), "b-1")
    plan = make_plan([Payload("config.json", again)], {})
    assert SECRET not in "\n".join(describe_plan(plan))


def test_an_mqtts_config_asks_for_tls_and_its_port_defaults_to_8883() -> None:
    config = json.loads(render_config(settings(broker="mqtts://dev:pw@pi.local"), "b-1"))
    assert config["broker"] == {
        "host": "pi.local", "port": 8883, "user": "dev", "password": "pw", "tls": True,
    }  # fmt: skip
    plain = json.loads(render_config(settings(), "b-1"))
    assert "tls" not in plain["broker"], "a plain board's config.json is as before"


def esp_image(tmp_path: Path, header: bytes) -> Path:
    image = tmp_path / "firmware.bin"
    image.write_bytes(header + bytes(64))
    return image


ESP32_HEADER = bytes([0xE9, 3, 2, 0x20, 0x10, 0x8A, 0x08, 0x40, 0xEE, 0, 0, 0, 0, 0, 0, 0])
ESP32S3_HEADER = bytes([0xE9, 3, 2, 0x4F, 0x10, 0x89, 0xCE, 0x40, 0xEE, 0, 0, 0, 9, 0, 0, 0])
ESP8266_HEADER = bytes([0xE9, 4, 2, 0x40, 0x04, 0x00, 0x10, 0x40, 0x00, 0, 0x10, 0x40, 0, 0, 0, 0])


@pytest.mark.parametrize(
    ("header", "chip", "offset", "chip_flag"),
    [
        (ESP32_HEADER, "auto", "0x1000", "auto"),
        (ESP32S3_HEADER, "auto", "0x0", "auto"),
        (ESP8266_HEADER, "auto", "0x0", "auto"),
        (bytes(16), "esp32", "0x1000", "esp32"),  # a header we cannot read: the flag decides
        (ESP32S3_HEADER, "esp8266", "0x0", "esp8266"),
    ],
)
def test_esptool_argv_has_the_chip_s_offset(
    tmp_path: Path, header: bytes, chip: str, offset: str, chip_flag: str
) -> None:
    image = esp_image(tmp_path, header)
    step = micropython_step(image, "/dev/ttyUSB0", chip, 460800, erase=False)  # type: ignore[arg-type]
    assert isinstance(step, EsptoolStep)
    assert step.argv[1:] == [
        "-m", "esptool", "--chip", chip_flag, "--port", "/dev/ttyUSB0", "--baud", "460800",
        step.argv[9], offset, str(image),
    ]  # fmt: skip
    assert step.argv[9] in ("write_flash", "write-flash")


def test_an_image_of_no_known_chip_asks_for_chip(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="give --chip"):
        micropython_step(esp_image(tmp_path, bytes(16)), "/dev/ttyUSB0")


def test_a_uf2_goes_to_the_pico_s_drive(tmp_path: Path) -> None:
    image = tmp_path / "rp2-pico.uf2"
    image.write_bytes(b"UF2\n" * 100)
    elsewhere, drive = tmp_path / "usb-stick", tmp_path / "RPI-RP2"
    elsewhere.mkdir()
    drive.mkdir()
    (drive / "INFO_UF2.TXT").write_text("UF2 Bootloader v3.0\nBoard-ID: RPI-RP2\n")
    assert micropython_step(image, "/dev/ttyACM0", drives=[elsewhere, drive]) == Uf2Step(
        image, drive
    )
    assert micropython_step(image, "/dev/ttyACM0", drives=[elsewhere]) == Uf2Step(image, None)


def test_dry_run_with_an_image_prints_the_esptool_command(tmp_path: Path) -> None:
    image = esp_image(tmp_path, ESP32_HEADER)
    result = run_edgewire(
        "flash", "--port", "/dev/ttyUSB9", "--dry-run", "--micropython", str(image),
        "--broker", "mqtt://10.0.0.2", "--device-id", "b-1", "--wifi-password", SECRET,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert re.search(
        r"-m esptool --chip auto --port /dev/ttyUSB9 .*write.flash 0x1000 ", result.stdout
    )
    assert SECRET not in result.stdout + result.stderr


BROKER = 'broker = "mqtt://10.0.0.2"\n'


@pytest.mark.parametrize(
    ("args", "toml", "fragment"),
    [
        (["--device-id", "Bad Id"], BROKER, "device_id"),
        (["--broker", "http://x"], "", "broker"),
        ([], "", "broker' is required"),
        (["--sensor", "thermocouple"], BROKER, "sensor"),
        (["--awake-s", "5"], BROKER, "awake_s"),
        ([], BROKER + "wifi_password = 12345678\n", "wifi_password"),
    ],
)
def test_bad_settings_exit_2_naming_the_setting(
    tmp_path: Path, args: list[str], toml: str, fragment: str
) -> None:
    config = tmp_path / "board.toml"
    config.write_text(toml)
    result = run_edgewire("flash", "--port", "/dev/ttyUSB9", "--config", str(config), *args)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert fragment in result.stderr
    assert "12345678" not in result.stderr


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        (
            ["flash"],
            ["--port", "--dry-run", "--wait", "--micropython", "--chip", "--config",
             "--device-id", "--wifi-ssid", "--wifi-password", "--broker", "EDGEWIRE_BROKER",
             "mqtts://", "--ca"],
        ),
        (["boards"], ["--port", "--probe / --no-probe", "--all", "--json"]),
    ],
)  # fmt: skip
def test_commands_have_help(command: list[str], expected: list[str]) -> None:
    result = run_edgewire(*command, "--help")
    assert result.returncode == 0, result.stderr
    for word in expected:
        assert word in result.stdout
    assert "flash" in run_edgewire("--help").stdout


# -- against a simulated board ------------------------------------------------


def test_flash_installs_a_working_board(
    board: SerialBoard, built: Built, mosquitto: PrivateMosquitto
) -> None:
    port = board.start()
    board_settings = settings(broker=mosquitto.url)
    report = run_flash(port, built, board_settings, wait=True, wait_timeout_s=30)
    assert report.first_sample is not None
    assert json.loads(report.first_sample)  # a sample, or a batch of them
    assert len(report.copied) == len(built[1]) + 1
    assert report.skipped == []
    assert report.platform == "linux"
    assert "no machine.RTC" in report.clock
    assert_board_holds(board.folder, wanted_files(built, board_settings))
    names = {p.relative_to(board.folder).as_posix() for p in board.folder.rglob("*")}
    assert {"main.py", "boot.py", "ew_app.mpy", "lib/umqtt/simple.mpy", "config.json"} <= names

    # The folder alone is a board: run it on the board simulator.
    board.unplug()
    subscriber = mqtt_sub(mosquitto.port, "edgewire/flashed-1/telemetry", "-C", "1", "-W", "30")
    runner = MicroPythonBoard(board.folder, None, "64K")
    runner.start()
    try:
        out, _ = subscriber.communicate(timeout=40)
    finally:
        runner.stop()
    sample = json.loads(out.splitlines()[0])
    sample = sample[0] if isinstance(sample, list) else sample
    assert set(sample) >= {"seq", "boot", "m"}, runner.console()


def test_a_second_flash_copies_nothing(board: SerialBoard, built: Built) -> None:
    port = board.start()
    first = run_flash(port, built, settings())
    assert first.file_bytes == sum(len(d) for d in wanted_files(built, settings()).values())
    started = time.monotonic()
    second = run_flash(port, built, settings())
    took = time.monotonic() - started
    print(f"re-flash with nothing changed: {took:.2f} s, {second.wire_bytes} bytes sent")
    assert second.copied == []
    assert second.file_bytes == 0
    assert second.wire_bytes < 4000, "a look at the board, the clock and a reset: no file data"
    assert took <= 3.0
    # A changed setting copies config.json alone.
    third = run_flash(port, built, settings(interval_s=5))
    assert third.copied == ["config.json"]


def test_unplugged_mid_copy_then_the_next_run_repairs_the_board(
    board: SerialBoard, built: Built
) -> None:
    port = board.start()
    total = sum(len(d) for d in wanted_files(built, settings()).values())
    sent = 0

    def cut_the_cable(n: int) -> None:
        nonlocal sent
        sent += n
        if sent > total // 2 and board.port is not None:
            board.unplug()

    with pytest.raises(PortError, match="unplugged"):
        flash(
            FlashOptions(port=port, progress=False),
            settings(),
            lambda line: None,
            built=built,
            on_chunk=cut_the_cable,
        )
    port = board.replug()
    report = run_flash(port, built, settings())
    assert report.copied, "what the cut left out is copied now"
    assert_board_holds(board.folder, wanted_files(built, settings()))
    assert run_flash(port, built, settings()).copied == []


def test_garbage_from_the_board_is_skipped(board: SerialBoard, built: Built) -> None:
    port = board.start()
    board.babble(
        b"ets Jul 29 2019 12:21:46\r\n\r\nrst:0x1 (POWERON_RESET),boot:0x13\r\n"
        b"\xff\xfe\x00\x01\x04>\x04\x04>R\x01 line noise\r\n"
    )
    report = run_flash(port, built, settings())
    assert len(report.copied) == len(built[1]) + 1
    assert_board_holds(board.folder, wanted_files(built, settings()))


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 64 KiB filesystem (tmpfs), like a board's small flash."""
    mount = tmp_path / "small"
    mount.mkdir()
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {result.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_full_board_is_refused_with_the_numbers(small_disk: Path, built: Built) -> None:
    (small_disk / "photos.bin").write_bytes(bytes(40 * 1024))  # what the user keeps there
    with SerialBoard(small_disk) as board:
        port = board.start()
        with pytest.raises(
            OutOfSpaceError, match=r"board has 24,576 bytes free, these files need [\d,]+"
        ) as caught:
            run_flash(port, built, settings())
        needed = int(re.findall(r"need ([\d,]+)", str(caught.value))[0].replace(",", ""))
        assert needed > 24_576
        assert not (small_disk / "main.py").exists(), "refused before anything was written"
        # A write that runs out of room anyway stops with the same kind of error,
        # and leaves nothing under the real name.
        with RawRepl(port) as repl, pytest.raises(OutOfSpaceError, match=r"big\.bin"):
            BoardFs(repl).write("big.bin", bytes(64 * 1024))
        assert not (small_disk / "big.bin").exists()


def test_a_board_side_traceback_becomes_a_host_error(board: SerialBoard, built: Built) -> None:
    port = board.start()
    with RawRepl(port) as repl:
        with pytest.raises(BoardError, match="ZeroDivisionError") as caught:
            repl.exec("print('before')\n1/0")
        assert "Traceback (most recent call last)" in caught.value.traceback
        with pytest.raises(BoardError) as caught:
            BoardFs(repl).remove("no-such-file", missing_ok=False)
        assert caught.value.errno == 2
        assert repl.exec("print('still fine')") == b"still fine\r\n"
    # Through the command line: a file where the board needs a folder.
    (board.folder / "lib").write_text("not a folder")
    result = run_edgewire(
        "flash", "--port", port, "--broker", "mqtt://127.0.0.1", "--device-id", "b-1"
    )
    assert result.returncode == 1, result.stdout
    assert "edgewire: the board raised OSError" in result.stderr
    assert "Traceback" in result.stderr


def test_device_id_auto_needs_a_unique_id(board: SerialBoard, built: Built) -> None:
    port = board.start()
    with pytest.raises(ConfigError, match=r"no machine\.unique_id.*--device-id NAME"):
        run_flash(port, built, settings(device_id="auto"))


def test_dry_run_against_the_board_writes_nothing(board: SerialBoard) -> None:
    port = board.start()
    result = run_edgewire(
        "flash", "--port", port, "--dry-run", "--broker", "mqtt://u:brokerpw@127.0.0.1",
        "--device-id", "b-1", "--wifi-password", SECRET,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    # Every program file, umqtt.simple and config.json.
    assert f"copy {len(list(DEVICE_DIR.glob('*.py'))) + 2} files" in result.stdout
    assert "  copy    lib/umqtt/simple.mpy" in result.stdout
    assert "dry run: nothing written" in result.stdout
    assert SECRET not in result.stdout + result.stderr
    assert "brokerpw" not in result.stdout + result.stderr
    assert not (board.folder / "main.py").exists()


# -- edgewire boards ----------------------------------------------------------


def test_boards_probes_a_given_port(board: SerialBoard) -> None:
    port = board.start()
    result = run_edgewire("boards", "--port", port, "--json")
    assert result.returncode == 0, result.stderr
    found = [json.loads(line) for line in result.stdout.splitlines()]
    mine = next(p for p in found if p["device"] == port)
    assert mine["micropython"] == "micropython linux"
    table = run_edgewire("boards", "--port", port)
    assert re.search(
        rf"{re.escape(port)}\s+-\s+given with --port\s+micropython linux", table.stdout
    )


def test_boards_names_who_holds_a_busy_port(board: SerialBoard) -> None:
    port = board.start()
    with RawRepl(port):
        result = run_edgewire("boards", "--port", port, "--json")
    (mine,) = [p for p in map(json.loads, result.stdout.splitlines()) if p["device"] == port]
    assert mine["micropython"] is None
    assert f"port {port} is busy: held by pid {os.getpid()} (" in mine["problem"]


def test_boards_says_when_nothing_answers() -> None:
    controller, device = os.openpty()  # a port with nothing behind it
    path = os.ttyname(device)
    os.close(device)  # only the other end stays open, as a relay would have it
    try:
        result = run_edgewire("boards", "--port", path)
    finally:
        os.close(controller)
    assert "no MicroPython answering (flash it with: edgewire flash --micropython" in (
        result.stdout
    )


def test_flash_cli_names_a_missing_port() -> None:
    result = run_edgewire(
        "flash", "--port", "/dev/ttyUSB97", "--broker", "mqtt://10.0.0.2", "--device-id", "b"
    )
    assert result.returncode == 1
    assert "no port /dev/ttyUSB97: is the board plugged in?" in result.stderr


def test_flash_names_a_program_holding_the_port(board: SerialBoard) -> None:
    port = board.start()
    fd = os.open(port, os.O_RDWR | os.O_NOCTTY)
    holder = subprocess.Popen(["sleep", "60"], stdin=fd)  # a console left open, say
    os.close(fd)
    try:
        result = run_edgewire(
            "flash", "--port", port, "--broker", "mqtt://10.0.0.2", "--device-id", "b"
        )
    finally:
        holder.kill()
        holder.wait()
    assert result.returncode == 1
    assert f"port {port} is busy: held by pid {holder.pid} (sleep)" in result.stderr
