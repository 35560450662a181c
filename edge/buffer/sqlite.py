"""The durable edge buffer: SQLite in WAL mode with synchronous=FULL.

Durability comes from the commit of each `append` (fsync of the WAL), and
speed from the caller grouping many MQTT messages into one `append`. Every
method runs on the one thread that owns the connection.
"""

import sqlite3
from collections.abc import Sequence
from pathlib import Path

import msgspec

from edge.buffer.base import BufferStats, DeadLetter, StoredDeadLetter
from edgewire.errors import StorageError
from edgewire.sample import Metrics, Sample

_SCHEMA = """
CREATE TABLE IF NOT EXISTS samples (
    -- AUTOINCREMENT: an id is never reused, even after the table emptied,
    -- because the uplink resumes "after the last id it sent".
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    device_id TEXT NOT NULL,
    boot INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    ts REAL NOT NULL,
    ts_from_edge INTEGER NOT NULL,
    m BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS dead_letters (
    id INTEGER PRIMARY KEY,
    at REAL NOT NULL,
    topic TEXT NOT NULL,
    reason TEXT NOT NULL,
    detail TEXT NOT NULL,
    size INTEGER NOT NULL,
    payload BLOB NOT NULL
);
"""

_encode_metrics = msgspec.json.encode
_decode_metrics = msgspec.json.Decoder(Metrics).decode


class SqliteBuffer:
    def __init__(self, path: Path, max_records: int, max_dead_letters: int) -> None:
        self._max_records = max_records
        self._max_dead_letters = max_dead_letters
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SCHEMA)
            self._records = self._count("samples")
            self._letters = self._count("dead_letters")
        except (sqlite3.Error, OSError) as exc:
            raise StorageError(f"cannot open the edge buffer at {path}: {exc}") from exc

    def _count(self, table: str) -> int:
        row = self._db.execute(f"SELECT count(*) FROM {table}").fetchone()
        return int(row[0])

    def append(self, samples: Sequence[Sample], dead_letters: Sequence[DeadLetter]) -> int:
        db = self._db
        try:
            db.execute("BEGIN")
            db.executemany(
                "INSERT INTO samples (device_id, boot, seq, ts, ts_from_edge, m)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                [
                    (s.device_id, s.boot, s.seq, s.ts, s.ts_from_edge, _encode_metrics(s.m))
                    for s in samples
                ],
            )
            if dead_letters:
                db.executemany(
                    "INSERT INTO dead_letters (at, topic, reason, detail, size, payload)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    [(d.at, d.topic, d.reason, d.detail, d.size, d.payload) for d in dead_letters],
                )
            self._records += len(samples)
            self._letters += len(dead_letters)
            dropped = self._trim_samples()
            self._trim_letters()
            db.execute("COMMIT")
        except sqlite3.Error as exc:
            if db.in_transaction:
                db.execute("ROLLBACK")
            self._records = self._count("samples")
            self._letters = self._count("dead_letters")
            raise StorageError(f"edge buffer write failed: {exc}") from exc
        return dropped

    def _trim_samples(self) -> int:
        excess = self._records - self._max_records
        if excess <= 0:
            return 0
        cursor = self._db.execute(
            "DELETE FROM samples WHERE id IN (SELECT id FROM samples ORDER BY id LIMIT ?)",
            (excess,),
        )
        self._records -= cursor.rowcount
        return cursor.rowcount

    def _trim_letters(self) -> None:
        excess = self._letters - self._max_dead_letters
        if excess > 0:
            cursor = self._db.execute(
                "DELETE FROM dead_letters WHERE id IN"
                " (SELECT id FROM dead_letters ORDER BY id LIMIT ?)",
                (excess,),
            )
            self._letters -= cursor.rowcount

    def read(self, after_id: int, limit: int) -> list[tuple[int, Sample]]:
        rows = self._db.execute(
            "SELECT id, device_id, boot, seq, ts, ts_from_edge, m FROM samples"
            " WHERE id > ? ORDER BY id LIMIT ?",
            (after_id, limit),
        ).fetchall()
        return [
            (row[0], Sample(row[1], row[2], row[3], row[4], _decode_metrics(row[6]), bool(row[5])))
            for row in rows
        ]

    def delete(self, ids: Sequence[int]) -> None:
        try:
            cursor = self._db.executemany("DELETE FROM samples WHERE id = ?", [(i,) for i in ids])
        except sqlite3.Error as exc:
            raise StorageError(f"edge buffer delete failed: {exc}") from exc
        self._records -= cursor.rowcount

    def stats(self) -> BufferStats:
        row = self._db.execute("SELECT ts FROM samples ORDER BY id LIMIT 1").fetchone()
        return BufferStats(
            records=self._records,
            oldest_ts=None if row is None else float(row[0]),
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

    def close(self) -> None:
        self._db.close()
