# The board layer: everything that differs between an ESP32, an ESP8266, a
# Pico W, the MicroPython unix port and CPython. The app core above it calls
# only these methods; nothing else in device/ imports `machine` or `network`.
#
# Board here is the "host" board (the unix port or CPython: tests and
# `edgewire sim`): Wi-Fi is always up, the clock is already set, and a reboot
# or deep sleep ends the process with an exit code that the simulator turns
# into a restart. ew_mcu.McuBoard overrides what real hardware does
# differently; `make()` picks, and a host never loads that code.

import json
import sys
import time

try:
    from time import sleep_ms, ticks_add, ticks_diff, ticks_ms
except ImportError:  # CPython

    def ticks_ms():
        return int(time.monotonic() * 1000)

    def ticks_diff(a, b):
        return a - b

    def ticks_add(a, b):
        return a + b

    def sleep_ms(ms):
        time.sleep(ms / 1000)


# ESP ports count time from 2000-01-01; the contract speaks Unix time.
_EPOCH_OFFSET_S = 946684800 if time.gmtime(0)[0] == 2000 else 0
# A clock before this (2024-01-01) has not been set yet.
_CLOCK_SET_AFTER_S = 1704067200
# Exit codes of a host board that asks the simulator to restart it.
EXIT_REBOOT = 75
EXIT_DEEPSLEEP = 76


def make(root=""):
    if sys.platform in ("esp32", "esp8266", "rp2"):
        from ew_mcu import McuBoard

        return McuBoard(root)
    return Board(root)


class Board:
    platform = "host"

    def __init__(self, root=""):
        # `root` prefixes every file name: "" on a board, a folder per board
        # for simulated ones sharing one host filesystem.
        self.root = root

    # -- files -----------------------------------------------------------

    def load_config(self):
        with open(self.root + "config.json") as f:
            return json.load(f)

    def read_int(self, name, default=0):
        try:
            with open(self.root + name) as f:
                return int(f.read())
        except (OSError, ValueError):
            return default

    def write_int(self, name, value):
        with open(self.root + name, "w") as f:
            f.write(str(value))

    def read_bytes(self, name):
        try:
            with open(self.root + name, "rb") as f:
                return f.read()
        except OSError:
            return None

    def write_bytes(self, name, data):
        with open(self.root + name, "wb") as f:
            f.write(data)

    # -- time ------------------------------------------------------------

    def unix_ms(self):
        """Unix time in ms as an integer, or None while the clock is unset."""
        now_s = time.time() + _EPOCH_OFFSET_S
        if now_s < _CLOCK_SET_AFTER_S:
            return None
        if hasattr(time, "time_ns"):
            return time.time_ns() // 1000000 + _EPOCH_OFFSET_S * 1000
        return int(now_s) * 1000

    def sync_clock(self, host):
        """Set the clock from NTP; True if it was set. A host keeps its own."""
        return True

    # -- network, power and health -------------------------------------------

    def wifi_up(self, ssid, password):
        """Start joining Wi-Fi if needed; True once connected."""
        return True

    def watchdog_start(self, timeout_ms):
        """Reboot unless fed within timeout_ms (on hardware)."""

    def watchdog_feed(self):
        """Tell the watchdog the main loop is alive."""

    def woke_from_deepsleep(self):
        return self.read_bytes("sleep.dat") is not None

    def reset(self):
        raise SystemExit(EXIT_REBOOT)

    def deepsleep(self, ms):
        self.write_int("sleep_ms.dat", ms)
        raise SystemExit(EXIT_DEEPSLEEP)

    # -- sensors' buses ---------------------------------------------------

    def i2c(self, scl, sda, freq=100000):
        raise OSError("no I2C bus on a simulated board")

    def pin(self, number):
        raise OSError("no pins on a simulated board")
