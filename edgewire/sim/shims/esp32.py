"""MicroPython's `esp32` for a simulated ESP32: the chip's own temperature."""


def mcu_temperature():
    return 43
