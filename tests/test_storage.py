"""One contract suite over every cloud storage implementation."""

from collections.abc import Iterator
from pathlib import Path

import pytest

from cloud.storage import MemoryStorage, ReadingsQuery, SqliteStorage, Storage, open_storage
from edgewire.errors import ConfigError
from edgewire.sample import Sample


@pytest.fixture(params=["memory", "sqlite"])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Storage]:
    store: Storage = (
        MemoryStorage() if request.param == "memory" else SqliteStorage(tmp_path / "c.db")
    )
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
    storage.set_status("a", "online", at=10.0)
    storage.set_status("c", "online", at=10.0)
    storage.set_status("c", "offline", at=11.0)
    storage.set_status("c", "online", at=9.0)  # older news is ignored
    rows = {d.id: d for d in storage.devices()}
    assert rows["a"].samples == 2
    assert rows["a"].metrics == ["rh", "t"]
    assert rows["a"].status == "online"
    assert rows["a"].last_seen == 1_800_000_002.0
    assert rows["b"].status == "offline"
    assert rows["c"].samples == 0
    assert rows["c"].status == "offline"


def test_samples_after_resumes_by_id(storage: Storage) -> None:
    stored = storage.insert([sample("a", i) for i in range(5)] + [sample("b", 9)], 0.0).stored
    after = storage.samples_after(stored[1].id, None, 100)
    assert [e.sample.seq for e in after] == [2, 3, 4, 9]
    only_b = storage.samples_after(0, frozenset(["b"]), 100)
    assert [e.sample.device_id for e in only_b] == ["b"]
    assert len(storage.samples_after(0, None, 2)) == 2
    assert after[0].sample == sample("a", 2)


def test_open_storage_urls(tmp_path: Path) -> None:
    assert isinstance(open_storage("memory://"), MemoryStorage)
    opened = open_storage(f"sqlite:///{tmp_path}/x.db")
    assert isinstance(opened, SqliteStorage)
    opened.close()
    with pytest.raises(ConfigError):
        open_storage("mysql://x")
