"""One contract suite over every cloud storage implementation: the
in-memory model, SQLite, and PostgreSQL on a private server of its own."""

import contextlib
import itertools
import sqlite3
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cloud.storage import MemoryStorage, ReadingsQuery, SqliteStorage, Storage, open_storage
from cloud.storage.base import CommandRow, EdgeStats
from cloud.storage.postgres import PostgresStorage, migrate
from edgewire.errors import ConfigError
from edgewire.postgres import PrivatePostgres
from edgewire.sample import Sample

_databases = itertools.count()


@pytest.fixture(scope="session")
def postgres() -> Iterator[PrivatePostgres]:
    server = PrivatePostgres().start()
    yield server
    server.stop()


@pytest.fixture
def pg_url(postgres: PrivatePostgres) -> str:
    return postgres.create_database(f"contract{next(_databases)}")


@pytest.fixture(params=["memory", "sqlite", "postgresql"])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Storage]:
    if request.param == "memory":
        store: Storage = MemoryStorage()
    elif request.param == "sqlite":
        store = SqliteStorage(tmp_path / "c.db")
    else:
        store = PostgresStorage(request.getfixturevalue("pg_url"))
    yield store
    store.close()


def sample(device: str, seq: int, boot: int = 1, **metrics: float | bool) -> Sample:
    return Sample(device, boot, seq, 1_800_000_000.0 + seq, metrics or {"t": float(seq)})


def test_a_sample_is_stored_once_and_duplicates_are_counted(storage: Storage) -> None:
    first = storage.insert([sample("a", 1), sample("a", 2)], received_at=0.0)
    assert [e.sample.seq for e in first.stored] == [1, 2]
    assert first.duplicates == 0
    again = storage.insert(
        [sample("a", 2), sample("a", 3), sample("a", 2, boot=2)], received_at=0.0
    )
    assert [(e.sample.boot, e.sample.seq) for e in again.stored] == [(1, 3), (2, 2)]
    assert again.duplicates == 1
    ids = [e.id for e in first.stored + again.stored]
    assert ids == sorted(ids)
    assert len(set(ids)) == 4


def test_readings_filter_and_order(storage: Storage) -> None:
    storage.insert(
        [sample("b", 2, t=2.0, ok=True), sample("a", 1, t=1.0), sample("a", 3, t=3.0)], 0.0
    )
    everything = storage.readings(ReadingsQuery())
    assert [(r.device, r.seq, r.metric) for r in everything] == [
        ("a", 1, "t"), ("b", 2, "ok"), ("b", 2, "t"), ("a", 3, "t"),
    ]  # fmt: skip
    ok = storage.readings(ReadingsQuery(metric="ok"))
    assert [r.value for r in ok] == [True]
    assert ok[0].value is True, "booleans come back as booleans"
    a = storage.readings(ReadingsQuery(device="a", since=1_800_000_002.0))
    assert [r.seq for r in a] == [3]
    until = storage.readings(ReadingsQuery(until=1_800_000_002.0))
    assert [r.seq for r in until] == [1]
    assert len(storage.readings(ReadingsQuery(limit=2))) == 2


def test_devices_summarise_what_is_stored(storage: Storage) -> None:
    storage.insert([sample("a", 1, t=1.0), sample("a", 2, rh=5.0), sample("b", 1)], 0.0)
    storage.insert([sample("a", 1)], 0.0)
    storage.set_status("a", "online", at=10.0, edge_id="pi-1")
    storage.set_status("c", "online", at=10.0, edge_id=None)
    storage.set_status("c", "offline", at=11.0, edge_id="pi-2")
    storage.set_status("c", "online", at=9.0, edge_id="pi-3")  # older news is ignored
    rows = {d.id: d for d in storage.devices()}
    assert rows["a"].samples == 2
    assert rows["a"].metrics == ["rh", "t"]
    assert rows["a"].status == "online"
    assert rows["a"].last_seen == 1_800_000_002.0
    assert rows["b"].status == "offline"
    assert rows["c"].samples == 0
    assert rows["c"].status == "offline"
    assert (rows["a"].edge, rows["b"].edge, rows["c"].edge) == ("pi-1", None, "pi-2")
    assert rows["a"].edge_buffered is None, "no figures from pi-1 yet"


