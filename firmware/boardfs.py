"""Files on a board, handled by small pieces of code run in its raw REPL.

Rule: a board may have 30 KB of heap or less, so no board-side step holds a
whole file: data goes in base64 chunks of `chunk_size` bytes, one command
each, and hashing reads 256 bytes at a time. A file is written to
`path + ".new"` and renamed over `path` only once complete, so a cable pulled
mid-copy never leaves half a file under the real name.

Paths are relative ("lib/umqtt/simple.mpy"): on a board they resolve from
/, on the unix port from the folder it runs in.
"""

import base64
import contextlib
import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

from firmware.rawrepl_core import BoardError, OutOfSpaceError, ReplError

CHUNK_BYTES = 1024  # file data per command: about 3 KB of heap while it runs
NEW = ".new"
ENOENT, EEXIST, ENOSPC = 2, 17, 28
_SAFE_PATH = re.compile(r"[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*\Z")
_SHA256 = re.compile(r"[0-9a-f]{64}\Z")

# Defines _h(path): prints "<sha256 hex> <size>", or "-" when there is no
# such file. A 256-byte buffer, read into: no allocation per block.
_HASHER = """\
import hashlib,binascii
_b=bytearray(256)
def _h(p):
 try:
  f=open(p,'rb')
  s=hashlib.sha256();n=0
  while 1:
   k=f.readinto(_b)
   if not k:break
   s.update(_b if k==256 else _b[:k]);n+=k
  f.close()
 except OSError:
  print('-');return
 print(binascii.hexlify(s.digest()).decode(),n)
"""


class Runs(Protocol):
    """What runs code on a board: firmware.rawrepl.RawRepl."""

    def exec(self, code: str | bytes, timeout_s: float | None = None) -> bytes: ...


@dataclass(frozen=True)
class Stored:
    """A file as the board has it."""

    sha256: str
    size: int


@dataclass(frozen=True)
class Space:
    block_size: int
    free_bytes: int


@dataclass(frozen=True)
class Entry:
    name: str
    is_dir: bool


def board_path(path: str) -> str:
    """`path` if it is a plain relative board path; ValueError otherwise."""
    if not _SAFE_PATH.match(path) or any(part in (".", "..") for part in path.split("/")):
        raise ValueError(f"{path!r} is not a plain relative path on the board")
    return path


class BoardFs:
    def __init__(self, repl: Runs, chunk_size: int = CHUNK_BYTES) -> None:
        self.repl = repl
        self.chunk_size = chunk_size

    def sha256(self, path: str) -> str | None:
        """The SHA-256 (hex) of a file on the board; None if there is none."""
        stored = self.stat_files([path])[path]
        return stored.sha256 if stored else None

    def stat_files(self, paths: Iterable[str]) -> dict[str, Stored | None]:
        """SHA-256 and size of each file, None for each missing: one command."""
        wanted = [board_path(p) for p in paths]
        if not wanted:
            return {}
        calls = "".join(f"_h({p!r})\n" for p in wanted)
        lines = self._lines(_HASHER + calls, len(wanted))
        return dict(zip(wanted, (_stored(line) for line in lines), strict=True))

    def write(self, path: str, data: bytes, progress: Callable[[int], None] | None = None) -> None:
        """Put `data` at `path`, by way of `path.new`; `progress(n)` after
        each chunk of n bytes."""
        path = board_path(path)
        try:
            self.repl.exec(
                f"_f=open({path + NEW!r},'wb');_w=_f.write\nfrom binascii import a2b_base64 as _d"
            )
            for start in range(0, len(data), self.chunk_size):
                chunk = data[start : start + self.chunk_size]
                self.repl.exec(b"_w(_d(b'" + base64.b64encode(chunk) + b"'))")
                if progress is not None:
                    progress(len(chunk))
            # Replace in one step where the filesystem can (LittleFS, the
            # unix port); FAT will not rename over a file, so remove it first.
            self.repl.exec(
                f"_f.close()\ndel _f,_w,_d\nimport os\n"
                f"try:\n os.rename({path + NEW!r},{path!r})\n"
                f"except OSError:\n os.remove({path!r})\n os.rename({path + NEW!r},{path!r})"
            )
        except BoardError as exc:
            if exc.errno != ENOSPC:
                raise
            # Give the room back: the half file is of no use to anyone.
            with contextlib.suppress(BoardError):
                self.repl.exec(f"_f.close()\nimport os\nos.remove({path + NEW!r})")
            raise OutOfSpaceError(
                f"the board ran out of space writing {path} ({len(data):,} bytes)"
            ) from None

    def mkdir_p(self, path: str) -> None:
        """Make `path` and its parents where missing."""
        parts = board_path(path).split("/")
        steps = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        self.repl.exec(
            f"import os\nfor p in {steps!r}:\n try:os.mkdir(p)\n"
            f" except OSError as e:\n  if e.errno!={EEXIST}:raise"
        )

    def listdir(self, path: str = ".") -> list[Entry]:
        where = "." if path == "." else board_path(path)
        out = self.repl.exec(
            f"import os,json\nprint(json.dumps([(e[0],e[1]) for e in os.ilistdir({where!r})]))"
        )
        try:
            entries = json.loads(out)
            return [Entry(str(name), kind == 0x4000) for name, kind in entries]
        except (ValueError, TypeError) as exc:
            raise ReplError(f"unexpected answer listing {path} on the board: {out!r}") from exc

    def space(self) -> Space:
        """Block size and free bytes of the filesystem holding the files."""
        (line,) = self._lines("import os\ns=os.statvfs('.')\nprint(s[0],s[0]*s[4])", 1)
        block, free = _ints(line, 2)
        return Space(block, free)

    def remove(self, path: str, missing_ok: bool = True) -> None:
        check = f"  if e.errno!={ENOENT}:raise" if missing_ok else "  raise"
        self.repl.exec(
            f"import os\ntry:\n os.remove({board_path(path)!r})\nexcept OSError as e:\n{check}"
        )

    def _lines(self, code: str, count: int) -> list[str]:
        """The command's output as `count` lines; anything else is no answer
        of ours (noise on the line) and says so."""
        out = self.repl.exec(code)
        lines = out.decode(errors="replace").replace("\r\n", "\n").strip("\n").split("\n")
        if len(lines) != count:
            raise ReplError(f"unexpected answer from the board: {out[:200]!r}")
        return lines


def _stored(line: str) -> Stored | None:
    if line == "-":
        return None
    digest, _, size = line.partition(" ")
    if not _SHA256.match(digest) or not size.isdigit():
        raise ReplError(f"unexpected answer from the board: {line[:200]!r}")
    return Stored(digest, int(size))


def _ints(line: str, count: int) -> list[int]:
    parts = line.split()
    if len(parts) != count or not all(p.isdigit() for p in parts):
        raise ReplError(f"unexpected answer from the board: {line[:200]!r}")
    return [int(p) for p in parts]
