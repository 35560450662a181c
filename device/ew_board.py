# The board layer: everything that differs between an ESP32, an ESP8266, a
# Pico W and the CPython twin used by `edgewire sim`. The app core above it
# only calls these methods.
#
# Under CPython, `machine`, `network` and `usocket` are small shims (see
# edgewire/sim/shims), and time's MicroPython extras are filled in below.

import json
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

CONFIG_FILE = "config.json"
BOOT_FILE = "boot.dat"


class Board:
    def __init__(self, root=""):
        # `root` prefixes every file name: "" on a board, a folder per board
        # for simulated ones sharing one host filesystem.
        self.root = root

    # -- files -----------------------------------------------------------

    def load_config(self):
        with open(self.root + CONFIG_FILE) as f:
            return json.load(f)

    def next_boot(self):
        """This start's boot number: one more than the last, kept in flash
        (one small write per boot)."""
        try:
            with open(self.root + BOOT_FILE) as f:
                boot = int(f.read()) + 1
        except (OSError, ValueError):
            boot = 0
        with open(self.root + BOOT_FILE, "w") as f:
            f.write(str(boot))
        return boot

    # -- time ------------------------------------------------------------

    def ticks_ms(self):
        return ticks_ms()

    def ticks_diff(self, a, b):
        return ticks_diff(a, b)

    def ticks_add(self, a, b):
        return ticks_add(a, b)

    def sleep_ms(self, ms):
        sleep_ms(ms)

    def unix_ms(self):
        """Unix time in ms as an integer, or None while the clock is unset."""
        now_s = time.time() + _EPOCH_OFFSET_S
        if now_s < _CLOCK_SET_AFTER_S:
            return None
        if hasattr(time, "time_ns"):
            return time.time_ns() // 1000000 + _EPOCH_OFFSET_S * 1000
        return int(now_s) * 1000

    # -- network ---------------------------------------------------------

    def wifi_up(self, ssid, password):
        """Start joining Wi-Fi if needed; True once connected."""
        import network

        wlan = network.WLAN(network.STA_IF)
        if wlan.isconnected():
            return True
        if not wlan.active():
            wlan.active(True)
        if ssid:
            wlan.connect(ssid, password)
        return wlan.isconnected()

    def reset(self):
        import machine

        machine.reset()
