"""An in-memory buffer: no durability, for tests and as the reference model."""

from collections import OrderedDict
from collections.abc import Sequence

from edge.buffer.base import BufferStats, DeadLetter, StoredDeadLetter
from edgewire.sample import Sample


class MemoryBuffer:
    def __init__(self, max_records: int, max_dead_letters: int) -> None:
        self._max_records = max_records
        self._max_dead_letters = max_dead_letters
        self._samples: OrderedDict[int, Sample] = OrderedDict()
        self._letters: OrderedDict[int, DeadLetter] = OrderedDict()
        self._next_id = 1
        self._next_letter_id = 1

    def append(self, samples: Sequence[Sample], dead_letters: Sequence[DeadLetter]) -> int:
        for sample in samples:
            self._samples[self._next_id] = sample
            self._next_id += 1
        for letter in dead_letters:
            self._letters[self._next_letter_id] = letter
            self._next_letter_id += 1
        while len(self._letters) > self._max_dead_letters:
            self._letters.popitem(last=False)
        dropped = 0
        while len(self._samples) > self._max_records:
            self._samples.popitem(last=False)
            dropped += 1
        return dropped

    def read(self, after_id: int, limit: int) -> list[tuple[int, Sample]]:
        out: list[tuple[int, Sample]] = []
        for record_id, sample in self._samples.items():
            if record_id > after_id:
                out.append((record_id, sample))
                if len(out) == limit:
                    break
        return out

    def delete(self, ids: Sequence[int]) -> None:
        for record_id in ids:
            self._samples.pop(record_id, None)

    def stats(self) -> BufferStats:
        oldest = next(iter(self._samples.values()), None)
        return BufferStats(
            records=len(self._samples),
            oldest_ts=None if oldest is None else oldest.ts,
            dead_letters=len(self._letters),
        )

    def dead_letters(self, limit: int) -> list[StoredDeadLetter]:
        items = list(self._letters.items())[-limit:] if limit > 0 else []
        return [StoredDeadLetter(id=i, letter=letter) for i, letter in items]

    def close(self) -> None:
        self._samples.clear()
