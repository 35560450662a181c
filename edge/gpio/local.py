"""The Pi as a device of its own: its sensors become samples exactly as a
board would publish them on edgewire/<id>/telemetry, its LED shows the
cloud link, and its button asks for a flush.

Rule: a (device_id, boot, seq) is never used twice, as downstream a repeat
is a duplicate and dropped. So `boot` goes up at every start and is on disk
(fsynced) before the first sample of that boot leaves, and `seq` counts
from 0 within the boot, taking a number only for a sample handed on.
"""

import asyncio
import contextlib
import functools
import os
import threading
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import msgspec

from edge.gpio.backend import Backend, select_backend
from edge.gpio.button import Button
from edge.gpio.config import GpioSettings
from edge.gpio.faces import GpioApi
from edge.gpio.led import LedPattern, StatusLed
from edge.gpio.sensors import SensorReader
from edgewire import contract
from edgewire.errors import StorageError
from edgewire.logs import get_logger

log = get_logger("edge.gpio")

BOOT_FILE = "pi-boot"  # in the edge's data dir
Submit = Callable[[str, bytes], None]
T = TypeVar("T")


class SampleEncoder:
    """Readings in, telemetry payloads out (contract §2). Sans-IO."""

    def __init__(self, boot: int) -> None:
        if not 0 <= boot <= contract.MAX_COUNTER:
            raise ValueError(f"boot {boot} is outside 0..{contract.MAX_COUNTER}")
        self.boot = boot
        self.seq = 0  # the next sample's

    def encode(self, metrics: Mapping[str, float | bool], ts: float) -> bytes:
        if not 1 <= len(metrics) <= contract.MAX_METRICS:
            raise ValueError(f"a sample carries 1 to {contract.MAX_METRICS} metrics")
        payload = msgspec.json.encode(
            {"seq": self.seq, "boot": self.boot, "ts": round(ts, 3), "m": dict(metrics)}
        )
        self.seq += 1
        return payload


def next_boot(path: Path, now: float) -> int:
    """This start's boot number, stored durably before it is returned.

    0 at the first start. A file that cannot be read back as a number
    cannot say which boots were used, so the boot restarts from the Unix
    time (`now`), beyond any count of restarts that could have gone before.
    """
    try:
        boot = int(path.read_text().strip()) + 1
    except FileNotFoundError:
        boot = 0
    except (OSError, ValueError) as exc:
        boot = int(now)
        log.warning(
            "boot counter unreadable: counting on from the clock",
            file=str(path),
            error=str(exc),
            boot=boot,
        )
    if not 0 <= boot <= contract.MAX_COUNTER:
        boot = int(now)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        scratch = path.with_name(path.name + ".new")
        with scratch.open("w") as handle:
            handle.write(f"{boot}\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(scratch, path)
        directory = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)  # the rename itself survives a power cut
        finally:
            os.close(directory)
    except OSError as exc:
        raise StorageError(f"cannot keep the Pi's boot counter in {path}: {exc}") from None
    return boot


@dataclass
class LocalStats:
    samples: int = 0  # handed to the agent
    empty_readings: int = 0  # every sensor failed: nothing to send
    reads_skipped: int = 0  # a turn came while the last read hung on the bus
    button_presses: int = 0
    gpio_errors: int = 0  # the LED or the button could not be set up
    sensor_failures: dict[str, int] = field(default_factory=dict)


