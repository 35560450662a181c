"""MicroPython's `network` for a simulated board: the access point in range
is the one edgewire.sim.hardware describes; joining it takes `join_s`.

Faults on an established link are simulated below this, at the TCP level (a
stopped broker, a proxy that black-holes traffic), where they reach the real
code paths.
"""

from edgewire.sim import hardware as _hw

STA_IF = 0
AP_IF = 1
STAT_IDLE = _hw.STAT_IDLE
STAT_CONNECTING = _hw.STAT_CONNECTING
STAT_WRONG_PASSWORD = _hw.STAT_WRONG_PASSWORD
STAT_NO_AP_FOUND = _hw.STAT_NO_AP_FOUND
STAT_GOT_IP = _hw.STAT_GOT_IP


class WLAN:
    def __init__(self, interface=STA_IF):
        self._radio = _hw.RADIO

    def active(self, flag=None):
        if flag is not None:
            self._radio.active = bool(flag)
        return self._radio.active

    def connect(self, ssid=None, password=None):
        import time

        radio = self._radio
        radio.ssid, radio.password, radio.since = ssid, password, time.monotonic()

    def status(self):
        return self._radio.status()

    def isconnected(self):
        return self._radio.status() == STAT_GOT_IP

    def ifconfig(self):
        return ("127.0.0.1", "255.0.0.0", "127.0.0.1", "127.0.0.1")