def test_devices_show_how_their_edge_buffer_stands(storage: Storage) -> None:
    storage.set_status("a", "online", at=10.0, edge_id="pi-1")
    storage.set_edge_stats(EdgeStats("pi-1", at=20.0, buffered=1500, oldest_age_s=42.5,
                                     delivery_rate=300.0))  # fmt: skip
    storage.set_edge_stats(EdgeStats("pi-1", at=19.0, buffered=9, oldest_age_s=1.0,
                                     delivery_rate=1.0))  # older news is ignored  # fmt: skip
    row = storage.devices()[0]
    assert (row.edge, row.edge_buffered, row.edge_oldest_age_s, row.edge_reported_at) == (
        "pi-1",
        1500,
        42.5,
        20.0,
    )


def test_samples_after_resumes_by_id(storage: Storage) -> None:
    stored = storage.insert([sample("a", i) for i in range(5)] + [sample("b", 9)], 0.0).stored
    after = storage.samples_after(stored[1].id, None, 100)
    assert [e.sample.seq for e in after] == [2, 3, 4, 9]
    only_b = storage.samples_after(0, frozenset(["b"]), 100)
    assert [e.sample.device_id for e in only_b] == ["b"]
    assert len(storage.samples_after(0, None, 2)) == 2
    assert after[0].sample == sample("a", 2)


def test_open_storage_urls(tmp_path: Path, pg_url: str) -> None:
    assert isinstance(open_storage("memory://"), MemoryStorage)
    opened_pg = open_storage(pg_url)
    assert isinstance(opened_pg, PostgresStorage)
    opened_pg.close()
    opened = open_storage(f"sqlite:///{tmp_path}/x.db")
    assert isinstance(opened, SqliteStorage)
    opened.close()
    with pytest.raises(ConfigError):
        open_storage("mysql://x")


def test_downsampling_gives_min_mean_max_per_series_and_bucket(storage: Storage) -> None:
    base = 1_800_000_000.0  # a multiple of 60
    storage.insert(
        [Sample("a", 1, i, base + i * 10, {"t": float(i), "on": i % 2 == 0}) for i in range(12)]
        + [Sample("b", 1, 0, base + 5, {"t": 100.0})],
        0.0,
    )
    buckets = storage.downsample(ReadingsQuery(metric="t"), every_s=60)
    assert [(b.device, b.start, b.count, b.min, b.mean, b.max) for b in buckets] == [
        ("a", base, 6, 0.0, 2.5, 5.0),
        ("b", base, 1, 100.0, 100.0, 100.0),
        ("a", base + 60, 6, 6.0, 8.5, 11.0),
    ]
    flags = storage.downsample(ReadingsQuery(device="a", metric="on"), every_s=120)
    assert [(b.count, b.mean) for b in flags] == [(12, 0.5)], "a flag's mean is its share on"
    ranged = storage.downsample(ReadingsQuery(device="a", since=base + 60), every_s=60)
    assert {(b.metric, b.start) for b in ranged} == {("t", base + 60), ("on", base + 60)}
    assert len(storage.downsample(ReadingsQuery(limit=2), every_s=60)) == 2


def test_retention_deletes_old_samples_and_their_readings_only(storage: Storage) -> None:
    kept = storage.insert([sample("a", i) for i in range(10)], 0.0).stored
    cutoff = 1_800_000_006.0  # samples 0..5 are older
    gone = 0
    while True:
        deleted = storage.delete_before(cutoff, limit=4)
        gone += deleted
        if deleted == 0:
            break
    assert gone == 6
    assert [r.seq for r in storage.readings(ReadingsQuery())] == [6, 7, 8, 9]
    assert [e.sample.seq for e in storage.samples_after(0, None, 100)] == [6, 7, 8, 9]
    assert [b.count for b in storage.downsample(ReadingsQuery(), every_s=3600)] == [4]
    assert {d.id: d.samples for d in storage.devices()} == {"a": 10}, "a lifetime count"
    new = storage.insert([sample("a", 20)], 0.0).stored
    assert new[0].id > kept[-1].id, "event ids are never reused"


def command(
    command_id: str,
    device: str = "a",
    created_at: float = 100.0,
    expires_at: float = 1000.0,
    state: str = "queued",
) -> CommandRow:
    return CommandRow(
        id=command_id,
        device=device,
        command={"set": {"interval_s": 30}},
        state=state,
        created_at=created_at,
        updated_at=created_at,
        expires_at=expires_at,
    )


def test_a_command_is_kept_as_sent(storage: Storage) -> None:
    row = command("c1")
    storage.add_command(row)
    assert storage.commands(None, 10) == [row]


