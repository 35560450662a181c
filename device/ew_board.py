# The board layer: everything that differs between an ESP32, an ESP8266, a
# Pico W, the MicroPython unix port and CPython. The app core above it calls
# only these methods; nothing else in device/ imports `machine` or `network`.
#
# Board here is the "host" board (the unix port or CPython: tests and
# `edgewire sim`): Wi-Fi is always up, the clock is already set, and a reboot
# or deep sleep ends the process with an exit code that the simulator turns
# into a restart. ew_mcu.McuBoard overrides what real hardware does
# differently; main.py picks, and a host never loads that code.
#
# `utime` is MicroPython's name for its time module (with ticks_*); on
# CPython the simulator's shims provide one.

import utime
from micropython import const
from utime import sleep_ms, ticks_add, ticks_diff, ticks_ms  # noqa: F401  (the app's clock)

# ESP ports count time from 2000-01-01; the contract speaks Unix time.
_EPOCH_OFFSET_S = 946684800 if utime.gmtime(0)[0] == 2000 else 0
_CLOCK_SET_AFTER_S = const(1704067200)  # a clock before 2024 has not been set yet
# Exit codes of a host board that asks the simulator to restart it.
EXIT_REBOOT = const(75)
EXIT_DEEPSLEEP = const(76)


def _ready(board, *args):
    return True


def _no_bus(board, *args):
    raise OSError("no hardware")


class Board:
    platform = "host"

    # -- network and time (a host has both already) ------------------------
    # wifi_up(ssid, password): start joining Wi-Fi if needed; True once joined.
    # sync_clock(ntp_host): set the clock from NTP; True if it was set.
    wifi_up = sync_clock = _ready

    # -- sensors' buses: i2c(scl, sda, freq), pin(number) -------------------
    i2c = pin = _no_bus

    def __init__(self, root=""):
        # `root` prefixes every file name: "" on a board, a folder per board
        # for simulated ones sharing one host filesystem.
        self.root = root

    # -- files (config.json and small state files) ------------------------

    def read(self, name):
        """A file's bytes, or None when there is none."""
        try:
            with open(self.root + name, "rb") as f:
                return f.read()
        except OSError:
            return None

    def write(self, name, data):
        with open(self.root + name, "wb") as f:
            f.write(data)

    def unix_ms(self):
        """Unix time in ms as an integer, or None while the clock is unset."""
        now_s = utime.time() + _EPOCH_OFFSET_S
        if now_s < _CLOCK_SET_AFTER_S:
            return None
        if hasattr(utime, "time_ns"):
            return utime.time_ns() // 1000000 + _EPOCH_OFFSET_S * 1000
        return now_s * 1000

    # -- power and health -------------------------------------------------

    def watchdog(self, timeout_ms=None):
        """Start the watchdog (with a timeout), or feed it: on hardware, a
        board that stops feeding it within timeout_ms is reset."""

    def keep(self, head, entries):
        """Keep bytes over a deep sleep, which loses the RAM: `head`, then
        each of `entries` (or None), one a line. Written piece by piece:
        a copy of a full ring may not fit in the heap."""
        with open(self.root + "sleep.dat", "wb") as f:
            f.write(head)
            for entry in entries or ():
                f.write(b"\n")
                f.write(entry)

    def kept(self):
        """What keep() kept, if this start is a wake from deep sleep (once);
        None otherwise."""
        data = self.read("sleep.dat")
        if data is not None:
            import os

            os.remove(self.root + "sleep.dat")
        return data

    def reset(self):
        raise SystemExit(EXIT_REBOOT)

    def deepsleep(self, ms):
        self.write("sleep.ms", str(ms).encode())
        raise SystemExit(EXIT_DEEPSLEEP)
