"""A fake pin header for a simulated Raspberry Pi: what RPi.GPIO drives and
senses, recorded so a test can read the output levels and make input edges.

Rule: a level changes only through `output()` (the program) or through
`drive()`, `bounce()`, `press()` and `release()` (the world outside the
Pi). Edges are debounced the way RPi.GPIO does it: a matching edge calls
back unless the last call back on that pin was at most `bouncetime` ms
earlier. Time here is a clock of the fake's own, moved only by the
simulation (`advance()`, and the gaps within a burst of bounces), so a test
of debouncing needs no sleeping and never flakes.
"""

import threading
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

# RPi.GPIO's own values, so code that prints or compares them sees the same.
BOARD, BCM = 10, 11
OUT, IN = 0, 1
LOW, HIGH = 0, 1
PUD_OFF, PUD_DOWN, PUD_UP = 20, 21, 22
RISING, FALLING, BOTH = 31, 32, 33

CHANNELS = range(28)  # GPIO0..GPIO27 on the 40-pin header, BCM numbering
BOUNCE_GAP_S = 0.001  # a contact bounces for a few ms, a ms or so apart


@dataclass
class Pin:
    """One GPIO as the fake sees it."""

    channel: int
    direction: int | None = None  # None: not set up (an input, as at power-on)
    level: int = LOW
    pull: int = PUD_OFF
    edge: int | None = None  # edge detection, once add_event_detect() has run
    callbacks: list[Callable[[int], None]] = field(default_factory=list)
    bouncetime_s: float = 0.0
    last_call: float | None = None
    # (fake time, level) each time the program changed an output, oldest first.
    history: list[tuple[float, int]] = field(default_factory=list)


