"""Sensor drivers against simulated hardware at the lowest layer: a fake I2C
bus holding a BME280's registers. The driver's integer compensation must
agree with the datasheet's floating-point formulas (section 8.1), written
here independently."""

import struct
import sys

import pytest

from edgewire.paths import DEVICE_DIR

sys.path.insert(0, str(DEVICE_DIR))
from ew_bme280 import BME280  # type: ignore[import-not-found]

CAL_T = (27504, 26435, -1000)
CAL_P = (36477, -10685, 3024, 2855, 140, -7, 15500, -14600, 6000)
CAL_H = (75, 362, 0, 313, 50, 30)


class FakeI2C:
    """Registers of one BME280 at 0x76; records what the driver writes."""

    def __init__(self, adc_t: int, adc_p: int, adc_h: int, chip_id: int = 0x60) -> None:
        regs = bytearray(256)
        regs[0xD0] = chip_id
        regs[0x88:0xA0] = struct.pack("<HhhHhhhhhhhh", *CAL_T, *CAL_P)
        h1, h2, h3, h4, h5, h6 = CAL_H
        regs[0xA1] = h1
        regs[0xE1:0xE8] = struct.pack("<hB", h2, h3) + bytes(
            [(h4 >> 4) & 0xFF, (h4 & 0x0F) | ((h5 & 0x0F) << 4), (h5 >> 4) & 0xFF, h6 & 0xFF]
        )
        regs[0xF7:0xFF] = bytes(
            [adc_p >> 12, (adc_p >> 4) & 0xFF, (adc_p & 0x0F) << 4,
             adc_t >> 12, (adc_t >> 4) & 0xFF, (adc_t & 0x0F) << 4,
             adc_h >> 8, adc_h & 0xFF]
        )  # fmt: skip
        self.regs = regs
        self.writes: list[tuple[int, bytes]] = []

    def readfrom_mem(self, address: int, register: int, n: int) -> bytes:
        if address != 0x76:
            raise OSError(19, "ENODEV")
        return bytes(self.regs[register : register + n])

    def writeto_mem(self, address: int, register: int, data: bytes) -> None:
        self.writes.append((register, bytes(data)))


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
    bus = FakeI2C(adc_t, adc_p, adc_h)
    sensor = BME280(bus)
    assert (0xF2, b"\x01") in bus.writes, "humidity oversampling set"
    assert (0xF4, b"\x27") in bus.writes, "normal mode"
    reading = sensor.read()
    temp, pressure, humidity = datasheet_float(adc_t, adc_p, adc_h)
    assert reading["temp_c"] == pytest.approx(temp, abs=0.01)
    assert reading["pressure_hpa"] == pytest.approx(pressure, abs=0.02)
    assert reading["rh"] == pytest.approx(humidity, abs=0.1)


def test_the_datasheet_example_temperature() -> None:
    # Bosch's worked example: these calibration values and adc_T give 25.08 degC.
    assert BME280(FakeI2C(519888, 415148, 30000)).read()["temp_c"] == 25.08


def test_a_missing_or_foreign_chip_is_a_clear_error() -> None:
    with pytest.raises(OSError, match="no BME280"):
        BME280(FakeI2C(0, 0, 0, chip_id=0x58))  # a BMP280 answers 0x58
    with pytest.raises(OSError, match="ENODEV"):
        BME280(FakeI2C(0, 0, 0), address=0x77)
