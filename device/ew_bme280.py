# Bosch BME280 on I2C.

import struct


class BME280:
    """Bosch BME280 on I2C: temperature, humidity, pressure. Integer
    compensation from the datasheet (section 4.2.3), so single-precision
    floats on the ESP ports lose nothing until the final division."""

    def __init__(self, i2c, name="bme280", address=0x76):
        self.name = name
        self._i2c = i2c
        self._address = address
        if i2c.readfrom_mem(address, 0xD0, 1)[0] != 0x60:
            raise OSError("no BME280 at 0x%02x" % address)
        t = struct.unpack("<HhhHhhhhhhhh", i2c.readfrom_mem(address, 0x88, 24))
        self._t = t[0:3]
        self._p = t[3:12]
        h1 = i2c.readfrom_mem(address, 0xA1, 1)[0]
        e = i2c.readfrom_mem(address, 0xE1, 7)
        h4 = (e[3] << 4) | (e[4] & 0x0F)
        h5 = (e[5] << 4) | (e[4] >> 4)
        self._h = (
            h1,
            struct.unpack("<h", e[0:2])[0],
            e[2],
            h4 - 4096 if h4 > 2047 else h4,
            h5 - 4096 if h5 > 2047 else h5,
            e[6] - 256 if e[6] > 127 else e[6],
        )
        # Humidity x1, then temperature x1, pressure x1, normal mode.
        i2c.writeto_mem(address, 0xF2, b"\x01")
        i2c.writeto_mem(address, 0xF4, b"\x27")

    def read(self):
        d = self._i2c.readfrom_mem(self._address, 0xF7, 8)
        adc_p = (d[0] << 12) | (d[1] << 4) | (d[2] >> 4)
        adc_t = (d[3] << 12) | (d[4] << 4) | (d[5] >> 4)
        adc_h = (d[6] << 8) | d[7]
        t1, t2, t3 = self._t
        var1 = (((adc_t >> 3) - (t1 << 1)) * t2) >> 11
        var2 = (((((adc_t >> 4) - t1) * ((adc_t >> 4) - t1)) >> 12) * t3) >> 14
        t_fine = var1 + var2
        out = {"temp_c": ((t_fine * 5 + 128) >> 8) / 100}
        pressure = self._pressure(adc_p, t_fine)
        if pressure is not None:
            out["pressure_hpa"] = round(pressure / 25600, 2)
        out["rh"] = round(self._humidity(adc_h, t_fine) / 1024, 1)
        return out

    def _pressure(self, adc_p, t_fine):
        p1, p2, p3, p4, p5, p6, p7, p8, p9 = self._p
        var1 = t_fine - 128000
        var2 = var1 * var1 * p6
        var2 += (var1 * p5) << 17
        var2 += p4 << 35
        var1 = ((var1 * var1 * p3) >> 8) + ((var1 * p2) << 12)
        var1 = (((1 << 47) + var1) * p1) >> 33
        if var1 == 0:
            return None  # the datasheet's guard against division by zero
        p = 1048576 - adc_p
        p = (((p << 31) - var2) * 3125) // var1
        var1 = (p9 * (p >> 13) * (p >> 13)) >> 25
        var2 = (p8 * p) >> 19
        return ((p + var1 + var2) >> 8) + (p7 << 4)  # Pa * 256

    def _humidity(self, adc_h, t_fine):
        h1, h2, h3, h4, h5, h6 = self._h
        v = t_fine - 76800
        v = ((((adc_h << 14) - (h4 << 20) - (h5 * v)) + 16384) >> 15) * (
            ((((((v * h6) >> 10) * (((v * h3) >> 11) + 32768)) >> 10) + 2097152) * h2 + 8192) >> 14
        )
        v -= ((((v >> 15) * (v >> 15)) >> 7) * h1) >> 4
        v = 0 if v < 0 else min(v, 419430400)
        return v >> 12  # %RH * 1024
