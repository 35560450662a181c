# Sensor drivers. Each has read() -> dict of metric name -> number or bool,
# and leaves out a metric it could not read (never NaN: JSON has no NaN).

import math


class Synthetic:
    """A plausible room whose readings move within a minute, so a dashboard
    shows something: for simulated boards and a board with nothing wired."""

    def __init__(self, board, phase=0.0):
        self._board = board
        self._phase = phase

    def read(self):
        t = self._board.ticks_ms() / 60000.0 + self._phase  # minutes
        temp = 21.0 + 2.5 * math.sin(t * 0.5) + 0.3 * math.sin(t * 7.1)
        rh = 45.0 + 8.0 * math.sin(t * 0.3 + 1.0)
        return {"temp_c": round(temp, 2), "rh": round(rh, 1)}


def make(board, spec, index):
    kind = spec.get("type", "synthetic")
    if kind == "synthetic":
        return Synthetic(board, phase=spec.get("phase", index * 0.7))
    raise ValueError("unknown sensor type %s" % kind)
