"""PostgreSQL storage, for scale: psycopg 3, schema migrations, COPY.

The same tables as SQLite. Several ingest processes may write at once, and
the live feeds resume "after event id N", so ids must grow in commit order:
an id handed out by one transaction must never become visible after a
larger one. Each insert therefore takes a transaction-scoped advisory lock
before it takes ids; writes are serialised, reads are not. A batch is
copied into a temporary table (COPY is the fast path in) and inserted from
there with ON CONFLICT DO NOTHING, which returns exactly the new rows.

Migrations are numbered and applied in order, each in its own transaction,
under a session advisory lock so two processes starting together do not
race; `schema_migrations` records what has been applied.
"""

import math
from collections.abc import Sequence

import msgspec
import psycopg

from cloud.storage.base import (
    Bucket,
    CommandRow,
    DeviceRow,
    EdgeStats,
    InsertResult,
    Reading,
    ReadingsQuery,
)
from cloud.storage.sql import (
    ADD_COMMAND,
    COMMANDS_FOR_EDGE,
    EXPIRE_COMMANDS,
    SET_EDGE_STATS,
    SET_STATUS,
    command_params,
    command_row,
    commands_for_edge_params,
    edge_stats_row,
    expire_params,
    list_commands,
    pg,
    read_devices,
    summaries,
    update_command,
    where_clause,
)
from edgewire.errors import StorageError
from edgewire.sample import Metrics, Sample, StoredSample

# Advisory lock keys (any two constants of our own).
_INSERT_LOCK = 0x65776931
_MIGRATE_LOCK = 0x65776932

MIGRATIONS: list[tuple[int, str]] = [
    (
        1,
        """
        CREATE TABLE samples (
            id bigserial PRIMARY KEY,
            device_id text NOT NULL,
            boot bigint NOT NULL,
            seq bigint NOT NULL,
            ts double precision NOT NULL,
            ts_from_edge boolean NOT NULL,
            received_at double precision NOT NULL,
            m jsonb NOT NULL,
            UNIQUE (device_id, boot, seq)
        );
        CREATE INDEX samples_by_ts ON samples (ts);
        CREATE TABLE readings (
            device_id text NOT NULL,
            metric text NOT NULL,
            ts double precision NOT NULL,
            boot bigint NOT NULL,
            seq bigint NOT NULL,
            value double precision NOT NULL,
            is_flag boolean NOT NULL
        );
        CREATE INDEX readings_by_series ON readings (device_id, metric, ts);
        CREATE INDEX readings_by_ts ON readings USING brin (ts);
        CREATE TABLE devices (
            id text PRIMARY KEY,
            status text NOT NULL DEFAULT 'offline',
            status_at double precision,
            last_seen double precision,
            samples bigint NOT NULL DEFAULT 0
        );
        CREATE TABLE device_metrics (
            device_id text NOT NULL,
            metric text NOT NULL,
            PRIMARY KEY (device_id, metric)
        );
        """,
    ),
    (
        2,
        # The series index carries the value: index-only scans for range
        # queries and downsampling.
        """
        CREATE INDEX readings_by_series_value ON readings (device_id, metric, ts) INCLUDE (value);
        DROP INDEX readings_by_series;
        """,
    ),
    (
        3,
        # Which edge each board reports through, and how each edge's buffer stands.
        """
        ALTER TABLE devices ADD COLUMN edge_id text;
        CREATE TABLE edges (
            id text PRIMARY KEY,
            at double precision NOT NULL,
            buffered bigint NOT NULL,
            oldest_age_s double precision NOT NULL,
            delivery_rate double precision NOT NULL
        );
        """,
    ),
    (
        4,
        # Board commands. The command is JSON as text, not jsonb: its keys stay
        # in the order the user sent them, and it reads back as from SQLite.
        """
        CREATE TABLE commands (
            id text PRIMARY KEY,
            device_id text NOT NULL,
            command text NOT NULL,
            state text NOT NULL,
            created_at double precision NOT NULL,
            updated_at double precision NOT NULL,
            expires_at double precision NOT NULL,
            error text
        );
        CREATE INDEX commands_by_device ON commands (device_id, created_at, id);
        CREATE INDEX commands_by_time ON commands (created_at, id);
        CREATE INDEX commands_by_state ON commands (state, expires_at);
        """,
    ),
]

_encode_metrics = msgspec.json.encode
_decode_metrics = msgspec.json.Decoder(Metrics).decode


def migrate(db: psycopg.Connection) -> list[int]:
    """Apply the migrations this database lacks; the versions applied."""
    applied: list[int] = []
    db.execute("SELECT pg_advisory_lock(%s)", (_MIGRATE_LOCK,))
    try:
        db.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations"
            " (version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        done = {row[0] for row in db.execute("SELECT version FROM schema_migrations")}
        for version, sql in MIGRATIONS:
            if version in done:
                continue
            with db.transaction():
                db.execute(sql)  # our own constant DDL
                db.execute("INSERT INTO schema_migrations (version) VALUES (%s)", (version,))
            applied.append(version)
    finally:
        db.execute("SELECT pg_advisory_unlock(%s)", (_MIGRATE_LOCK,))
    return applied


