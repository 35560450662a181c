"""One contract suite over every edge buffer implementation."""

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from edge.buffer import Buffer, MemoryBuffer, SqliteBuffer, dead_letter
from edge.buffer.base import DEAD_LETTER_KEEP_BYTES
from edgewire.sample import Sample

Factory = Callable[[int, int], Buffer]


@pytest.fixture(params=["memory", "sqlite"])
def make(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Factory]:
    opened: list[Buffer] = []

    def factory(max_records: int = 1000, max_dead_letters: int = 100) -> Buffer:
        if request.param == "memory":
            buffer: Buffer = MemoryBuffer(max_records, max_dead_letters)
        else:
            buffer = SqliteBuffer(tmp_path / "buffer.db", max_records, max_dead_letters)
        opened.append(buffer)
        return buffer

    yield factory
    for buffer in opened:
        buffer.close()


def sample(seq: int, device: str = "d") -> Sample:
    return Sample(device, 1, seq, 1_800_000_000.0 + seq, {"t": seq * 0.5, "ok": seq % 2 == 0})


def test_read_returns_what_was_appended_in_order(make: Factory) -> None:
    buffer = make(1000, 100)
    assert buffer.append([sample(i) for i in range(5)], []) == 0
    rows = buffer.read(0, 100)
    assert [s for _, s in rows] == [sample(i) for i in range(5)]
    ids = [i for i, _ in rows]
    assert ids == sorted(ids)
    assert [s for _, s in buffer.read(ids[1], 2)] == [sample(2), sample(3)]
    assert buffer.stats().records == 5
    assert buffer.stats().oldest_ts == sample(0).ts


def test_delete_removes_only_the_given_ids(make: Factory) -> None:
    buffer = make(1000, 100)
    buffer.append([sample(i) for i in range(4)], [])
    ids = [i for i, _ in buffer.read(0, 10)]
    buffer.delete([ids[0], ids[2], 999_999])
    assert [s.seq for _, s in buffer.read(0, 10)] == [1, 3]
    assert buffer.stats().records == 2


def test_ids_are_never_reused_after_the_buffer_empties(make: Factory) -> None:
    buffer = make(1000, 100)
    buffer.append([sample(0), sample(1)], [])
    first = [i for i, _ in buffer.read(0, 10)]
    buffer.delete(first)
    buffer.append([sample(2)], [])
    [(new_id, _)] = buffer.read(0, 10)
    assert new_id > max(first), "the uplink resumes after the last id it sent"


def test_the_record_cap_drops_the_oldest_and_reports_it(make: Factory) -> None:
    buffer = make(3, 100)
    assert buffer.append([sample(i) for i in range(2)], []) == 0
    assert buffer.append([sample(i) for i in range(2, 6)], []) == 3
    assert [s.seq for _, s in buffer.read(0, 10)] == [3, 4, 5]
    assert buffer.stats().records == 3


def test_dead_letters_are_kept_newest_within_their_cap(make: Factory) -> None:
    buffer = make(10, 2)
    letters = [
        dead_letter(float(i), "edgewire/x/telemetry", "not_json", f"#{i}", b"junk")
        for i in range(3)
    ]
    buffer.append([], letters)
    kept = buffer.dead_letters(10)
    assert [k.letter.detail for k in kept] == ["#1", "#2"]
    assert buffer.stats().dead_letters == 2
    assert [k.letter.detail for k in buffer.dead_letters(1)] == ["#2"]


def test_huge_dead_letter_payloads_are_cut_but_sized(make: Factory) -> None:
    buffer = make(10, 10)
    huge = b"x" * (DEAD_LETTER_KEEP_BYTES * 2)
    buffer.append([], [dead_letter(1.0, "t", "too_large", "big", huge)])
    [kept] = buffer.dead_letters(1)
    assert len(kept.letter.payload) == DEAD_LETTER_KEEP_BYTES
    assert kept.letter.size == len(huge)


def test_sqlite_buffer_survives_reopening(tmp_path: Path) -> None:
    first = SqliteBuffer(tmp_path / "b.db", 100, 10)
    first.append([sample(1), sample(2)], [dead_letter(1.0, "t", "invalid", "why", b"x")])
    first.close()
    again = SqliteBuffer(tmp_path / "b.db", 100, 10)
    assert [s for _, s in again.read(0, 10)] == [sample(1), sample(2)]
    assert again.stats().records == 2
    assert again.stats().dead_letters == 1
    again.close()
