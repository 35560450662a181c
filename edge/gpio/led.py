"""The status LED: what it shows (LedPattern, sans-IO) and the pin that shows
it (StatusLed, over RPi.GPIO).

Rule: off = stopped; steady on = streaming to the cloud with nothing
waiting; blinking = buffering (the cloud is unreachable, or a backlog is
still draining to it). Blinking is a square wave locked to the clock
passed in, so it never needs a timer of its own: whoever drives the pin asks
for the level now and for the next time it may change.
"""

import math

from edge.gpio.faces import GpioApi

BLINK_HZ = 1.0


class LedPattern:
    def __init__(self, blink_hz: float = BLINK_HZ) -> None:
        if blink_hz <= 0:
            raise ValueError(f"blink_hz must be > 0, not {blink_hz}")
        self._half_period = 0.5 / blink_hz

    def blinking(self, streaming: bool, buffering: bool, stopped: bool) -> bool:
        return not stopped and (buffering or not streaming)

    def level(self, streaming: bool, buffering: bool, stopped: bool, now: float) -> bool:
        """True: the LED is lit at `now` (seconds on any steady clock)."""
        if stopped:
            return False
        if self.blinking(streaming, buffering, stopped):
            return math.floor(now / self._half_period) % 2 == 0  # lit first half-period
        return True

    def next_change(
        self, streaming: bool, buffering: bool, stopped: bool, now: float
    ) -> float | None:
        """When the level may next flip without a change of state; None when steady."""
        if not self.blinking(streaming, buffering, stopped):
            return None
        return (math.floor(now / self._half_period) + 1) * self._half_period


class StatusLed:
    """An LED from `pin` through a resistor to GND: the pin high lights it."""

    def __init__(self, gpio: GpioApi, pin: int) -> None:
        self._gpio = gpio
        self.pin = pin
        gpio.setup(pin, gpio.OUT, initial=gpio.LOW)
        self._lit = False

    @property
    def lit(self) -> bool:
        return self._lit

    def show(self, lit: bool) -> None:
        if lit != self._lit:  # each write is a syscall; a steady LED needs none
            self._gpio.output(self.pin, self._gpio.HIGH if lit else self._gpio.LOW)
            self._lit = lit

    def close(self) -> None:
        """Off, and the pin back to an input, as the agent found it."""
        self._gpio.output(self.pin, self._gpio.LOW)
        self._lit = False
        self._gpio.cleanup(self.pin)
