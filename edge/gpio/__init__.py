"""The Raspberry Pi's own sensors, status LED and flush button, run by the
edge agent when its config has a `[gpio]` table.

    config.py    the [gpio] table (GpioSettings) and its one-line errors
    faces.py     typed faces of RPi.GPIO, busio.I2C and the BME280 driver
    backend.py   the one place that picks real RPi.GPIO + blinka or the
                 simulation in edgewire/sim/pi, and typed faces for them
    sensors.py   I2C sensors through blinka and the Adafruit drivers
    led.py       what the LED shows (sans-IO) and the pin that shows it
    button.py    the button's pin, debounced
    local.py     LocalDevice: all of it as one device, feeding the agent

Import the modules themselves: the package imports nothing, so an edge
without a `[gpio]` table loads only config.py (for its settings).
"""
