"""Giving freed memory back to the system on a small board.

CPython returns freed objects to glibc's malloc, which keeps the pages for
reuse; a long-running edge that once held a burst (a backlog drained, a
busy minute) keeps that resident size for good. `malloc_trim` hands free
pages at the top and in the middle of the heap back to the kernel. Only
glibc has it; elsewhere this does nothing.
"""

import ctypes
import ctypes.util
from collections.abc import Callable

TRIM_EVERY_S = 10.0


def _find_trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        libc = ctypes.CDLL(name)
        trim: Callable[[int], int] = libc.malloc_trim
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to trim
        return None
    return trim


_trim = _find_trim()


class Trimmer:
    """Call `maybe(now)` from a periodic tick."""

    def __init__(self, every_s: float = TRIM_EVERY_S) -> None:
        self._every_s = every_s
        self._last = float("-inf")

    def maybe(self, now: float) -> bool:
        if _trim is None or now - self._last < self._every_s:
            return False
        self._last = now
        _trim(0)
        return True
