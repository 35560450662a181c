"""Sensor drivers against simulated hardware at the lowest layer: a fake I2C
bus holding a BME280's registers. The driver's integer compensation must
agree with the datasheet's floating-point formulas (section 8.1), written
here independently."""

import sys

import pytest

from edgewire.paths import DEVICE_DIR
from edgewire.sim.hardware import BME280_CAL_H, BME280_CAL_P, BME280_CAL_T, BME280Chip, I2CBus

sys.path.insert(0, str(DEVICE_DIR))
from ew_bme280 import BME280  # type: ignore[import-not-found]

CAL_T, CAL_P, CAL_H = BME280_CAL_T, BME280_CAL_P, BME280_CAL_H


def fake_i2c(adc_t: int, adc_p: int, adc_h: int, chip_id: int = 0x60) -> I2CBus:
    """One BME280 at 0x76 on a simulated bus (the one simulated boards use)."""
    return I2CBus({0x76: BME280Chip(adc_t, adc_p, adc_h, chip_id)})


def datasheet_float(adc_t: int, adc_p: int, adc_h: int) -> tuple[float, float, float]:
    t1, t2, t3 = CAL_T
    p1, p2, p3, p4, p5, p6, p7, p8, p9 = CAL_P
    h1, h2, h3, h4, h5, h6 = CAL_H
    var1 = (adc_t / 16384.0 - t1 / 1024.0) * t2
    var2 = (adc_t / 131072.0 - t1 / 8192.0) ** 2 * t3
    t_fine = var1 + var2
    temp = t_fine / 5120.0
    var1 = t_fine / 2.0 - 64000.0
    var2 = var1 * var1 * p6 / 32768.0 + var1 * p5 * 2.0
    var2 = var2 / 4.0 + p4 * 65536.0
    var1 = (p3 * var1 * var1 / 524288.0 + p2 * var1) / 524288.0
    var1 = (1.0 + var1 / 32768.0) * p1
    p = (1048576.0 - adc_p - var2 / 4096.0) * 6250.0 / var1
    p = p + (p9 * p * p / 2147483648.0 + p * p8 / 32768.0 + p7) / 16.0
    h = t_fine - 76800.0
    h = (adc_h - (h4 * 64.0 + h5 / 16384.0 * h)) * (
        h2 / 65536.0 * (1.0 + h6 / 67108864.0 * h * (1.0 + h3 / 67108864.0 * h))
    )
    h = h * (1.0 - h1 * h / 524288.0)
    return temp, p / 100, max(0.0, min(100.0, h))


@pytest.mark.parametrize(
    ("adc_t", "adc_p", "adc_h"),
    [(519888, 415148, 30000), (480000, 390000, 22000), (560000, 450000, 36000)],
)
def test_bme280_matches_the_datasheet(adc_t: int, adc_p: int, adc_h: int) -> None:
    bus = fake_i2c(adc_t, adc_p, adc_h)
    sensor = BME280(bus)
    assert (0xF2, b"\x01") in bus.chips[0x76].writes, "humidity oversampling set"
    assert (0xF4, b"\x27") in bus.chips[0x76].writes, "normal mode"
    reading = sensor.read()
    temp, pressure, humidity = datasheet_float(adc_t, adc_p, adc_h)
    assert reading["temp_c"] == pytest.approx(temp, abs=0.01)
    assert reading["pressure_hpa"] == pytest.approx(pressure, abs=0.02)
    assert reading["rh"] == pytest.approx(humidity, abs=0.1)


def test_the_datasheet_example_temperature() -> None:
    # Bosch's worked example: these calibration values and adc_T give 25.08 degC.
    assert BME280(fake_i2c(519888, 415148, 30000)).read()["temp_c"] == 25.08


def test_a_missing_or_foreign_chip_is_a_clear_error() -> None:
    with pytest.raises(OSError, match="no BME280"):
        BME280(fake_i2c(0, 0, 0, chip_id=0x58))  # a BMP280 answers 0x58
    with pytest.raises(OSError, match="ENODEV"):
        BME280(fake_i2c(0, 0, 0), address=0x77)
