"""Files replaced while something reads them: writing one so that a
reader, a crash or a power cut sees the old contents or the new, never half
of them, and never with looser rights (the edge's board registry and
Mosquitto's files, the cloud's tokens, the CA's keys and lists); and a
reader noticing that one changed (the cloud's tokens and revocation list).
"""

import os
import secrets
import time
from collections.abc import Callable
from pathlib import Path


def write_atomically(
    path: Path, data: bytes, mode: int, owner: tuple[int, int] | None = None
) -> None:
    """Replace `path` with `data`. The file is created with `mode` (and
    `owner`, when given: only root may) before a byte is written, synced,
    renamed into place, and the rename synced too. OSError on failure; a
    partial file is removed."""
    partial = path.with_name(f".{path.name}.{secrets.token_hex(4)}.partial")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    try:
        try:
            os.fchmod(fd, mode)  # whatever the umask
            if owner is not None:
                os.fchown(fd, *owner)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)  # the rename itself survives a power cut
    finally:
        os.close(directory)


class FileVersion:
    """Counts the times a file was rewritten, replaced or removed, looking
    at most once every `every_s` (0: at every call)."""

    def __init__(
        self, path: Path, every_s: float = 0.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._path = path
        self._every_s = every_s
        self._clock = clock
        self._stamp = self._look()
        self._next_look = clock() + every_s
        self.version = 0

    def current(self) -> int:
        now = self._clock()
        if now >= self._next_look:
            self._next_look = now + self._every_s
            stamp = self._look()
            if stamp != self._stamp:
                self._stamp = stamp
                self.version += 1
        return self.version

    def _look(self) -> tuple[int, int, int] | None:
        # The inode too: `edgewire ca revoke` renames a new file into place,
        # possibly within the same mtime tick as the old one.
        try:
            info = os.stat(self._path)
        except OSError:
            return None
        return (info.st_mtime_ns, info.st_size, info.st_ino)
