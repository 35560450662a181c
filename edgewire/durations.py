"""Durations as people write them: `90`, `90s`, `15m`, `6h`, `30d`."""

import math
import re

_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")


def parse_duration(text: str) -> float:
    """Seconds in `text`; ValueError naming the accepted forms otherwise."""
    match = _DURATION.match(text)
    if match is None:
        raise ValueError(f"{text[:40]!r} is not a duration (like 90s, 15m, 6h or 30d)")
    seconds = float(match.group(1)) * _UNITS[match.group(2)]
    if not math.isfinite(seconds) or seconds <= 0:
        raise ValueError(f"{text[:40]!r} must be a positive duration")
    return seconds
