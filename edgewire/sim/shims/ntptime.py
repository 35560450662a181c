"""MicroPython's `ntptime` for a simulated board: sets the board's clock when
Wi-Fi is up and the simulated NTP server answers (else ETIMEDOUT)."""

from edgewire.sim import hardware as _hw

host = "pool.ntp.org"


def settime():
    _hw.ntp_settime()
