"""RPi.GPIO for the simulated Pi: the functions and constants edgewire uses,
a thin face over the fake pin header of `edgewire.sim.pi.current()`."""

from collections.abc import Callable, Iterable

from edgewire.sim.pi import current
from edgewire.sim.pi.pins import (
    BCM,
    BOARD,
    BOTH,
    FALLING,
    HIGH,
    IN,
    LOW,
    OUT,
    PUD_DOWN,
    PUD_OFF,
    PUD_UP,
    RISING,
)

__all__ = [
    "BCM",
    "BOARD",
    "BOTH",
    "FALLING",
    "HIGH",
    "IN",
    "LOW",
    "OUT",
    "PUD_DOWN",
    "PUD_OFF",
    "PUD_UP",
    "RISING",
    "add_event_detect",
    "cleanup",
    "getmode",
    "input",
    "output",
    "remove_event_detect",
    "setmode",
    "setup",
    "setwarnings",
]


def setwarnings(flag: bool) -> None:
    current().pins.warnings = bool(flag)


def setmode(mode: int) -> None:
    current().pins.setmode(mode)


def getmode() -> int | None:
    return current().pins.mode


def setup(channel: int, direction: int, pull_up_down: int = PUD_OFF, initial: int = -1) -> None:
    current().pins.setup(channel, direction, pull_up_down, initial)


def output(channel: int, value: int) -> None:
    current().pins.output(channel, value)


def input(channel: int) -> int:  # RPi.GPIO's name
    return current().pins.input(channel)


def add_event_detect(
    channel: int, edge: int, callback: Callable[[int], None] | None = None, bouncetime: int = 0
) -> None:
    current().pins.add_event_detect(channel, edge, callback, bouncetime)


def remove_event_detect(channel: int) -> None:
    current().pins.remove_event_detect(channel)


def cleanup(channel: int | Iterable[int] | None = None) -> None:
    current().pins.cleanup(channel)
