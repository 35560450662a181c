"""MicroPython's `dht` for a simulated board: a DHT22 on the GPIO that
edgewire.sim.hardware names, or ETIMEDOUT when nothing is wired there."""

from edgewire.sim import hardware as _hw


class DHT22:
    def __init__(self, pin):
        self._pin = pin.id
        self._reading = None

    def measure(self):
        self._reading = _hw.dht22_reading(self._pin)

    def temperature(self):
        return self._reading[0]

    def humidity(self):
        return self._reading[1]
