"""MicroPython's `utime` for a simulated board: the ticks functions
MicroPython has (milliseconds on a monotonic clock), and its wall clock:
CPython's on a host board; on a simulated MCU, the board's RTC (counting from
its epoch, 2000 on the ESP ports, from power-on until NTP sets it)."""

import time as _time

from edgewire.sim import hardware as _hw

if _hw.current() is None:
    gmtime = _time.gmtime
    time = _time.time
    time_ns = _time.time_ns
else:

    def gmtime(secs=None):
        return _time.gmtime((_hw.now_s() if secs is None else secs) + _hw.epoch())

    def time():
        return int(_hw.now_s())

    def time_ns():
        return int(_hw.now_s() * 1e9)


def ticks_ms():
    return int(_time.monotonic() * 1000)


def ticks_diff(a, b):
    return a - b


def ticks_add(a, b):
    return a + b


def sleep_ms(ms):
    _time.sleep(ms / 1000)
