"""The edge buffer: one interface (base.py), one module per implementation."""

from pathlib import Path

from edge.buffer.base import (
    Appended,
    Buffer,
    BufferStats,
    Caps,
    DeadLetter,
    StoredDeadLetter,
    dead_letter,
)
from edge.buffer.memory import MemoryBuffer
from edge.buffer.sqlite import CorruptBuffer, SqliteBuffer, move_aside

__all__ = [
    "BUFFER_FILE",
    "Appended",
    "Buffer",
    "BufferStats",
    "Caps",
    "CorruptBuffer",
    "DeadLetter",
    "MemoryBuffer",
    "SqliteBuffer",
    "StoredDeadLetter",
    "dead_letter",
    "open_buffer",
]

BUFFER_FILE = "buffer.db"


def open_buffer(data_dir: Path, caps: Caps) -> tuple[Buffer, Path | None]:
    """The edge's buffer, and where a damaged one was moved (None if not)."""
    path = data_dir / BUFFER_FILE
    try:
        return SqliteBuffer(path, caps), None
    except CorruptBuffer:
        aside = move_aside(path)
        return SqliteBuffer(path, caps), aside
