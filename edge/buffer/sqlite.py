"""The durable edge buffer: SQLite in WAL mode with synchronous=FULL.

Durability comes from the commit of each `append` (an fsync of the WAL), and
speed from the caller grouping many MQTT messages into one `append`. Deletes
need no fsync of their own (a delete lost to a power cut only means a sample
is sent again, and the cloud keeps it once), so they ride in the transaction
of the next `append`, or of `flush`. A record
is stored as the bytes of its serialized sample under an integer key, which
is about all the disk a sample needs. Every method runs on the one thread
that owns the connection.

Opening reads every record once (to count records and bytes), which is also
where SQLite notices a damaged file: a buffer it reports corrupt or not a
database is moved aside, never deleted, and a fresh one takes over.
"""

import contextlib
import sqlite3
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import msgspec

from edge.buffer.base import Appended, BufferStats, Caps, DeadLetter, StoredDeadLetter
from edge.stored import Mark
from edgewire.errors import StorageError

_SCHEMA = """
CREATE TABLE IF NOT EXISTS samples (
    id INTEGER PRIMARY KEY,
    s BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS marks (
    device_id TEXT NOT NULL,
    boot INTEGER NOT NULL,
    mark INTEGER NOT NULL,
    pending TEXT NOT NULL,
    PRIMARY KEY (device_id, boot)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS dead_letters (
    id INTEGER PRIMARY KEY,
    at REAL NOT NULL,
    topic TEXT NOT NULL,
    reason TEXT NOT NULL,
    detail TEXT NOT NULL,
    size INTEGER NOT NULL,
    payload BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS rule_state (
    key TEXT PRIMARY KEY,
    state BLOB NOT NULL
) WITHOUT ROWID;
"""
_CORRUPTION = ("SQLITE_CORRUPT", "SQLITE_NOTADB")


class CorruptBuffer(StorageError):
    """SQLite says the buffer file is damaged."""


