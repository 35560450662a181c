# What real hardware (ESP32, ESP8266, Pico W) does differently from a host.

import sys

import machine
import network
from ew_board import Board

# RTC memory survives deep sleep (not power loss): the ESP8266 has 492 bytes
# of it, the ESP32 2 KB, the Pico W none. State kept over a deep sleep goes
# there when it fits, so a board waking every minute does not wear its flash.
_RTC_BYTES = {"esp8266": 492, "esp32": 2048}


class McuBoard(Board):
    def __init__(self, root="", platform=sys.platform):
        super().__init__(root)
        self.platform = platform
        self._wdt = None
        self._wlan = network.WLAN(network.STA_IF)
        self._rtc_bytes = _RTC_BYTES.get(platform, 0)

    def sync_clock(self, host):
        import ntptime

        if host:
            ntptime.host = host
        ntptime.settime()
        return True

    def wifi_up(self, ssid, password):
        wlan = self._wlan
        if wlan.isconnected():
            return True
        if not wlan.active():
            wlan.active(True)
        if ssid and wlan.status() != network.STAT_CONNECTING:
            wlan.connect(ssid, password)
        return wlan.isconnected()

    def watchdog(self, timeout_ms=None):
        if timeout_ms is not None:
            self._wdt = machine.WDT(timeout=timeout_ms)
        elif self._wdt is not None:
            self._wdt.feed()

    def keep(self, head, entries):
        if entries is None and len(head) <= self._rtc_bytes:
            machine.RTC().memory(head)
        else:
            if self._rtc_bytes:
                machine.RTC().memory(b"")
            Board.keep(self, head, entries)

    def kept(self):
        # RTC memory holds a sleep's state only after that sleep; the file,
        # written before a deep sleep or a restart into update mode, says
        # so by being there (read once, then removed).
        if not self._rtc_bytes or machine.reset_cause() != machine.DEEPSLEEP_RESET:
            return Board.kept(self)
        return machine.RTC().memory() or Board.kept(self)

    def reset(self):
        machine.reset()

    def deepsleep(self, ms):
        if self.platform == "esp8266":
            # The ESP8266 wakes through its RTC alarm (GPIO16 wired to RST).
            rtc = machine.RTC()
            rtc.irq(trigger=rtc.ALARM0, wake=machine.DEEPSLEEP)
            rtc.alarm(rtc.ALARM0, ms)
            machine.deepsleep()
        else:
            machine.deepsleep(ms)

    def i2c(self, scl, sda, freq=100000):
        return machine.SoftI2C(scl=machine.Pin(scl), sda=machine.Pin(sda), freq=freq)

    def pin(self, number):
        return machine.Pin(number)
