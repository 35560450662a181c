"""The Pi's own I2C sensors, read through blinka's busio.I2C and the Adafruit
drivers.

Rule: `read()` never raises. A sensor that fails (absent, a foreign chip, a
bus error, a reading out of the chip's range) is left out of that reading,
logged when it starts failing and when it comes back, and counted; it is
opened afresh next time, as a chip that was unplugged or browned out must
be set up again. Blocking: the agent calls it on a thread of its own.
"""

import math
from collections.abc import Sequence

from edge.gpio.backend import Backend
from edge.gpio.config import I2cSensor
from edge.gpio.faces import Bme280, I2CBus
from edgewire.logs import get_logger

log = get_logger("edge.gpio")

# The datasheet's operating range (BME280 section 1): a reading outside it
# is a bus fault that happened to give numbers, not weather.
BME280_RANGE = {"temp_c": (-40.0, 85.0), "rh": (0.0, 100.0), "pressure_hpa": (300.0, 1100.0)}
# As the boards round the same readings (device/ew_bme280.py).
DECIMALS = {"temp_c": 2, "rh": 1, "pressure_hpa": 2}


class SensorReader:
    def __init__(self, sensors: Sequence[I2cSensor], backend: Backend) -> None:
        self._sensors = list(sensors)
        self._backend = backend
        self._bus: I2CBus | None = None
        self._drivers: dict[I2cSensor, Bme280] = {}
        self._failing: set[str] = set()
        # Failed reads per sensor label, and of the bus itself under "i2c".
        self.failures: dict[str, int] = {s.label: 0 for s in self._sensors}

    def read(self) -> dict[str, float]:
        if not self._sensors:
            return {}
        bus = self._open_bus()
        if bus is None:
            return {}
        metrics: dict[str, float] = {}
        for sensor in self._sensors:
            try:
                reading = self._read_one(bus, sensor)
            except Exception as exc:  # noqa: BLE001 -- any driver fault leaves one sensor out
                self._drivers.pop(sensor, None)
                self._failed(sensor.label, exc)
                continue
            self._recovered(sensor.label)
            metrics.update(reading)
        return metrics

    def close(self) -> None:
        self._drivers.clear()
        if self._bus is not None:
            bus, self._bus = self._bus, None
            try:
                bus.deinit()
            except Exception as exc:  # noqa: BLE001 -- closing must not stop the shutdown
                log.warning("closing the I2C bus failed", error=_describe(exc))

    def _open_bus(self) -> I2CBus | None:
        if self._bus is None:
            try:
                self._bus = self._backend.open_i2c()
            except Exception as exc:  # noqa: BLE001 -- e.g. I2C not enabled in raspi-config
                self._failed("i2c", exc)
                return None
            self._recovered("i2c")
        return self._bus

    def _read_one(self, bus: I2CBus, sensor: I2cSensor) -> dict[str, float]:
        driver = self._drivers.get(sensor)
        if driver is None:
            driver = self._backend.open_bme280(bus, sensor.address)
            self._drivers[sensor] = driver
        raw = {
            "temp_c": float(driver.temperature),
            "rh": float(driver.relative_humidity),
            "pressure_hpa": float(driver.pressure),
        }
        for name, value in raw.items():
            low, high = BME280_RANGE[name]
            if not (math.isfinite(value) and low <= value <= high):
                raise ValueError(f"{name} {value!r} is outside the chip's range {low}..{high}")
        return {sensor.prefix + name: round(value, DECIMALS[name]) for name, value in raw.items()}

    def _failed(self, label: str, exc: BaseException) -> None:
        self.failures[label] = self.failures.get(label, 0) + 1
        if label not in self._failing:
            self._failing.add(label)
            log.warning("sensor left out", sensor=label, error=_describe(exc))

    def _recovered(self, label: str) -> None:
        if label in self._failing:
            self._failing.discard(label)
            log.info("sensor back", sensor=label)


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"