def test_a_command_moves_forward_only(storage: Storage) -> None:
    storage.add_command(command("c1"))
    for at, state in enumerate(("at_edge", "delivered", "acked"), start=101):
        moved = storage.update_command("c1", "a", state, at=float(at), error=None)
        assert moved is not None
        assert (moved.state, moved.updated_at, moved.command) == (
            state,
            at,
            {"set": {"interval_s": 30}},
        )
    acked = storage.commands("a", 10)
    for state in ("queued", "at_edge", "delivered", "acked", "failed", "expired"):
        assert storage.update_command("c1", "a", state, at=200.0, error="late") is None, state
    assert storage.commands("a", 10) == acked, "news that is not ahead changes nothing"


def test_a_failed_command_keeps_its_reason_and_stays_failed(storage: Storage) -> None:
    storage.add_command(command("c1"))
    storage.update_command("c1", "a", "delivered", at=101.0, error=None)
    assert storage.update_command("c1", "a", "at_edge", at=102.0, error=None) is None
    failed = storage.update_command("c1", "a", "failed", at=103.0, error="no such metric")
    assert failed is not None
    assert (failed.state, failed.error) == ("failed", "no such metric")
    assert storage.update_command("c1", "a", "acked", at=104.0, error=None) is None
    assert storage.commands(None, 10) == [failed]


def test_a_command_moves_only_as_its_own_boards(storage: Storage) -> None:
    """An edge that learned another board's command id cannot move it."""
    storage.add_command(command("c1", device="a"))
    assert storage.update_command("c1", "b", "acked", at=101.0, error=None) is None
    assert [c.state for c in storage.commands(None, 10)] == ["queued"]
    moved = storage.update_command("c1", "a", "acked", at=102.0, error=None)
    assert moved is not None
    assert moved.state == "acked"


def test_updating_an_unknown_command_moves_nothing(storage: Storage) -> None:
    assert storage.update_command("nope", "a", "at_edge", at=1.0, error=None) is None
    assert storage.commands(None, 10) == []


def test_commands_for_an_edge_are_the_open_ones_of_its_boards(storage: Storage) -> None:
    storage.set_status("a", "online", at=10.0, edge_id="pi-1")
    storage.set_status("b", "online", at=10.0, edge_id="pi-2")
    storage.set_status("c", "online", at=10.0, edge_id="pi-1")
    storage.set_status("c", "online", at=11.0, edge_id="pi-2")  # c moved to pi-2
    storage.set_status("d", "online", at=10.0, edge_id=None)
    now = 500.0
    for row in (
        command("late", created_at=30.0),
        command("first", created_at=10.0, state="at_edge"),
        command("tie-y", created_at=20.0),
        command("tie-x", created_at=20.0),
        command("delivered", created_at=5.0, state="delivered"),
        command("acked", created_at=5.0, state="acked"),
        command("due", created_at=5.0, expires_at=now),  # expires_at <= now: expired
        command("other-edge", device="b", created_at=5.0),
        command("moved", device="c", created_at=5.0),
        command("no-edge", device="d", created_at=5.0),
        command("unknown-board", device="z", created_at=5.0),
    ):
        storage.add_command(row)
    mine = storage.commands_for_edge("pi-1", now, 10)
    assert [c.id for c in mine] == ["first", "tie-x", "tie-y", "late"]
    assert [c.id for c in storage.commands_for_edge("pi-1", now, 2)] == ["first", "tie-x"]
    assert [c.id for c in storage.commands_for_edge("pi-2", now, 10)] == ["moved", "other-edge"]
    assert storage.commands_for_edge("pi-3", now, 10) == []


def test_expiry_takes_due_open_commands_once(storage: Storage) -> None:
    now = 500.0
    for row in (
        command("queued", expires_at=400.0),
        command("at-edge", expires_at=now, state="at_edge"),
        command("delivered", expires_at=300.0, state="delivered"),
        command("acked", expires_at=300.0, state="acked"),
        command("failed", expires_at=300.0, state="failed"),
        command("not-due", expires_at=now + 1),
    ):
        storage.add_command(row)
    first = storage.expire_commands(now, limit=2)
    rest = storage.expire_commands(now, limit=10)
    expired = first + rest
    assert len(first) == 2
    assert sorted(c.id for c in expired) == ["at-edge", "delivered", "queued"]
    assert {(c.state, c.error, c.updated_at) for c in expired} == {
        ("expired", "deadline passed", now)
    }
    assert storage.expire_commands(now, limit=10) == []
    held = {c.id: c for c in storage.commands(None, 10)}
    assert {i: c.state for i, c in held.items()} == {
        "queued": "expired",
        "at-edge": "expired",
        "delivered": "expired",
        "acked": "acked",
        "failed": "failed",
        "not-due": "queued",
    }
    assert held["queued"] == next(c for c in expired if c.id == "queued")
    assert storage.update_command("queued", "a", "acked", at=now + 2, error=None) is None


