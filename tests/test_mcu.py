"""The board layer for real hardware (device/ew_mcu.McuBoard) against
simulated ESP32, ESP8266 and Pico W boards (edgewire.sim.hardware: Wi-Fi
that takes time to join, an NTP server, the RTC and its memory, a hardware
watchdog, I2C and one-wire sensors), each board its own CPython process
talking MQTT to a private Mosquitto, with a real edge and cloud behind it."""

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from edgewire.mosquitto import PrivateMosquitto
from edgewire.sim.hardware import EPOCH_2000
from edgewire.sim.micropython import MicroPythonBoard
from edgewire.sim.runner import board_config
from tests.helpers import Service, eventually, mqtt_sub, retained

WIFI = {"ssid": "workshop", "password": "hunter22"}
BME280 = {"address": 0x76, "chip": "bme280", "adc": [519888, 415148, 30000]}


def mcu_board(
    folder: Path, port: int, hardware: dict[str, Any], **settings: Any
) -> MicroPythonBoard:
    folder.mkdir()
    config = board_config(folder.name, "127.0.0.1", port, rate=5, count=None, ring_bytes=4096)
    config["wifi"] = dict(WIFI)
    config.update(settings)
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "hardware.json").write_text(json.dumps(hardware))
    return MicroPythonBoard(folder, None, None)


def readings(cloud: Service, device: str, metric: str) -> list[dict[str, Any]]:
    rows = cloud.get("/api/readings", device=device, metric=metric, limit=10_000)
    return sorted(rows, key=lambda r: r["seq"])


@pytest.mark.parametrize(
    ("platform", "sensors", "wiring", "expected"),
    [
        ("esp32", [{"type": "bme280", "scl": 22, "sda": 21}, {"type": "internal"}],
         {"i2c": [BME280]}, {"temp_c": 25.08, "mcu_temp_c": 43}),
        ("esp8266", [{"type": "dht22", "pin": 4}, {"type": "internal"}],
         {"dht22": {"4": [19.5, 41.0]}}, {"temp_c": 19.5, "rh": 41.0, "adc": 700}),
        ("rp2", [{"type": "internal"}], {}, {"mcu_temp_c": 27.0}),
    ],
)  # fmt: skip
def test_a_board_samples_before_wifi_and_ntp_and_loses_nothing(
    tmp_path: Path,
    platform: str,
    sensors: list[dict[str, Any]],
    wiring: dict[str, Any],
    expected: dict[str, float],
    mosquitto: PrivateMosquitto,
    cloud: Service,
    edge: Service,
    boards: list[MicroPythonBoard],
) -> None:
    device = f"{platform}-1"
    hardware = {"platform": platform, "wifi": {**WIFI, "join_s": 2.0}, **wiring}
    board = mcu_board(tmp_path / device, mosquitto.port, hardware, sensors=sensors, max_samples=25)
    boards.append(board)
    wire = mqtt_sub(mosquitto.port, f"edgewire/{device}/telemetry", "-q", "1", "-W", "60")
    board.start()
    eventually(lambda: not board.step(), timeout_s=60, show=board.console)
    assert board.exit_codes == [0], board.console()
    for name, value in expected.items():
        rows = readings(cloud, device, name)
        assert [r["seq"] for r in rows] == list(range(25)), "what was taken before Wi-Fi arrives"
        assert rows[-1]["value"] == pytest.approx(value, abs=0.05), (name, rows[-1])
    wire.terminate()
    sent: dict[int, dict[str, Any]] = {}
    for line in wire.communicate()[0].splitlines():
        payload = json.loads(line)
        for sample in payload if isinstance(payload, list) else [payload]:
            sent[sample["seq"]] = sample
    # Until NTP has set the clock (Wi-Fi took 2 s to join), the board leaves
    # `ts` out and the edge stamps it; after, the board's own time, counted
    # from its epoch (2000 on the ESP ports) in integers, is Unix time.
    has_ts = [("ts" in sent[seq]) for seq in sorted(sent)]
    assert has_ts[0] is False
    assert has_ts[-1] is True
    assert has_ts == sorted(has_ts), "once set, the clock stays set"
    assert abs(sent[max(sent)]["ts"] - time.time()) < 30


