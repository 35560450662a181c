"""Which device ids and metric names a rule's globs match, remembered.

Every sample repeats the same few ids and names, so after the first sight a
match is one dict lookup instead of a regex. The memory is bounded: past
`limit` entries it is forgotten whole (a flood of new names costs a regex
each, as without a cache, and the names in use come back at once).
"""

import fnmatch
import re
from collections.abc import Iterable


def glob_matcher(patterns: Iterable[str]) -> "re.Pattern[str]":
    """One regex matching what any of the fnmatch `patterns` matches (case-sensitive)."""
    return re.compile("|".join(fnmatch.translate(pattern) for pattern in patterns))


class GlobCache(dict[str, bool]):
    """name -> whether the globs match it; `cache[name]` learns on a miss."""

    def __init__(self, patterns: Iterable[str], limit: int) -> None:
        super().__init__()
        self._match = glob_matcher(patterns).match
        self._limit = limit

    def __missing__(self, name: str) -> bool:
        hit = self._match(name) is not None
        if len(self) >= self._limit:
            self.clear()
        self[name] = hit
        return hit