def test_commands_of_a_board_newest_first(storage: Storage) -> None:
    for row in (
        command("a-old", created_at=1.0),
        command("a-new", created_at=3.0),
        command("a-tie-1", created_at=2.0),
        command("a-tie-2", created_at=2.0),
        command("b-only", device="b", created_at=5.0),
    ):
        storage.add_command(row)
    assert [c.id for c in storage.commands("a", 10)] == ["a-new", "a-tie-2", "a-tie-1", "a-old"]
    assert [c.id for c in storage.commands("a", 2)] == ["a-new", "a-tie-2"]
    assert [c.id for c in storage.commands(None, 2)] == ["b-only", "a-new"]
    assert storage.commands("nobody", 10) == []


def test_sqlite_database_from_before_commands_gains_them(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    SqliteStorage(path).close()
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.execute("DROP TABLE commands")  # as a database from before commands
    store = SqliteStorage(path)
    store.add_command(command("c1"))
    store.close()
    again = SqliteStorage(path)
    assert [c.id for c in again.commands(None, 10)] == ["c1"], "kept across a restart"
    again.close()


def test_postgres_migrations_apply_once(pg_url: str) -> None:
    with psycopg.connect(pg_url, autocommit=True) as db:
        assert migrate(db) == [1, 2, 3, 4]
        assert migrate(db) == []
        versions = [r[0] for r in db.execute("SELECT version FROM schema_migrations")]
    assert versions == [1, 2, 3, 4]


def test_postgres_ids_grow_in_commit_order_with_two_writers(pg_url: str) -> None:
    """Two ingest processes writing at once: the feeds resume "after id N",
    so a smaller id must never become visible after a larger one."""
    writers = [PostgresStorage(pg_url), PostgresStorage(pg_url)]
    reader = PostgresStorage(pg_url)
    seen: list[int] = []
    done = threading.Event()

    def write(store: Storage, device: str) -> None:
        for start in range(0, 400, 20):
            store.insert([sample(device, seq) for seq in range(start, start + 20)], 0.0)

    def watch() -> None:
        last = 0
        while not done.is_set() or last < 800:
            for event in reader.samples_after(last, None, 1000):
                seen.append(event.id)
                last = event.id
            if len(seen) >= 800:
                return

    pairs = zip(writers, "xy", strict=True)
    threads = [threading.Thread(target=write, args=pair) for pair in pairs]
    watcher = threading.Thread(target=watch)
    watcher.start()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    done.set()
    watcher.join(30)
    for store in (*writers, reader):
        store.close()
    assert len(seen) == 800, "reading after the last id seen missed nothing"
    assert seen == sorted(seen)


@settings(max_examples=60, deadline=None)
@given(
    readings=st.lists(
        st.tuples(st.integers(0, 5000), st.floats(-1e6, 1e6, allow_nan=False)), max_size=60
    ),
    every=st.sampled_from([1.0, 7.5, 60.0, 3600.0]),
    since=st.none() | st.integers(0, 5000),
)
def test_sqlite_downsampling_agrees_with_the_model(
    readings: list[tuple[int, float]], every: float, since: int | None
) -> None:
    """Both of SQLite's ways (one series: a walk over its buckets; several:
    GROUP BY) against the in-memory reference."""
    samples = [
        Sample("a", 1, i, 1_800_000_000.0 + at, {"t": v}) for i, (at, v) in enumerate(readings)
    ]
    model = MemoryStorage()
    with tempfile.TemporaryDirectory() as scratch:
        sqlite = SqliteStorage(Path(scratch) / "c.db")
        try:
            for store in (model, sqlite):
                store.insert(samples, 0.0)
            lower = None if since is None else 1_800_000_000.0 + since
            for query in (
                ReadingsQuery(device="a", metric="t", since=lower),
                ReadingsQuery(since=lower),
            ):
                want = model.downsample(query, every)
                got = sqlite.downsample(query, every)
                assert [(b.start, b.count, b.min, b.max) for b in got] == [
                    (b.start, b.count, b.min, b.max) for b in want
                ]
                assert [b.mean for b in got] == pytest.approx(
                    [b.mean for b in want], rel=1e-9, abs=1e-6
                )
        finally:
            sqlite.close()
