"""Cloud storage: the interface (base.py) and the one place that picks."""

from pathlib import Path
from urllib.parse import urlsplit

from cloud.storage.base import (
    Bucket,
    CommandRow,
    DeviceRow,
    InsertResult,
    Reading,
    ReadingsQuery,
    Storage,
)
from cloud.storage.memory import MemoryStorage
from cloud.storage.sqlite import SqliteStorage
from edgewire.errors import ConfigError

__all__ = [
    "Bucket",
    "CommandRow",
    "DeviceRow",
    "InsertResult",
    "MemoryStorage",
    "Reading",
    "ReadingsQuery",
    "SqliteStorage",
    "Storage",
    "open_storage",
]


def open_storage(url: str) -> Storage:
    """`sqlite:///abs/path.db`, `sqlite:relative.db`, `postgresql://…` or `memory://`."""
    parts = urlsplit(url)
    if parts.scheme == "memory":
        return MemoryStorage()
    if parts.scheme in ("postgresql", "postgres"):
        from cloud.storage.postgres import PostgresStorage  # psycopg only when asked for

        return PostgresStorage(url)
    if parts.scheme == "sqlite":
        path = parts.netloc + parts.path
        if not path:
            raise ConfigError(f"database URL {url!r} names no file")
        return SqliteStorage(Path(path))
    raise ConfigError(f"database URL {url!r}: scheme must be sqlite://, postgresql:// or memory://")
