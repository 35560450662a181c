"""An in-memory buffer: no durability, for tests and as the reference model."""

from collections import OrderedDict
from collections.abc import Mapping, Sequence

from edge.buffer.base import Appended, BufferStats, Caps, DeadLetter, StoredDeadLetter
from edge.stored import Mark


class MemoryBuffer:
    def __init__(self, caps: Caps) -> None:
        self._caps = caps
        self._records: OrderedDict[int, bytes] = OrderedDict()
        self._bytes = 0
        self._letters: OrderedDict[int, DeadLetter] = OrderedDict()
        self._next_id = 1
        self._next_letter_id = 1
        self._marks: dict[tuple[str, int], Mark] = {}
        self._rule_state: dict[str, bytes] = {}

    def append(
        self,
        records: Sequence[bytes],
        dead_letters: Sequence[DeadLetter],
        marks: Sequence[Mark] = (),
        rule_state: Mapping[str, bytes | None] | None = None,
    ) -> Appended:
        for key, state in (rule_state or {}).items():
            if state is None:
                self._rule_state.pop(key, None)
            else:
                self._rule_state[key] = state
        for mark in marks:
            if mark.mark is None:
                self._marks.pop((mark.device_id, mark.boot), None)
            else:
                self._marks[(mark.device_id, mark.boot)] = mark
        first_id = self._next_id
        for record in records:
            self._records[self._next_id] = record
            self._bytes += len(record)
            self._next_id += 1
        for letter in dead_letters:
            self._letters[self._next_letter_id] = letter
            self._next_letter_id += 1
        while len(self._letters) > self._caps.max_dead_letters:
            self._letters.popitem(last=False)
        dropped = 0
        while self._records and (
            len(self._records) > self._caps.max_records or self._bytes > self._caps.max_bytes
        ):
            _, record = self._records.popitem(last=False)
            self._bytes -= len(record)
            dropped += 1
        return Appended(first_id, dropped)

    def rule_state(self) -> dict[str, bytes]:
        return dict(self._rule_state)

    def delete_dead_letters(self, ids: Sequence[int]) -> int:
        return sum(self._letters.pop(i, None) is not None for i in ids)

    def marks(self) -> list[Mark]:
        return list(self._marks.values())

    def room(self) -> tuple[int, int]:
        return (
            max(0, self._caps.max_records - len(self._records)),
            max(0, self._caps.max_bytes - self._bytes),
        )

    def read(self, after_id: int, below_id: int, limit: int) -> list[tuple[int, bytes]]:
        out: list[tuple[int, bytes]] = []
        for record_id, record in self._records.items():
            if record_id >= below_id or len(out) == limit:
                break
            if record_id > after_id:
                out.append((record_id, record))
        return out

    def oldest(self) -> bytes | None:
        return next(iter(self._records.values()), None)

    def delete(self, ids: Sequence[int]) -> int:
        deleted = 0
        for record_id in ids:
            record = self._records.pop(record_id, None)
            if record is not None:
                self._bytes -= len(record)
                deleted += 1
        return deleted

    def flush(self) -> None:
        """Nothing waits in memory."""

    def stats(self) -> BufferStats:
        return BufferStats(
            records=len(self._records),
            bytes=self._bytes,
            newest_id=self._next_id - 1,
            dead_letters=len(self._letters),
        )

    def dead_letters(self, limit: int) -> list[StoredDeadLetter]:
        items = list(self._letters.items())[-limit:] if limit > 0 else []
        return [StoredDeadLetter(id=i, letter=letter) for i, letter in items]

    def close(self) -> None:
        self._records.clear()
