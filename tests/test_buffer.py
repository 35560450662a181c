"""One contract suite over every edge buffer implementation."""

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from edge.buffer import Buffer, Caps, MemoryBuffer, SqliteBuffer, dead_letter, open_buffer
from edge.buffer.base import DEAD_LETTER_KEEP_BYTES
from edge.stored import Mark

Factory = Callable[..., Buffer]


@pytest.fixture(params=["memory", "sqlite"])
def make(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Factory]:
    opened: list[Buffer] = []

    def factory(
        max_records: int = 1000, max_bytes: int = 1 << 30, max_dead_letters: int = 100
    ) -> Buffer:
        caps = Caps(max_records, max_bytes, max_dead_letters)
        buffer: Buffer = (
            MemoryBuffer(caps)
            if request.param == "memory"
            else SqliteBuffer(tmp_path / "buffer.db", caps)
        )
        opened.append(buffer)
        return buffer

    yield factory
    for buffer in opened:
        buffer.close()


def record(n: int, size: int = 10) -> bytes:
    return f"{n:0{size}d}".encode()


def everything(buffer: Buffer) -> list[bytes]:
    return [r for _, r in buffer.read(0, 1 << 62, 1 << 30)]


def test_read_returns_what_was_appended_in_order(make: Factory) -> None:
    buffer = make()
    appended = buffer.append([record(i) for i in range(5)], [])
    assert appended.dropped == 0
    rows = buffer.read(0, 1 << 62, 100)
    assert [r for _, r in rows] == [record(i) for i in range(5)]
    assert [i for i, _ in rows] == list(range(appended.first_id, appended.first_id + 5))
    ids = [i for i, _ in rows]
    assert [r for _, r in buffer.read(ids[1], 1 << 62, 2)] == [record(2), record(3)]
    assert [r for _, r in buffer.read(ids[0], ids[3], 100)] == [record(1), record(2)]
    stats = buffer.stats()
    assert (stats.records, stats.bytes, stats.newest_id) == (5, 50, ids[-1])
    assert buffer.oldest() == record(0)


def test_delete_removes_only_the_given_ids(make: Factory) -> None:
    buffer = make()
    first = buffer.append([record(i) for i in range(4)], []).first_id
    assert buffer.delete([first, first + 2, 999_999]) == 2
    assert everything(buffer) == [record(1), record(3)]
    assert buffer.stats().records == 2
    assert buffer.stats().bytes == 20


def test_ids_are_never_reused_after_the_buffer_empties(make: Factory) -> None:
    buffer = make()
    first = buffer.append([record(0), record(1)], []).first_id
    buffer.delete([first, first + 1])
    again = buffer.append([record(2)], []).first_id
    assert again == first + 2, "the uplink resumes after the last id it sent"


def test_the_record_cap_drops_the_oldest_and_reports_it(make: Factory) -> None:
    buffer = make(max_records=3)
    assert buffer.append([record(i) for i in range(2)], []).dropped == 0
    assert buffer.room() == (1, (1 << 30) - 20)
    assert buffer.append([record(i) for i in range(2, 6)], []).dropped == 3
    assert everything(buffer) == [record(3), record(4), record(5)]
    assert buffer.stats().records == 3
    assert buffer.room()[0] == 0


def test_the_byte_cap_drops_the_oldest_and_reports_it(make: Factory) -> None:
    buffer = make(max_bytes=35)
    assert buffer.append([record(i) for i in range(3)], []).dropped == 0
    assert buffer.room() == (997, 5)
    assert buffer.append([record(3, size=20)], []).dropped == 2
    assert everything(buffer) == [record(2), record(3, size=20)]
    assert buffer.stats().bytes == 30


def test_dead_letters_are_kept_newest_within_their_cap(make: Factory) -> None:
    buffer = make(max_dead_letters=2)
    letters = [
        dead_letter(float(i), "edgewire/x/telemetry", "not_json", f"#{i}", b"x") for i in range(3)
    ]
    buffer.append([], letters)
    assert [k.letter.detail for k in buffer.dead_letters(10)] == ["#1", "#2"]
    assert buffer.stats().dead_letters == 2
    assert [k.letter.detail for k in buffer.dead_letters(1)] == ["#2"]


def test_huge_dead_letter_payloads_are_cut_but_sized(make: Factory) -> None:
    buffer = make()
    huge = b"x" * (DEAD_LETTER_KEEP_BYTES * 2)
    buffer.append([], [dead_letter(1.0, "t", "too_large", "big", huge)])
    [kept] = buffer.dead_letters(1)
    assert len(kept.letter.payload) == DEAD_LETTER_KEEP_BYTES
    assert kept.letter.size == len(huge)


def test_sqlite_buffer_survives_reopening(tmp_path: Path) -> None:
    caps = Caps(100, 1 << 20, 10)
    first = SqliteBuffer(tmp_path / "b.db", caps)
    start = first.append([record(1), record(2)], [dead_letter(1.0, "t", "invalid", "w", b"x")])
    first.delete([start.first_id])
    first.close()
    again = SqliteBuffer(tmp_path / "b.db", caps)
    assert everything(again) == [record(2)]
    stats = again.stats()
    assert (stats.records, stats.bytes, stats.dead_letters) == (1, 10, 1)
    assert again.append([record(3)], []).first_id == start.first_id + 2
    again.close()


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_a_damaged_buffer_is_moved_aside_not_wiped(tmp_path: Path, damage: str) -> None:
    caps = Caps(10_000, 1 << 30, 10)
    path = tmp_path / "buffer.db"
    if damage == "garbage":
        path.write_bytes(b"this is not a database" * 100)
    else:
        good = SqliteBuffer(path, caps)
        good.append([record(i, size=200) for i in range(2000)], [])
        good.close()
        data = path.read_bytes()
        # Overwrite the middle of the file: table pages become junk.
        path.write_bytes(data[:8192] + b"\xff" * (len(data) - 16384) + data[-8192:])
    original = path.read_bytes()
    buffer, aside = open_buffer(tmp_path, caps)
    assert aside is not None
    assert aside.read_bytes() == original, "the damaged file is kept for inspection"
    assert buffer.stats().records == 0
    buffer.append([record(1)], [])
    assert everything(buffer) == [record(1)]
    buffer.close()


def test_an_unreadable_buffer_is_an_error_not_a_fresh_start(tmp_path: Path) -> None:
    (tmp_path / "buffer.db").mkdir()  # a directory where the file should be
    with pytest.raises(Exception, match="cannot open the edge buffer"):
        open_buffer(tmp_path, Caps(1, 1, 1))


def test_marks_are_committed_with_the_records(make: Factory) -> None:
    buffer = make()
    buffer.append([record(1)], [], [Mark("d", 1, 5, (7, 9)), Mark("e", 2, 0)])
    buffer.append([], [], [Mark("d", 1, 9), Mark("e", 2, None)])
    assert buffer.marks() == [Mark("d", 1, 9, ())]