class FakePins:
    """RPi.GPIO's state in one process, and the outside world's handle on it."""

    def __init__(self) -> None:
        self.mode: int | None = None
        self.warnings = True
        self.now = 0.0
        self.pins: dict[int, Pin] = {}
        # RPi.GPIO is called from the program and from its callback thread.
        self._lock = threading.RLock()

    # -- the program's side (RPi.GPIO's functions) ---------------------------

    def setmode(self, mode: int) -> None:
        if mode not in (BOARD, BCM):
            raise ValueError("An invalid mode was passed to setmode()")
        if self.mode is not None and mode != self.mode:
            raise ValueError("A different mode has already been set!")
        self.mode = mode

    def setup(self, channel: int, direction: int, pull_up_down: int, initial: int) -> None:
        with self._lock:
            pin = self._pin(channel)
            if self.warnings and pin.direction == OUT:  # as left by a program that crashed
                warnings.warn(
                    "This channel is already in use, continuing anyway. "
                    "Use GPIO.setwarnings(False) to disable warnings.",
                    RuntimeWarning,
                    stacklevel=3,
                )
            if direction == OUT:
                pin.direction, pin.pull = OUT, PUD_OFF
                self._set_output(pin, LOW if initial < 0 else initial)
            elif direction == IN:
                pin.direction, pin.pull = IN, pull_up_down
                if pull_up_down == PUD_UP:
                    pin.level = HIGH
                elif pull_up_down == PUD_DOWN:
                    pin.level = LOW
            else:
                raise ValueError("An invalid direction was passed to setup()")

    def output(self, channel: int, value: int) -> None:
        with self._lock:
            pin = self._pin(channel)
            if pin.direction != OUT:
                raise RuntimeError("The GPIO channel has not been set up as an OUTPUT")
            self._set_output(pin, HIGH if value else LOW)

    def input(self, channel: int) -> int:
        with self._lock:
            pin = self._pin(channel)
            if pin.direction is None:
                raise RuntimeError("You must setup() the GPIO channel first")
            return pin.level

    def add_event_detect(
        self, channel: int, edge: int, callback: Callable[[int], None] | None, bouncetime: int
    ) -> None:
        with self._lock:
            pin = self._pin(channel)
            if pin.direction != IN:
                raise RuntimeError("You must setup() the GPIO channel as an input first")
            if edge not in (RISING, FALLING, BOTH):
                raise ValueError("The edge must be set to RISING, FALLING or BOTH")
            if pin.edge is not None:
                raise RuntimeError("Conflicting edge detection already enabled for this GPIO")
            pin.edge, pin.bouncetime_s, pin.last_call = edge, max(0, bouncetime) / 1000, None
            pin.callbacks = [callback] if callback is not None else []

    def remove_event_detect(self, channel: int) -> None:
        with self._lock:
            pin = self._pin(channel)
            pin.edge, pin.callbacks, pin.last_call = None, [], None

    def cleanup(self, channels: int | Iterable[int] | None) -> None:
        """Back to inputs without pulls, edge detection off, as RPi.GPIO leaves them."""
        with self._lock:
            if channels is None:
                chosen = list(self.pins)
            elif isinstance(channels, int):
                chosen = [channels]
            else:
                chosen = list(channels)
            for channel in chosen:
                pin = self._line(channel)
                if pin.direction == OUT:
                    pin.level = LOW  # a floating pin: the LED's resistor to GND wins
                pin.direction, pin.pull, pin.edge, pin.callbacks = None, PUD_OFF, None, []
            if channels is None:
                self.mode = None

    # -- the outside world's side ----------------------------------------------

    def level(self, channel: int) -> int:
        """What a voltmeter on the pin reads."""
        with self._lock:
            return self._line(channel).level

    def direction(self, channel: int) -> int | None:
        with self._lock:
            return self._line(channel).direction

    def edge_detection(self, channel: int) -> int | None:
        with self._lock:
            return self._line(channel).edge

    def history(self, channel: int) -> list[tuple[float, int]]:
        with self._lock:
            return list(self._line(channel).history)

    def advance(self, seconds: float) -> None:
        with self._lock:
            self.now += seconds

    def drive(self, channel: int, level: int) -> None:
        """Something outside pulls an input to `level`."""
        self.bounce(channel, [level])

    def bounce(self, channel: int, levels: Sequence[int], gap_s: float = BOUNCE_GAP_S) -> None:
        """The line goes through `levels`, `gap_s` apart. As with RPi.GPIO,
        whose callbacks run on a thread of their own some time after the
        edge, the callbacks run once the burst is over (here, on the
        caller's thread), reading the line as it has settled."""
        due: list[Callable[[int], None]] = []
        with self._lock:
            pin = self._line(channel)
            if pin.direction == OUT:
                raise RuntimeError(f"GPIO{channel} is an output: driving it is a short circuit")
            for index, level in enumerate(levels):
                if index:
                    self.now += gap_s
                before, pin.level = pin.level, HIGH if level else LOW
                if pin.level != before and self._detects(pin, rising=pin.level == HIGH):
                    due.extend(pin.callbacks)
        for callback in due:
            callback(channel)

    def press(self, channel: int, bounces: int = 2) -> None:
        """A push button to GND is pressed: the contact bounces, then holds low."""
        self.bounce(channel, [LOW, HIGH] * bounces + [LOW])

    def release(self, channel: int, bounces: int = 2) -> None:
        """The button is let go: the line bounces back up to the pull-up."""
        self.bounce(channel, [HIGH, LOW] * bounces + [HIGH])

    # -- inside -------------------------------------------------------------------

    def _pin(self, channel: int) -> Pin:
        if self.mode is None:
            raise RuntimeError(
                "Please set pin numbering mode using GPIO.setmode(GPIO.BOARD) or "
                "GPIO.setmode(GPIO.BCM)"
            )
        if self.mode != BCM:
            # The fake knows the BCM numbering only, which is all edgewire uses.
            raise ValueError("The channel sent is invalid on a Raspberry Pi")
        return self._line(channel)

    def _line(self, channel: int) -> Pin:
        if channel not in CHANNELS:
            raise ValueError("The channel sent is invalid on a Raspberry Pi")
        return self.pins.setdefault(channel, Pin(channel))

    def _set_output(self, pin: Pin, level: int) -> None:
        if level != pin.level or not pin.history:
            pin.history.append((self.now, level))
        pin.level = level

    def _detects(self, pin: Pin, rising: bool) -> bool:
        """RPi.GPIO's rule: a matching edge counts unless the last one that
        counted was at most bouncetime ago."""
        if pin.edge is None or pin.edge == (FALLING if rising else RISING):
            return False
        if pin.last_call is not None and self.now - pin.last_call <= pin.bouncetime_s:
            return False
        pin.last_call = self.now
        return True
