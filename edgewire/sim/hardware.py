"""The simulated hardware of one ESP32, ESP8266 or Pico W, so the board
layer for real hardware (device/ew_mcu.McuBoard) runs, and is tested, under
CPython.

A board folder holding `hardware.json` is such a board (the simulator
names it in EDGEWIRE_SIM_HARDWARE); the MicroPython
module stand-ins in sim/shims (`machine`, `network`, `ntptime`, `dht`,
`esp32`, `utime`) are thin faces over this module. A reset here is the
process ending and the simulator starting it again, so what survives a reset
on real hardware (RTC memory, the reset cause, the RTC's clock) is kept in
files beside it; a start with no recorded reset cause is a power-on, which
clears them, as on the real thing.

hardware.json, every key optional:

    {"platform": "esp8266",          esp32 | esp8266 | rp2 (the Pico W)
     "wifi": {"ssid": "lab", "password": "pw", "join_s": 1.0},  the access point in range
     "ntp": true,                    an NTP server answers once Wi-Fi is up
     "i2c": [{"address": 118, "chip": "bme280", "adc": [519888, 415148, 30000]}],
     "i2c_stuck": false,             a device holds SDA low: every transfer hangs
     "dht22": {"4": [21.5, 40.2]},   GPIO -> (temp_c, rh)
     "deepsleep_wake": true}         ESP8266: GPIO16 wired to RST (else it never wakes)
"""

import contextlib
import json
import os
import struct
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgewire.sim.micropython import EXIT_DEEPSLEEP, EXIT_REBOOT

HARDWARE_FILE = "hardware.json"
ENV = "EDGEWIRE_SIM_HARDWARE"  # the board folder, in a simulated MCU's process
PWRON_RESET, HARD_RESET, WDT_RESET, DEEPSLEEP_RESET, SOFT_RESET = 1, 2, 3, 4, 5
RTC_MEMORY_BYTES = {"esp8266": 492, "esp32": 2048}
EPOCH_2000 = 946684800  # ESP ports count time from 2000-01-01
ETIMEDOUT = 110
# Files standing in for what survives a reset (not a power-on).
_CAUSE = ".sim-reset-cause"
_RTC_MEMORY = ".sim-rtc-memory"
_CLOCK = ".sim-clock-set"


@dataclass
class Hardware:
    folder: Path
    platform: str = "esp32"
    wifi: dict[str, Any] = field(default_factory=dict)
    ntp: bool = True
    i2c: list[dict[str, Any]] = field(default_factory=list)
    i2c_stuck: bool = False
    dht22: dict[str, list[float]] = field(default_factory=dict)
    deepsleep_wake: bool = True
    cause: int = PWRON_RESET
    powered_at: float = field(default_factory=time.monotonic)

    def path(self, name: str) -> Path:
        return self.folder / name

    def reset(self, cause: int, exit_code: int) -> None:
        """The board resets: record why, and end this process (the
        simulator starts it again)."""
        self.path(_CAUSE).write_text(str(cause))
        sys.stdout.flush()
        os._exit(exit_code)


_CURRENT: list[Hardware] = []  # this process's board, once powered up


def current() -> Hardware | None:
    """This process's simulated hardware, or None on a host board."""
    if not _CURRENT and os.environ.get(ENV):
        _CURRENT.append(_power_up(Path(os.environ[ENV])))
    return _CURRENT[0] if _CURRENT else None


def require() -> Hardware:
    hardware = current()
    if hardware is None:
        raise ImportError(f"{ENV} is not set: this is not a simulated MCU")
    return hardware


def _power_up(folder: Path) -> Hardware:
    spec = json.loads((folder / HARDWARE_FILE).read_text())
    hardware = Hardware(folder=folder, **spec)
    cause_file = folder / _CAUSE
    if cause_file.exists():
        hardware.cause = int(cause_file.read_text())
        cause_file.unlink()
    else:  # power-on: RTC memory and the clock are gone
        for name in (_RTC_MEMORY, _CLOCK):
            with contextlib.suppress(FileNotFoundError):
                (folder / name).unlink()
    return hardware


# -- the RTC: clock and memory ----------------------------------------------


def epoch() -> int:
    """Unix time of this platform's time 0."""
    return EPOCH_2000 if require().platform.startswith("esp") else 0


def now_s() -> float:
    """The board's clock, in its own epoch: counting from time 0 at
    power-on until NTP sets it."""
    hardware = require()
    if hardware.path(_CLOCK).exists():
        return time.time() - epoch()
    return time.monotonic() - hardware.powered_at


def set_clock() -> None:
    require().path(_CLOCK).write_text("set")


def rtc_memory(data: bytes | None = None) -> bytes:
    hardware = require()
    size = RTC_MEMORY_BYTES.get(hardware.platform, 0)
    if size == 0:
        raise AttributeError("this board has no RTC memory")
    if data is None:
        path = hardware.path(_RTC_MEMORY)
        return path.read_bytes() if path.exists() else b""
    if len(data) > size:
        raise ValueError("buffer too long")
    hardware.path(_RTC_MEMORY).write_bytes(bytes(data))
    return b""


# -- Wi-Fi --------------------------------------------------------------------

STAT_IDLE, STAT_CONNECTING, STAT_WRONG_PASSWORD, STAT_NO_AP_FOUND, STAT_GOT_IP = 0, 1, 2, 3, 5


