"""Writing a file so that a reader, a crash or a power cut sees the old
contents or the new, never half of them, and never with looser rights.

One function for every file edgewire replaces while something may read it:
the edge's board registry and Mosquitto's password and ACL files, the cloud's
tokens, the CA's keys, certificates and revocation list.
"""

import os
import secrets
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
