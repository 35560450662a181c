"""MicroPython's `network` for a simulated board: Wi-Fi is always there.

Network faults are simulated below this, at the TCP level (a stopped broker,
a proxy that black-holes traffic), where they reach the real code paths.
"""

STA_IF = 0
AP_IF = 1


class WLAN:
    def __init__(self, interface=STA_IF):
        self._active = True

    def active(self, flag=None):
        if flag is not None:
            self._active = bool(flag)
        return self._active

    def connect(self, ssid=None, password=None):
        self._active = True

    def isconnected(self):
        return self._active

    def ifconfig(self):
        return ("127.0.0.1", "255.0.0.0", "127.0.0.1", "127.0.0.1")