def test_a_sensor_that_hangs_its_bus_trips_the_watchdog_until_safe_mode(
    tmp_path: Path,
    mosquitto: PrivateMosquitto,
    cloud: Service,
    edge: Service,
    boards: list[MicroPythonBoard],
) -> None:
    device = "esp32-stuck"
    hardware = {"platform": "esp32", "wifi": WIFI, "i2c": [BME280], "i2c_stuck": True}
    board = mcu_board(
        tmp_path / device, mosquitto.port, hardware,
        sensors=[{"type": "bme280"}], watchdog_ms=1000,
    )  # fmt: skip
    boards.append(board)
    board.start()

    def online_in_safe_mode() -> bool:
        board.step()
        crash = board.folder / "crash.dat"
        status = retained(mosquitto.port, f"edgewire/{device}/status", wait_s=2)
        return crash.exists() and int(crash.read_text()) > 3 and status == "online"

    eventually(online_in_safe_mode, timeout_s=60, show=board.console)
    assert board.console().count("watchdog reset") >= 3, board.console()
    assert board.exit_codes.count(75) >= 3
    assert cloud.get("/api/readings", device=device) == [], "in safe mode the board does not sample"


@pytest.mark.parametrize(("platform", "rtc_memory"), [("esp8266", True), ("rp2", False)])
def test_deep_sleep_keeps_the_boot_in_rtc_memory_where_there_is_some(
    tmp_path: Path,
    platform: str,
    rtc_memory: bool,
    mosquitto: PrivateMosquitto,
    cloud: Service,
    edge: Service,
    boards: list[MicroPythonBoard],
) -> None:
    device = f"{platform}-sleepy"
    hardware = {"platform": platform, "wifi": WIFI}
    board = mcu_board(
        tmp_path / device, mosquitto.port, hardware,
        interval_s=0.25, sleep={"awake_s": 2, "sleep_s": 1},
    )  # fmt: skip
    boards.append(board)
    board.start()
    boot_file = board.folder / "boot.dat"
    eventually(boot_file.exists)
    first_written = boot_file.stat().st_mtime_ns

    kept = board.folder / ".sim-rtc-memory"
    in_rtc: set[bytes] = set()

    def slept_three_times() -> bool:
        board.step()
        if kept.exists() and kept.read_bytes():
            in_rtc.add(kept.read_bytes())
        return board.exit_codes.count(76) >= 3

    eventually(slept_three_times, timeout_s=40, show=board.console)
    rows = eventually(lambda: (r := readings(cloud, device, "temp_c")) and len(r) >= 6 and r)
    board.stop()
    assert [r["seq"] for r in rows] == list(range(len(rows))), "one boot across the wakes"
    assert {r["boot"] for r in rows} == {0}
    assert boot_file.stat().st_mtime_ns == first_written, "a wake writes no flash"
    if rtc_memory:
        # A sleep with every sample stored keeps just the state, in RTC memory
        # (one with samples still unstored would use a file).
        assert in_rtc, "the state went to RTC memory"
        assert all(json.loads(state)["boot"] == 0 for state in in_rtc)
    else:
        assert not kept.exists(), "a Pico W has no RTC memory: a file it is"


def test_rtc_memory_holds_what_fits_and_the_clock_counts_from_2000(tmp_path: Path) -> None:
    """The simulation itself against the facts in the MicroPython docs."""
    script = f"""
import json, os, sys
os.environ["EDGEWIRE_SIM_HARDWARE"] = {str(tmp_path)!r}
sys.path.insert(0, {str(Path(__file__).resolve().parent.parent / "edgewire" / "sim" / "shims")!r})
import machine, utime
out = {{"gmtime0": utime.gmtime(0)[0], "unset": utime.time() < 3600}}
machine.RTC().memory(b"x" * 492)
try:
    machine.RTC().memory(b"x" * 493)
except ValueError:
    out["too_long"] = True
print(json.dumps(out))
"""
    (tmp_path / "hardware.json").write_text(json.dumps({"platform": "esp8266"}))
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, cwd=tmp_path
    )
    out = json.loads(result.stdout)
    assert out == {"gmtime0": 2000, "unset": True, "too_long": True}
    assert EPOCH_2000 == 946684800
