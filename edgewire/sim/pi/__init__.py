"""A simulated Raspberry Pi under the edge's own sensors, status light and
button (edge/gpio), for machines that are not a Pi.

Only the lowest layer is simulated. `GPIO` stands in for RPi.GPIO over a
fake pin header (pins.py); `board` and `busio` stand in for blinka's, with
an I2C bus whose chips are the register models of edgewire/sim/hardware.py.
The Adafruit BME280 driver and adafruit_bus_device above them are the real
ones, talking to the chip byte by byte. edge/gpio/backend.py is the one
place that picks these over the real modules.

Why not the real blinka over a simulated bus: off a Pi blinka knows no I2C
pins (it sees a GENERIC_LINUX_PC); forced to a Pi with BLINKA_FORCEBOARD,
its `board` needs libgpiod's bindings at import, and its I2C ends in
ioctl()s on /dev/i2c-1, which only a kernel module (i2c-stub) could answer.

There is one pin header in a process, so there is one simulated Pi:
`current()` is it, and `reset()` gives a fresh one (between tests).
"""

from collections.abc import Mapping
from dataclasses import dataclass, field

from edgewire.sim.hardware import BME280Chip, I2CBus
from edgewire.sim.pi.pins import FakePins

# Bosch's worked example (the calibration of edgewire.sim.hardware):
# 25.08 degC, 1006.53 hPa, and 55.0 %RH at this raw humidity.
EXAMPLE_ADC = (519888, 415148, 30000)
BME280_ADDRESSES = (0x76, 0x77)  # SDO to GND, SDO to 3V3


def bme280(adc: tuple[int, int, int] = EXAMPLE_ADC) -> BME280Chip:
    adc_t, adc_p, adc_h = adc
    return BME280Chip(adc_t, adc_p, adc_h)


def _default_chips() -> dict[int, BME280Chip]:
    # A BME280 at both of its addresses, so any sensible [gpio] config finds
    # its sensor when the simulation is switched on without more ado.
    return {address: bme280() for address in BME280_ADDRESSES}


@dataclass
class SimPi:
    pins: FakePins = field(default_factory=FakePins)
    i2c: I2CBus = field(default_factory=lambda: I2CBus(_default_chips()))


_CURRENT: list[SimPi] = []


def current() -> SimPi:
    if not _CURRENT:
        _CURRENT.append(SimPi())
    return _CURRENT[0]


def reset(chips: Mapping[int, BME280Chip] | None = None) -> SimPi:
    """A freshly powered Pi: pins unconfigured, `chips` (address -> chip) on
    its I2C bus (a BME280 at 0x76 and 0x77 when not given)."""
    fresh = SimPi(i2c=I2CBus(dict(chips) if chips is not None else _default_chips()))
    _CURRENT[:] = [fresh]
    return fresh