class SqliteBuffer:
    def __init__(self, path: Path, caps: Caps) -> None:
        self._caps = caps
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        except (sqlite3.Error, OSError) as exc:
            raise StorageError(f"cannot open the edge buffer at {path}: {exc}") from exc
        try:
            # Another process (`edgewire edge dead-letters`) may read meanwhile.
            self._db.execute("PRAGMA busy_timeout=5000")
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            # Reads are sequential and writes append: a small page cache does,
            # and the edge is meant for a Pi Zero (SQLite's default is 2 MB).
            self._db.execute("PRAGMA cache_size=-512")
            self._db.executescript(_SCHEMA)
            newest = self._recount()
        except sqlite3.Error as exc:
            self._db.close()
            if getattr(exc, "sqlite_errorname", "") in _CORRUPTION:
                raise CorruptBuffer(f"the edge buffer at {path} is damaged: {exc}") from exc
            raise StorageError(f"cannot open the edge buffer at {path}: {exc}") from exc
        self._next_id: int = newest + 1

    def _recount(self) -> int:
        """Count records, bytes and letters from the file; the newest id."""
        records, size, newest = self._db.execute(
            "SELECT count(*), coalesce(sum(length(s)), 0), coalesce(max(id), 0) FROM samples"
        ).fetchone()
        (letters,) = self._db.execute("SELECT count(*) FROM dead_letters").fetchone()
        self._records: int = records
        self._bytes: int = size
        self._letters: int = letters
        return int(newest)

    def append(
        self,
        records: Sequence[bytes],
        dead_letters: Sequence[DeadLetter],
        marks: Sequence[Mark] = (),
        rule_state: Mapping[str, bytes | None] | None = None,
    ) -> Appended:
        db = self._db
        first_id = self._next_id
        try:
            if not db.in_transaction:  # else deletes are waiting in one
                db.execute("BEGIN")
            if marks:
                self._write_marks(marks)
            if rule_state:
                self._write_rule_state(rule_state)
            db.executemany(
                "INSERT INTO samples (id, s) VALUES (?, ?)",
                zip(range(first_id, first_id + len(records)), records, strict=True),
            )
            if dead_letters:
                db.executemany(
                    "INSERT INTO dead_letters (at, topic, reason, detail, size, payload)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    [(d.at, d.topic, d.reason, d.detail, d.size, d.payload) for d in dead_letters],
                )
            records_after = self._records + len(records)
            bytes_after = self._bytes + sum(map(len, records))
            dropped, dropped_bytes = self._trim(records_after, bytes_after)
            letters_after = self._letters + len(dead_letters) - self._trim_letters(dead_letters)
            db.execute("COMMIT")
        except sqlite3.Error as exc:
            if db.in_transaction:
                db.execute("ROLLBACK")
            with contextlib.suppress(sqlite3.Error):  # the write error is the news
                self._recount()  # the rollback took the waiting deletes too
            raise StorageError(f"edge buffer write failed: {exc}") from exc
        self._next_id += len(records)
        self._records = records_after - dropped
        self._bytes = bytes_after - dropped_bytes
        self._letters = letters_after
        return Appended(first_id, dropped)

    def _write_marks(self, marks: Sequence[Mark]) -> None:
        self._db.executemany(
            "INSERT INTO marks (device_id, boot, mark, pending) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (device_id, boot) DO UPDATE SET mark = excluded.mark,"
            " pending = excluded.pending",
            [
                (m.device_id, m.boot, m.mark, msgspec.json.encode(m.pending).decode())
                for m in marks
                if m.mark is not None
            ],
        )
        self._db.executemany(
            "DELETE FROM marks WHERE device_id = ? AND boot = ?",
            [(m.device_id, m.boot) for m in marks if m.mark is None],
        )

    def _write_rule_state(self, entries: Mapping[str, bytes | None]) -> None:
        self._db.executemany(
            "INSERT INTO rule_state (key, state) VALUES (?, ?)"
            " ON CONFLICT (key) DO UPDATE SET state = excluded.state",
            [(key, state) for key, state in entries.items() if state is not None],
        )
        self._db.executemany(
            "DELETE FROM rule_state WHERE key = ?",
            [(key,) for key, state in entries.items() if state is None],
        )

    def rule_state(self) -> dict[str, bytes]:
        return dict(self._db.execute("SELECT key, state FROM rule_state"))

    def marks(self) -> list[Mark]:
        return [
            Mark(device_id, boot, mark, tuple(msgspec.json.decode(pending, type=list[int])))
            for device_id, boot, mark, pending in self._db.execute(
                "SELECT device_id, boot, mark, pending FROM marks"
            )
        ]

    def _trim(self, records: int, size: int) -> tuple[int, int]:
        """Delete the oldest records beyond the caps: (count, bytes) removed."""
        excess_records = records - self._caps.max_records
        excess_bytes = size - self._caps.max_bytes
        if excess_records <= 0 and excess_bytes <= 0:
            return 0, 0
        count = freed = 0
        last_id = None
        for record_id, length in self._db.execute("SELECT id, length(s) FROM samples ORDER BY id"):
            if count >= excess_records and freed >= excess_bytes:
                break
            count += 1
            freed += length
            last_id = record_id
        if last_id is not None:
            self._db.execute("DELETE FROM samples WHERE id <= ?", (last_id,))
        return count, freed

    def _trim_letters(self, added: Sequence[DeadLetter]) -> int:
        excess = self._letters + len(added) - self._caps.max_dead_letters
        if excess <= 0:
            return 0
        cursor = self._db.execute(
            "DELETE FROM dead_letters WHERE id IN"
            " (SELECT id FROM dead_letters ORDER BY id LIMIT ?)",
            (excess,),
        )
        return cursor.rowcount

    def room(self) -> tuple[int, int]:
        return (
            max(0, self._caps.max_records - self._records),
            max(0, self._caps.max_bytes - self._bytes),
        )

    def read(self, after_id: int, below_id: int, limit: int) -> list[tuple[int, bytes]]:
        return self._db.execute(
            "SELECT id, s FROM samples WHERE id > ? AND id < ? ORDER BY id LIMIT ?",
            (after_id, below_id, limit),
        ).fetchall()

    def oldest(self) -> bytes | None:
        row = self._db.execute("SELECT s FROM samples ORDER BY id LIMIT 1").fetchone()
        return None if row is None else bytes(row[0])

    def delete(self, ids: Sequence[int]) -> int:
        try:
            if not self._db.in_transaction:
                self._db.execute("BEGIN")
            rows = self._db.execute(
                f"DELETE FROM samples WHERE id IN ({','.join('?' * len(ids))}) RETURNING length(s)",
                ids,
            ).fetchall()
        except sqlite3.Error as exc:
            raise StorageError(f"edge buffer delete failed: {exc}") from exc
        self._records -= len(rows)
        self._bytes -= sum(length for (length,) in rows)
        return len(rows)

    def stats(self) -> BufferStats:
        # Counted afresh: `dead-letters --replay` deletes from another process.
        with contextlib.suppress(sqlite3.Error):  # then the last count will do
            (self._letters,) = self._db.execute("SELECT count(*) FROM dead_letters").fetchone()
        return BufferStats(
            records=self._records,
            bytes=self._bytes,
            newest_id=self._next_id - 1,
            dead_letters=self._letters,
        )

    def dead_letters(self, limit: int) -> list[StoredDeadLetter]:
        rows = self._db.execute(
            "SELECT id, at, topic, reason, detail, payload, size FROM dead_letters"
            " ORDER BY id DESC LIMIT ?",
            (limit,),
        ).fetchall()
        return [
            StoredDeadLetter(id=r[0], letter=DeadLetter(r[1], r[2], r[3], r[4], r[5], r[6]))
            for r in reversed(rows)
        ]

    def delete_dead_letters(self, ids: Sequence[int]) -> int:
        try:
            with self._db:
                deleted = self._db.execute(
                    f"DELETE FROM dead_letters WHERE id IN ({','.join('?' * len(ids))})", ids
                ).rowcount
        except sqlite3.Error as exc:
            raise StorageError(f"edge buffer delete failed: {exc}") from exc
        self._letters -= deleted
        return deleted

    def flush(self) -> None:
        try:
            if self._db.in_transaction:
                self._db.execute("COMMIT")
        except sqlite3.Error as exc:
            raise StorageError(f"edge buffer write failed: {exc}") from exc

    def close(self) -> None:
        with contextlib.suppress(StorageError):  # losing deletes only resends
            self.flush()
        self._db.close()


def move_aside(path: Path) -> Path:
    """Rename a damaged buffer (and its WAL files) out of the way; the new name."""
    stamp = time.strftime("%Y%m%dT%H%M%S")
    aside = path.with_name(f"{path.name}.corrupt-{stamp}")
    for suffix in ("", "-wal", "-shm"):
        source = path.with_name(path.name + suffix)
        if source.exists():
            source.rename(aside.with_name(aside.name + suffix))
    return aside
