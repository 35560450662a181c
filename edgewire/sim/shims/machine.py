"""MicroPython's `machine` for a simulated ESP32, ESP8266 or Pico W: a thin
face over edgewire.sim.hardware, which says what is wired and keeps what
survives a reset."""

import hashlib

from edgewire.sim import hardware as _hw

PWRON_RESET = _hw.PWRON_RESET
HARD_RESET = _hw.HARD_RESET
WDT_RESET = _hw.WDT_RESET
DEEPSLEEP_RESET = _hw.DEEPSLEEP_RESET
SOFT_RESET = _hw.SOFT_RESET
DEEPSLEEP = 4  # RTC.irq(wake=...)


def unique_id():
    return hashlib.sha256(str(_hw.require().folder).encode()).digest()[:6]


def reset_cause():
    return _hw.require().cause


def reset():
    _hw.require().reset(SOFT_RESET, _hw.EXIT_REBOOT)


def deepsleep(time_ms=None):
    _hw.deepsleep(time_ms)


class WDT:
    def __init__(self, id=0, timeout=5000):
        self._dog = _hw.Watchdog(timeout)

    def feed(self):
        self._dog.feed()


class RTC:
    ALARM0 = 0

    def memory(self, data=None):
        return _hw.rtc_memory(data)

    def irq(self, trigger=None, wake=None):
        _hw.ALARM.wakes = wake == DEEPSLEEP

    def alarm(self, alarm_id, ms):
        _hw.ALARM.ms = ms


class Pin:
    IN = 0
    OUT = 1

    def __init__(self, id, mode=-1, pull=-1):
        self.id = id


def SoftI2C(scl, sda, freq=400000):  # MicroPython's name
    return _hw.i2c_bus()


I2C = SoftI2C


class ADC:
    """ESP8266: ADC(0), the supply through a divider; Pico: ADC(4), the
    on-chip temperature sensor (0.706 V at 27 degC)."""

    def __init__(self, channel):
        self.channel = channel

    def read(self):
        return 700

    def read_u16(self):
        return int(0.706 / 3.3 * 65535)
