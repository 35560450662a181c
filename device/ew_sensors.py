# Sensor drivers. Each has a `name` and read() -> dict of metric name ->
# number or bool, leaving out what it could not read (JSON has no NaN). A
# read that fails raises OSError; the app counts it and goes on.
#
# Each driver lives in a module of its own and is imported only when the
# board's config names it: code costs heap, and an ESP8266 has 36 KB. The
# synthetic one is small and stays here.

import math

from ew_board import ticks_ms


def make(board, spec, index):
    """A sensor from its config entry, e.g. {"type": "bme280", "scl": 5, "sda": 4}."""
    kind = spec.get("type", "synthetic")
    name = spec.get("name", kind)
    if kind == "synthetic":
        return Synthetic(name, spec.get("phase", index * 0.7))
    if kind == "bme280":
        from ew_bme280 import BME280

        return BME280(
            board.i2c(spec.get("scl", 5), spec.get("sda", 4)), name, spec.get("address", 0x76)
        )
    if kind == "dht22":
        from ew_dht22 import DHT22

        return DHT22(board.pin(spec["pin"]), name)
    if kind == "internal":
        from ew_internal import Internal

        return Internal(board, name)
    raise ValueError("unknown sensor type %s" % kind)


class Synthetic:
    """A plausible room whose readings move within a minute, so a dashboard
    shows something: for simulated boards and a board with nothing wired."""

    def __init__(self, name="synthetic", phase=0.0):
        self.name = name
        self._phase = phase

    def read(self):
        t = ticks_ms() / 60000.0 + self._phase  # minutes
        temp = 21.0 + 2.5 * math.sin(t * 0.5) + 0.3 * math.sin(t * 7.1)
        rh = 45.0 + 8.0 * math.sin(t * 0.3 + 1.0)
        return {"temp_c": round(temp, 2), "rh": round(rh, 1)}