class PostgresStorage:
    def __init__(self, url: str) -> None:
        try:
            self._writer = psycopg.connect(url, autocommit=True)
            migrate(self._writer)
            self._reader = psycopg.connect(url, autocommit=True)
        except psycopg.Error as exc:
            raise StorageError(f"cannot open the cloud database: {exc}") from exc

    def insert(self, samples: Sequence[Sample], received_at: float) -> InsertResult:
        db = self._writer
        try:
            with db.transaction():
                db.execute("SELECT pg_advisory_xact_lock(%s)", (_INSERT_LOCK,))
                db.execute(
                    "CREATE TEMP TABLE IF NOT EXISTS incoming (ord int, device_id text,"
                    " boot bigint, seq bigint, ts double precision, ts_from_edge boolean,"
                    " m jsonb) ON COMMIT DELETE ROWS"
                )
                with db.cursor().copy(
                    "COPY incoming (ord, device_id, boot, seq, ts, ts_from_edge, m) FROM STDIN"
                ) as copy:
                    for i, s in enumerate(samples):
                        copy.write_row(
                            (i, s.device_id, s.boot, s.seq, s.ts, s.ts_from_edge,
                             _encode_metrics(s.m).decode())
                        )  # fmt: skip
                rows = db.execute(
                    "INSERT INTO samples (device_id, boot, seq, ts, ts_from_edge, received_at, m)"
                    " SELECT device_id, boot, seq, ts, ts_from_edge, %s, m FROM incoming"
                    " ORDER BY ord ON CONFLICT DO NOTHING RETURNING id, device_id, boot, seq",
                    (received_at,),
                ).fetchall()
                by_key = {s.key: s for s in samples}
                stored = [
                    StoredSample(id=r[0], sample=by_key[(r[1], r[2], r[3])]) for r in sorted(rows)
                ]
                self._index(db, stored)
        except psycopg.Error as exc:
            raise StorageError(f"cloud database write failed: {exc}") from exc
        return InsertResult(stored=stored, duplicates=len(samples) - len(stored))

    @staticmethod
    def _index(db: psycopg.Connection, stored: list[StoredSample]) -> None:
        with db.cursor().copy(
            "COPY readings (device_id, metric, ts, boot, seq, value, is_flag) FROM STDIN"
        ) as copy:
            for event in stored:
                s = event.sample
                for name, value in s.m.items():
                    copy.write_row(
                        (s.device_id, name, s.ts, s.boot, s.seq, float(value),
                         isinstance(value, bool))
                    )  # fmt: skip
        devices, names = summaries(stored)
        with db.cursor() as cursor:
            cursor.executemany(
                "INSERT INTO devices (id, last_seen, samples) VALUES (%s, %s, %s)"
                " ON CONFLICT (id) DO UPDATE SET samples = devices.samples + excluded.samples,"
                " last_seen = greatest(devices.last_seen, excluded.last_seen)",
                devices,
            )
            cursor.executemany(
                "INSERT INTO device_metrics (device_id, metric) VALUES (%s, %s)"
                " ON CONFLICT DO NOTHING",
                names,
            )

    def set_status(self, device_id: str, status: str, at: float, edge_id: str | None) -> None:
        try:
            self._writer.execute(pg(SET_STATUS), (device_id, status, at, edge_id))
        except psycopg.Error as exc:
            raise StorageError(f"cloud database write failed: {exc}") from exc

    def set_edge_stats(self, stats: EdgeStats) -> None:
        try:
            self._writer.execute(pg(SET_EDGE_STATS), edge_stats_row(stats))
        except psycopg.Error as exc:
            raise StorageError(f"cloud database write failed: {exc}") from exc

    def devices(self) -> list[DeviceRow]:
        return read_devices(self._reader)

    def readings(self, query: ReadingsQuery) -> list[Reading]:
        where, params = where_clause(query)
        where = pg(where)
        rows = self._reader.execute(
            "SELECT device_id, boot, seq, ts, metric, value, is_flag FROM readings"
            + where
            + " ORDER BY ts, device_id, boot, seq, metric LIMIT %s",
            [*params, query.limit],
        )
        return [Reading(r[0], r[1], r[2], r[3], r[4], bool(r[5]) if r[6] else r[5]) for r in rows]

    def downsample(self, query: ReadingsQuery, every_s: float) -> list[Bucket]:
        if query.device is not None and query.metric is not None:
            walked = self._walk_buckets(query, query.device, query.metric, every_s)
            if walked is not None:
                return walked
        where, params = where_clause(query)
        where = pg(where)
        rows = self._reader.execute(
            "SELECT device_id, metric, floor(ts / %s) AS bucket,"
            " count(*), min(value), avg(value), max(value) FROM readings"
            + where
            + " GROUP BY device_id, metric, bucket"
            " ORDER BY bucket, device_id, metric LIMIT %s",
            [every_s, *params, query.limit],
        )
        return [Bucket(r[0], r[1], r[2] * every_s, r[3], r[4], r[5], r[6]) for r in rows]

    def _walk_buckets(
        self, query: ReadingsQuery, device: str, metric: str, every_s: float
    ) -> list[Bucket] | None:
        """One series: its buckets in order, each a range scan of the series
        index (a LATERAL join), instead of hashing every reading into
        groups. None when the range holds too many buckets."""
        since = query.since if query.since is not None else 0.0
        until = query.until if query.until is not None else math.inf
        first, last = self._reader.execute(
            "SELECT min(ts), max(ts) FROM readings WHERE device_id = %s AND metric = %s"
            " AND ts >= %s AND ts < %s",
            (device, metric, since, until),
        ).fetchone() or (None, None)
        if first is None:
            return []
        k0, k1 = math.floor(first / every_s), math.floor(last / every_s)
        if k1 - k0 + 1 > 4 * query.limit:
            return None
        rows = self._reader.execute(
            "SELECT k, a.n, a.low, a.mean, a.high FROM generate_series(%s::bigint, %s::bigint) k"
            " CROSS JOIN LATERAL (SELECT count(*) AS n, min(value) AS low, avg(value) AS mean,"
            " max(value) AS high FROM readings WHERE device_id = %s AND metric = %s"
            " AND ts >= greatest(k * %s, %s) AND ts < least((k + 1) * %s, %s)) a"
            " WHERE a.n > 0 ORDER BY k LIMIT %s",
            (k0, k1, device, metric, every_s, since, every_s, until, query.limit),
        )
        return [Bucket(device, metric, r[0] * every_s, r[1], r[2], r[3], r[4]) for r in rows]

    def delete_before(self, ts: float, limit: int) -> int:
        db = self._writer
        try:
            with db.transaction():
                old = db.execute(
                    "DELETE FROM samples WHERE id IN (SELECT id FROM samples WHERE ts < %s"
                    " ORDER BY ts LIMIT %s) RETURNING device_id, ts",
                    (ts, limit),
                ).fetchall()
                if old:
                    newest = max(r[1] for r in old)
                    db.execute(
                        "DELETE FROM readings r USING device_metrics d"
                        " WHERE d.device_id = ANY(%s) AND r.device_id = d.device_id"
                        " AND r.metric = d.metric AND r.ts <= %s",
                        (sorted({r[0] for r in old}), newest),
                    )
        except psycopg.Error as exc:
            raise StorageError(f"cloud database delete failed: {exc}") from exc
        return len(old)

    def samples_after(
        self, after_id: int, devices: frozenset[str] | None, limit: int
    ) -> list[StoredSample]:
        sql = (
            "SELECT id, device_id, boot, seq, ts, ts_from_edge, m::text FROM samples WHERE id > %s"
        )
        params: list[object] = [after_id]
        if devices is not None:
            sql += " AND device_id = ANY(%s)"
            params.append(sorted(devices))
        sql += " ORDER BY id LIMIT %s"
        params.append(limit)
        return [
            StoredSample(
                id=r[0], sample=Sample(r[1], r[2], r[3], r[4], _decode_metrics(r[6]), r[5])
            )
            for r in self._reader.execute(sql, params)
        ]

    def add_command(self, row: CommandRow) -> None:
        try:
            self._writer.execute(pg(ADD_COMMAND), command_params(row))
        except psycopg.Error as exc:
            raise StorageError(f"cloud database write failed: {exc}") from exc

    def update_command(
        self, command_id: str, device_id: str, state: str, at: float, error: str | None
    ) -> CommandRow | None:
        statement = update_command(command_id, device_id, state, at, error)
        if statement is None:
            return None
        sql, params = statement
        try:
            row = self._writer.execute(pg(sql), params).fetchone()
        except psycopg.Error as exc:
            raise StorageError(f"cloud database write failed: {exc}") from exc
        return None if row is None else command_row(row)

    def commands_for_edge(self, edge_id: str, now: float, limit: int) -> list[CommandRow]:
        rows = self._reader.execute(
            pg(COMMANDS_FOR_EDGE), commands_for_edge_params(edge_id, now, limit)
        )
        return [command_row(r) for r in rows]

    def commands(self, device: str | None, limit: int) -> list[CommandRow]:
        sql, params = list_commands(device, limit)
        return [command_row(r) for r in self._reader.execute(pg(sql), params)]

    def expire_commands(self, now: float, limit: int) -> list[CommandRow]:
        try:
            rows = self._writer.execute(pg(EXPIRE_COMMANDS), expire_params(now, limit)).fetchall()
        except psycopg.Error as exc:
            raise StorageError(f"cloud database write failed: {exc}") from exc
        # RETURNING gives rows in no set order.
        return sorted(map(command_row, rows), key=lambda c: (c.expires_at, c.id))

    def close(self) -> None:
        self._reader.close()
        self._writer.close()
