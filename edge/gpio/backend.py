"""The one place that picks the lowest layer under edge/gpio: the Pi's real
RPi.GPIO and blinka, or their stand-ins in edgewire/sim/pi.

Rule: the simulation runs only when asked for, and never silently. It runs
when EDGEWIRE_SIM_PI=1, or when the config says `simulate = true` and the
real modules are missing on a machine that is not a Raspberry Pi; it is
logged as a warning either way. A Pi missing its modules gets an error
saying what to install, whatever the config says; EDGEWIRE_SIM_PI=0 forbids
the simulation.

The Adafruit BME280 driver is the real one in both cases. The third-party
modules come in through importlib and leave as the typed faces of
faces.py, so mypy checks every call edge/gpio makes on them without stubs.
"""

import importlib
import importlib.util
import os
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, cast

from edge.gpio.config import GpioSettings
from edge.gpio.faces import Bme280, GpioApi, I2CBus
from edgewire.errors import SetupError
from edgewire.logs import get_logger

log = get_logger("edge.gpio")

SIM_ENV = "EDGEWIRE_SIM_PI"
PI_MODEL_FILE = Path("/proc/device-tree/model")  # "Raspberry Pi 4 Model B Rev 1.4"
INSTALL_HINT = "install them with: pip install 'edgewire[pi]'"
# Which distribution gives each module, for the error that names them.
DISTRIBUTIONS = {
    "RPi.GPIO": "RPi.GPIO",
    "board": "adafruit-blinka",
    "busio": "adafruit-blinka",
    "adafruit_bme280": "adafruit-circuitpython-bme280",
}


@dataclass(frozen=True)
class Backend:
    name: Literal["raspberry-pi", "simulated"]
    # Called when first needed, so a config without pins never imports RPi.GPIO.
    gpio: Callable[[], GpioApi]
    open_i2c: Callable[[], I2CBus]
    open_bme280: Callable[[I2CBus, int], Bme280]

    @property
    def simulated(self) -> bool:
        return self.name == "simulated"


def choose(
    flag: str | None, simulate: bool, missing: Collection[str], on_pi: bool
) -> Literal["real", "simulated"]:
    """Which layer to use, from the environment flag, the config's
    `simulate`, the real modules that are missing, and whether this is a Pi.
    Raises SetupError when neither can run."""
    if flag is not None and flag.strip() not in ("", "0", "1"):
        raise SetupError(f"{SIM_ENV}={flag!r}: set it to 1 to simulate the Pi, 0 to forbid it")
    forced = (flag or "").strip()
    if forced == "1":
        return "simulated"
    if not missing:
        return "real"
    names = ", ".join(sorted({DISTRIBUTIONS.get(m, m) for m in missing}))
    if on_pi:
        raise SetupError(f"this Raspberry Pi lacks {names} for [gpio]: {INSTALL_HINT}")
    if simulate and forced != "0":
        return "simulated"
    raise SetupError(
        f"[gpio] needs {names}, which are missing (this is not a Raspberry Pi?): "
        f"{INSTALL_HINT}, or set simulate = true in [gpio] to simulate the Pi"
    )


def needed_modules(settings: GpioSettings) -> list[str]:
    """The real modules this config needs off the simulation."""
    needed = []
    if settings.pins:
        needed.append("RPi.GPIO")
    if settings.i2c_sensors:
        needed += ["board", "busio"]
    return needed


def select_backend(settings: GpioSettings, environ: Mapping[str, str] | None = None) -> Backend:
    environ = os.environ if environ is None else environ
    if settings.i2c_sensors and not _importable("adafruit_bme280"):
        # The driver is real in the simulation too: nothing can stand in for it.
        raise SetupError(f"[gpio] i2c_sensors need adafruit-circuitpython-bme280: {INSTALL_HINT}")
    missing = [name for name in needed_modules(settings) if not _importable(name)]
    on_pi = is_raspberry_pi()
    choice = choose(environ.get(SIM_ENV), settings.simulate, missing, on_pi)
    if choice == "real":
        return _real()
    log.warning(
        "the Pi's GPIO and I2C are simulated",
        why=f"{SIM_ENV}=1" if environ.get(SIM_ENV, "").strip() == "1" else "simulate = true",
        on_a_pi=on_pi,
    )
    return _simulated()


def is_raspberry_pi(model_file: Path = PI_MODEL_FILE) -> bool:
    try:
        return "Raspberry Pi" in model_file.read_text(errors="replace")
    except OSError:
        return False


def _importable(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):  # a parent package missing, or half-imported
        return False


def _open_bme280(i2c: I2CBus, address: int) -> Bme280:
    driver = importlib.import_module("adafruit_bme280.basic")
    return cast(Bme280, driver.Adafruit_BME280_I2C(i2c, address=address))


def _real() -> Backend:
    def gpio() -> GpioApi:
        try:
            return cast(GpioApi, importlib.import_module("RPi.GPIO"))
        except (ImportError, RuntimeError) as exc:  # RuntimeError: "not on a Raspberry Pi"
            raise SetupError(f"RPi.GPIO cannot start: {exc}") from None

    def open_i2c() -> I2CBus:
        # blinka offers, on a terminal, to pip-install backends for features
        # edgewire does not use (NeoPixels, PWM) and waits for an answer:
        # never in the middle of an agent's start.
        os.environ.setdefault("BLINKA_SKIP_DEPENDENCY_CHECK", "1")
        board = importlib.import_module("board")
        busio = importlib.import_module("busio")
        return cast(I2CBus, busio.I2C(board.SCL, board.SDA))

    return Backend("raspberry-pi", gpio, open_i2c, _open_bme280)


def _simulated() -> Backend:
    from edgewire.sim.pi import GPIO, board, busio

    def gpio() -> GpioApi:
        return GPIO

    def open_i2c() -> I2CBus:
        return busio.I2C(board.SCL, board.SDA)

    return Backend("simulated", gpio, open_i2c, _open_bme280)