class LocalDevice:
    """The Pi's own sensors, LED and button, run by the edge agent.

    `submit(device_id, payload)` takes a telemetry payload as if it had come
    from the broker; `on_button()` is called on the event loop at each press.
    Call `set_link_state()` on the event loop as the cloud link changes.
    `run(stop)` is one start (a new boot); it returns once `stop` is set,
    with the LED off and the pins given back.
    """

    def __init__(
        self,
        settings: GpioSettings,
        data_dir: Path,
        submit: Submit,
        on_button: Callable[[], None],
        *,
        backend: Backend | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.device_id = settings.device_id
        self._settings = settings
        self._boot_path = data_dir / BOOT_FILE
        self._submit = submit
        self._on_button = on_button
        # Picked now, so a missing module is an error before start-up.
        self.backend = backend if backend is not None else select_backend(settings)
        self._clock = clock
        self._reader = SensorReader(settings.i2c_sensors, self.backend)
        self._pattern = LedPattern()
        self._streaming = False
        self._buffering = False
        self._link_changed = asyncio.Event()
        self._reading: asyncio.Future[dict[str, float]] | None = None
        self.encoder: SampleEncoder | None = None  # once running
        self.stats = LocalStats(sensor_failures=self._reader.failures)

    def set_link_state(self, streaming: bool, buffering: bool) -> None:
        if (streaming, buffering) != (self._streaming, self._buffering):
            self._streaming, self._buffering = streaming, buffering
            self._link_changed.set()

    async def run(self, stop: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        self._reading = None  # a read left hanging by an earlier run is not ours
        boot = await asyncio.to_thread(next_boot, self._boot_path, self._clock())
        self.encoder = SampleEncoder(boot)
        log.info(
            "the Pi's own device started",
            device_id=self.device_id,
            boot=boot,
            hardware=self.backend.name,
        )
        led: StatusLed | None = None
        button: Button | None = None
        gpio = self._gpio() if self._settings.pins else None
        if gpio is not None:
            if self._settings.status_led_pin is not None:
                led = self._attempt("status LED", StatusLed, gpio, self._settings.status_led_pin)
            if self._settings.button_pin is not None:
                button = self._attempt(
                    "button",
                    Button,
                    gpio,
                    self._settings.button_pin,
                    lambda: _post(loop, self._pressed),
                    self._settings.button_bounce_ms,
                )
        try:
            async with asyncio.TaskGroup() as group:
                if self._settings.i2c_sensors:
                    group.create_task(self._sample(stop))
                if led is not None:
                    group.create_task(self._blink(stop, led))
                group.create_task(stop.wait())
        finally:
            self._close(led, button)

    # -- the loops ------------------------------------------------------------

    async def _sample(self, stop: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        due = loop.time()
        ts = self._clock()
        hung = False
        while not stop.is_set():
            if self._reading is None:
                self._reading, ts = _in_thread(loop, self._reader.read), self._clock()
            else:  # one read at a time: a hung bus must not pile up threads
                self.stats.reads_skipped += 1
                if not hung:
                    log.warning("a sensor read hangs on the I2C bus: turns skipped until it ends")
                hung = True
            due = max(due + self._settings.interval_s, loop.time())  # no making up turns
            await _wait(stop, due - loop.time(), self._reading)
            if self._reading.done():
                reading, self._reading = self._reading, None
                if hung:
                    log.info("the hung sensor read has ended", skipped=self.stats.reads_skipped)
                hung = False
                self._hand_on(reading, ts)
                await _wait(stop, due - loop.time())

    def _hand_on(self, reading: "asyncio.Future[dict[str, float]]", ts: float) -> None:
        try:
            metrics = reading.result()
        except Exception:  # the reader means never to raise; a bug must not stop the loop
            log.exception("reading the sensors failed")
            metrics = {}
        if not metrics:
            self.stats.empty_readings += 1
            return
        assert self.encoder is not None, "set by run()"
        self._submit(self.device_id, self.encoder.encode(metrics, ts))
        self.stats.samples += 1

    async def _blink(self, stop: asyncio.Event, led: StatusLed) -> None:
        loop = asyncio.get_running_loop()
        while not stop.is_set():
            self._link_changed.clear()
            state = (self._streaming, self._buffering, False)
            now = loop.time()
            led.show(self._pattern.level(*state, now))
            change = self._pattern.next_change(*state, now)
            timeout = None if change is None else max(0.0, change - now)
            await _wait(stop, timeout, self._link_changed.wait())

    def _pressed(self) -> None:
        self.stats.button_presses += 1
        log.info("flush button pressed", device_id=self.device_id)
        try:
            self._on_button()
        except Exception:
            log.exception("the flush button's callback failed")

    # -- set-up and clean-up -------------------------------------------------------

    def _gpio(self) -> GpioApi | None:
        try:
            gpio = self.backend.gpio()
            # Pins left set up by a run that crashed are ours to take: no warning.
            gpio.setwarnings(False)
            gpio.setmode(gpio.BCM)
        except Exception as exc:  # noqa: BLE001 -- the Pi's extras never stop the agent
            self.stats.gpio_errors += 1
            log.error("GPIO unavailable: no status LED or button", error=f"{exc}")
            return None
        return gpio

    def _attempt(self, what: str, make: Callable[..., T], *args: object) -> T | None:
        try:
            return make(*args)
        except Exception as exc:  # noqa: BLE001 -- e.g. no access to /dev/gpiomem
            self.stats.gpio_errors += 1
            log.error(f"{what} unavailable", error=f"{type(exc).__name__}: {exc}")
            return None

    def _close(self, led: StatusLed | None, button: Button | None) -> None:
        closers: list[tuple[str, Callable[[], None]]] = []
        if led is not None:
            closers.append(("status LED", led.close))  # off: stopped
        if button is not None:
            closers.append(("button", button.close))
        if self._reading is None or self._reading.done():
            closers.append(("I2C bus", self._reader.close))
        else:  # a read still hangs in the bus: leave the bus to it
            log.warning("stopping with a sensor read still hanging on the I2C bus")
        for what, close in closers:
            try:
                close()
            except Exception as exc:  # noqa: BLE001 -- close the rest regardless
                log.warning(f"closing the {what} failed", error=f"{type(exc).__name__}: {exc}")
        log.info("the Pi's own device stopped", device_id=self.device_id)


def _post(loop: asyncio.AbstractEventLoop, callback: Callable[[], None]) -> None:
    """Run `callback` on `loop` from any thread (RPi.GPIO calls back on its own)."""
    with contextlib.suppress(RuntimeError):  # the loop has closed: nobody is listening
        loop.call_soon_threadsafe(callback)


def _in_thread(
    loop: asyncio.AbstractEventLoop, work: Callable[[], dict[str, float]]
) -> asyncio.Future[dict[str, float]]:
    """`work()` on a daemon thread of its own. Not the loop's executor: a
    read stuck on a hung bus must not hold up the process's exit."""
    future: asyncio.Future[dict[str, float]] = loop.create_future()

    def settle(result: dict[str, float] | None, error: BaseException | None) -> None:
        if future.done():
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result or {})

    def target() -> None:
        try:
            result = work()
        except Exception as exc:  # noqa: BLE001 -- carried over to the awaiting side
            _post(loop, functools.partial(settle, None, exc))
        else:
            _post(loop, functools.partial(settle, result, None))

    threading.Thread(target=target, name="edge-gpio-read", daemon=True).start()
    return future


async def _wait(
    stop: asyncio.Event, timeout: float | None, also: Awaitable[object] | None = None
) -> None:
    """Until `stop` is set, `also` is done, or `timeout` seconds pass. A
    future passed as `also` is left running; waiters made here are not."""
    waiters: set[asyncio.Future[Any]] = {asyncio.ensure_future(stop.wait())}
    owned = set(waiters)
    if also is not None:
        other = asyncio.ensure_future(also)
        waiters.add(other)
        if other is not also:
            owned.add(other)
    try:
        await asyncio.wait(
            waiters,
            timeout=None if timeout is None else max(0.0, timeout),
            return_when=asyncio.FIRST_COMPLETED,
        )
    finally:
        for waiter in owned:
            waiter.cancel()
