"""The edge buffer: one interface (base.py), one module per implementation."""

from pathlib import Path

from edge.buffer.base import Buffer, BufferStats, DeadLetter, StoredDeadLetter, dead_letter
from edge.buffer.memory import MemoryBuffer
from edge.buffer.sqlite import SqliteBuffer

__all__ = [
    "Buffer",
    "BufferStats",
    "DeadLetter",
    "MemoryBuffer",
    "SqliteBuffer",
    "StoredDeadLetter",
    "dead_letter",
    "open_buffer",
]

BUFFER_FILE = "buffer.db"


def open_buffer(data_dir: Path, max_records: int, max_dead_letters: int) -> Buffer:
    return SqliteBuffer(data_dir / BUFFER_FILE, max_records, max_dead_letters)
