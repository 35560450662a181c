"""The flush button: a push button from a GPIO to GND, held high by the
Pi's internal pull-up, so a press is a falling edge.

Debouncing is RPi.GPIO's `bouncetime`: edges within that many ms of the
last one reported are contact bounce and dropped. A contact can also dip
low for a moment as it is let go, which is a falling edge a whole press
after the last one; by the time RPi.GPIO's thread runs the callback the
line is back high, so a press counts only if the line still reads low.
"""

from collections.abc import Callable

from edge.gpio.faces import GpioApi


class Button:
    """Calls `on_press` once a press, on RPi.GPIO's callback thread."""

    def __init__(
        self, gpio: GpioApi, pin: int, on_press: Callable[[], None], bounce_ms: int = 200
    ) -> None:
        self._gpio = gpio
        self.pin = pin
        self._on_press = on_press
        gpio.setup(pin, gpio.IN, pull_up_down=gpio.PUD_UP)
        gpio.add_event_detect(pin, gpio.FALLING, callback=self._edge, bouncetime=bounce_ms)

    def _edge(self, channel: int) -> None:
        if self._gpio.input(channel) == self._gpio.LOW:
            self._on_press()

    def close(self) -> None:
        self._gpio.remove_event_detect(self.pin)
        self._gpio.cleanup(self.pin)
