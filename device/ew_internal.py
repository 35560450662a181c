# The MCU's own temperature (ESP32, Pico W) or supply ADC (ESP8266).


class Internal:
    """The MCU's own temperature (ESP32, Pico) or supply ADC (ESP8266)."""

    def __init__(self, board, name="internal"):
        self.name = name
        self._platform = board.platform
        if self._platform == "rp2":
            import machine

            self._adc = machine.ADC(4)
        elif self._platform == "esp8266":
            import machine

            self._adc = machine.ADC(0)
        elif self._platform != "esp32":
            raise OSError("no internal sensor on %s" % self._platform)

    def read(self):
        if self._platform == "esp32":
            import esp32

            if hasattr(esp32, "mcu_temperature"):
                return {"mcu_temp_c": esp32.mcu_temperature()}
            return {"mcu_temp_c": round((esp32.raw_temperature() - 32) / 1.8, 1)}
        if self._platform == "rp2":
            volts = self._adc.read_u16() * 3.3 / 65535
            return {"mcu_temp_c": round(27 - (volts - 0.706) / 0.001721, 1)}
        return {"adc": self._adc.read()}
