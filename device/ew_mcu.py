# What real hardware (ESP32, ESP8266, Pico W) does differently from a host.

import machine
import network
from ew_board import Board


class McuBoard(Board):
    def __init__(self, root=""):
        super().__init__(root)
        import sys

        self.platform = sys.platform
        self._wdt = None
        self._wlan = network.WLAN(network.STA_IF)

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

    def watchdog_start(self, timeout_ms):
        self._wdt = machine.WDT(timeout=timeout_ms)

    def watchdog_feed(self):
        if self._wdt is not None:
            self._wdt.feed()

    def woke_from_deepsleep(self):
        return machine.reset_cause() == machine.DEEPSLEEP_RESET

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
