# Sensor drivers. Each has a `name` and read() -> dict of metric name ->
# number or bool, leaving out what it could not read (JSON has no NaN). A
# read that fails raises OSError; the app counts it and goes on.
#
# Each driver lives in a module of its own, imported only when the board's
# config names it (ew_start.make_sensor): code costs heap, and an ESP8266
# has 36 KB. The synthetic one is here.

import math

from ew_board import ticks_ms


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
