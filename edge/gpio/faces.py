"""Typed faces of the untyped modules under edge/gpio: RPi.GPIO, blinka's
busio.I2C and the Adafruit BME280 driver, as far as edgewire uses them.

The real modules and the stand-ins in edgewire/sim/pi both satisfy them
(a module can satisfy a Protocol), so mypy checks every call without stubs
or ignores.
"""

from collections.abc import Callable
from typing import Protocol


class GpioApi(Protocol):
    """The part of RPi.GPIO that edge/gpio uses (the module satisfies it)."""

    BCM: int
    OUT: int
    IN: int
    LOW: int
    HIGH: int
    PUD_UP: int
    FALLING: int

    def setwarnings(self, flag: bool) -> None: ...
    def setmode(self, mode: int) -> None: ...
    def setup(
        self, channel: int, direction: int, pull_up_down: int = ..., initial: int = ...
    ) -> None: ...
    def output(self, channel: int, value: int) -> None: ...
    def input(self, channel: int) -> int: ...
    def add_event_detect(
        self,
        channel: int,
        edge: int,
        callback: Callable[[int], None] | None = ...,
        bouncetime: int = ...,
    ) -> None: ...
    def remove_event_detect(self, channel: int) -> None: ...
    def cleanup(self, channel: int = ...) -> None: ...


class I2CBus(Protocol):
    """busio.I2C, as far as edge/gpio touches it (the driver does the rest)."""

    def deinit(self) -> None: ...


class Bme280(Protocol):
    """adafruit_bme280.basic.Adafruit_BME280_I2C's readings."""

    @property
    def temperature(self) -> float: ...
    @property
    def relative_humidity(self) -> float: ...
    @property
    def pressure(self) -> float: ...
