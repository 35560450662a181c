"""Cloud storage figures (issue 5), on SQLite and on PostgreSQL.

    .venv/bin/python -m bench.storage

- samples/s one writer stores, in batches of 500 (each batch one commit, as
  ingest commits one edge batch before acknowledging it), 2 metrics a sample;
- a week of one-second data for one metric (604,800 points) drawn
  downsampled to 1,000 buckets: the query's time, median of 5.

Both databases are durable: SQLite in WAL mode with synchronous=FULL (the
cloud's settings), PostgreSQL a private cluster with fsync on. Results go
to bench/results/storage.json.
"""

import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import psycopg

from bench.common import write_result
from cloud.storage import ReadingsQuery, SqliteStorage, Storage
from cloud.storage.postgres import PostgresStorage
from edgewire.postgres import PrivatePostgres
from edgewire.sample import Sample

BATCH = 500
WEEK_S = 7 * 86400
START = 1_795_000_000.0


def ingest_rate(storage: Storage, device: str, batches: int) -> float:
    seq = 0
    started = time.perf_counter()
    for _ in range(batches):
        batch = []
        for _ in range(BATCH):
            batch.append(Sample(device, 1, seq, START + seq, {"temp_c": 20.0 + seq % 50 / 10,
                                                              "rh": 41.5}))  # fmt: skip
            seq += 1
        storage.insert(batch, time.time())
    return batches * BATCH / (time.perf_counter() - started)


def load_week(storage: Storage) -> float:
    """One metric at 1 Hz for a week, in batches of 5,000; seconds taken."""
    started = time.perf_counter()
    for first in range(0, WEEK_S, 5000):
        storage.insert(
            [
                Sample("week", 1, i, START + i, {"t": 20.0 + (i % 3600) / 360})
                for i in range(first, min(first + 5000, WEEK_S))
            ],
            time.time(),
        )
    return time.perf_counter() - started


def week_query(storage: Storage) -> dict[str, float]:
    # Buckets align to the Unix epoch, so a week not aligned with them
    # spans 1,001 (the first and last partly filled).
    query = ReadingsQuery(device="week", metric="t", since=START, until=START + WEEK_S, limit=1001)
    times = []
    buckets = []
    for _ in range(5):
        started = time.perf_counter()
        buckets = storage.downsample(query, WEEK_S / 1000)
        times.append(time.perf_counter() - started)
    assert len(buckets) in (1000, 1001), len(buckets)
    assert sum(b.count for b in buckets) == WEEK_S
    return {"median_ms": round(statistics.median(times) * 1000, 1),
            "max_ms": round(max(times) * 1000, 1)}  # fmt: skip


def measure(storage: Storage, settle: Callable[[], None] = lambda: None) -> dict[str, object]:
    ingest_rate(storage, "warm-up", 4)
    rates = [ingest_rate(storage, f"rate-{n}", 40) for n in range(3)]
    load_s = load_week(storage)
    settle()
    return {
        "ingest_samples_per_s_batches_of_500": round(statistics.median(rates)),
        "ingest_runs": [round(r) for r in rates],
        "week_load_s": round(load_s, 1),
        "week_downsample_to_1000_buckets": week_query(storage),
    }


def main() -> None:
    result: dict[str, object] = {}
    with tempfile.TemporaryDirectory(prefix="edgewire-bench-storage-") as scratch:
        sqlite = SqliteStorage(Path(scratch) / "cloud.db")
        try:
            result["sqlite"] = measure(sqlite)
        finally:
            sqlite.close()
    server = PrivatePostgres(durable=True).start()
    try:
        url = server.create_database("bench")
        postgres = PostgresStorage(url)

        def vacuum() -> None:
            # What autovacuum does soon after a bulk load: the visibility map
            # that lets the series index answer without visiting the table.
            with psycopg.connect(url, autocommit=True) as db:
                db.execute("VACUUM (ANALYZE) readings")

        try:
            result["postgresql"] = measure(postgres, vacuum)
        finally:
            postgres.close()
    finally:
        server.stop()
    write_result("storage", result)


if __name__ == "__main__":
    main()