@dataclass
class Radio:
    active: bool = False
    ssid: str | None = None
    password: str | None = None
    since: float = 0.0

    def status(self) -> int:
        ap = require().wifi
        if not self.active or self.ssid is None:
            return STAT_IDLE
        if not ap or self.ssid != ap.get("ssid"):
            return STAT_NO_AP_FOUND
        if self.password != ap.get("password"):
            return STAT_WRONG_PASSWORD
        if time.monotonic() - self.since < float(ap.get("join_s", 0)):
            return STAT_CONNECTING
        return STAT_GOT_IP


RADIO = Radio()


def ntp_settime() -> None:
    if RADIO.status() != STAT_GOT_IP or not require().ntp:
        raise OSError(ETIMEDOUT, "ETIMEDOUT")
    set_clock()


# -- sensors' buses -------------------------------------------------------------

BME280_CAL_T = (27504, 26435, -1000)  # Bosch's worked example (datasheet 8.1)
BME280_CAL_P = (36477, -10685, 3024, 2855, 140, -7, 15500, -14600, 6000)
BME280_CAL_H = (75, 362, 0, 313, 50, 30)


class BME280Chip:
    """A BME280's registers: chip id, calibration, and the raw readings."""

    def __init__(self, adc_t: int, adc_p: int, adc_h: int, chip_id: int = 0x60) -> None:
        regs = bytearray(256)
        regs[0xD0] = chip_id
        regs[0x88:0xA0] = struct.pack("<HhhHhhhhhhhh", *BME280_CAL_T, *BME280_CAL_P)
        h1, h2, h3, h4, h5, h6 = BME280_CAL_H
        regs[0xA1] = h1
        regs[0xE1:0xE8] = struct.pack("<hB", h2, h3) + bytes(
            [(h4 >> 4) & 0xFF, (h4 & 0x0F) | ((h5 & 0x0F) << 4), (h5 >> 4) & 0xFF, h6 & 0xFF]
        )
        regs[0xF7:0xFF] = bytes(
            [adc_p >> 12, (adc_p >> 4) & 0xFF, (adc_p & 0x0F) << 4,
             adc_t >> 12, (adc_t >> 4) & 0xFF, (adc_t & 0x0F) << 4,
             adc_h >> 8, adc_h & 0xFF]
        )  # fmt: skip
        self.regs = regs
        self.writes: list[tuple[int, bytes]] = []


class I2CBus:
    """An I2C bus with chips on it, as machine.I2C/SoftI2C presents it."""

    def __init__(self, chips: dict[int, BME280Chip], stuck: bool = False) -> None:
        self.chips = chips
        self.stuck = stuck

    def _chip(self, address: int) -> BME280Chip:
        while self.stuck:  # SDA held low: the transfer never completes
            time.sleep(0.05)
        chip = self.chips.get(address)
        if chip is None:
            raise OSError(19, "ENODEV")
        return chip

    def readfrom_mem(self, address: int, register: int, n: int) -> bytes:
        return bytes(self._chip(address).regs[register : register + n])

    def writeto_mem(self, address: int, register: int, data: bytes) -> None:
        self._chip(address).writes.append((register, bytes(data)))

    def scan(self) -> list[int]:
        return sorted(self.chips)


def i2c_bus() -> I2CBus:
    hardware = require()
    chips = {}
    for spec in hardware.i2c:
        if spec.get("chip") != "bme280":
            raise ValueError(f"{HARDWARE_FILE}: no simulation of chip {spec.get('chip')!r}")
        chips[int(spec["address"])] = BME280Chip(*spec["adc"])
    return I2CBus(chips, hardware.i2c_stuck)


def dht22_reading(pin: int) -> tuple[float, float]:
    reading = require().dht22.get(str(pin))
    if reading is None:
        raise OSError(ETIMEDOUT, "ETIMEDOUT")  # what the dht module says when nothing answers
    return float(reading[0]), float(reading[1])


# -- power and the watchdog -------------------------------------------------------


class Watchdog:
    """machine.WDT: resets the board unless fed within the timeout. A
    thread, as the hardware timer runs whatever the program is doing."""

    def __init__(self, timeout_ms: int) -> None:
        self.timeout_s = timeout_ms / 1000
        self.fed = time.monotonic()
        threading.Thread(target=self._watch, name="wdt", daemon=True).start()

    def feed(self) -> None:
        self.fed = time.monotonic()

    def _watch(self) -> None:
        while True:
            time.sleep(min(0.05, self.timeout_s / 4))
            if time.monotonic() - self.fed > self.timeout_s:
                print(f"sim: watchdog reset (not fed for {self.timeout_s:.1f} s)")
                require().reset(WDT_RESET, EXIT_REBOOT)


@dataclass
class Alarm:
    """The ESP8266's RTC alarm, which wakes it from deep sleep only when
    GPIO16 is wired to RST."""

    ms: int | None = None
    wakes: bool = False


ALARM = Alarm()


def deepsleep(ms: int | None) -> None:
    hardware = require()
    if ms is None:  # the ESP8266 way: the RTC alarm set beforehand
        wired = hardware.deepsleep_wake and ALARM.wakes and ALARM.ms is not None
        ms = ALARM.ms if wired else None
    # The simulator reads how long to keep the board down; a board that
    # nothing wakes stays down for a day.
    hardware.path("sleep.ms").write_text(str(ms if ms is not None else 86_400_000))
    hardware.reset(DEEPSLEEP_RESET, EXIT_DEEPSLEEP)
