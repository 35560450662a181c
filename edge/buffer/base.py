"""The edge buffer: where a sample waits, durably, until the cloud has it.

Rule: `append` returns only once its records and dead letters would survive a
power cut; only then may the MQTT messages they came in be acknowledged. A
record leaves the buffer by `delete` after the cloud acknowledged it, or, when
`append` finds the buffer over its caps, by being dropped oldest first (the
caller counts what `append` reports as dropped; a caller that must not drop
asks `room()` first and appends only what fits).

A record is a serialized `edgewire.v1.Sample`. Its id grows with every
append and is never reused while the buffer is open, so "after the last id
sent" is a sound resume point. Implementations: `memory` (tests, and the
model the SQLite one is held to) and `sqlite`.
"""

from collections.abc import Mapping, Sequence
from typing import NamedTuple, Protocol

import msgspec

from edge.stored import Mark

# Bytes of a rejected payload kept in the dead-letter store; the rest is cut
# (its full size is recorded), so a flood of huge junk cannot fill the disk.
DEAD_LETTER_KEEP_BYTES = 64 * 1024


class DeadLetter(msgspec.Struct, frozen=True):
    at: float
    topic: str
    reason: str
    detail: str
    payload: bytes
    size: int


class StoredDeadLetter(msgspec.Struct, frozen=True):
    id: int
    letter: DeadLetter


class Appended(NamedTuple):
    first_id: int  # the records got first_id, first_id + 1, ...
    dropped: int  # old records removed to stay within the caps


class BufferStats(msgspec.Struct, frozen=True):
    records: int
    bytes: int
    newest_id: int  # 0 before the first append
    dead_letters: int


class Caps(NamedTuple):
    max_records: int
    max_bytes: int
    max_dead_letters: int


class Buffer(Protocol):
    def append(
        self,
        records: Sequence[bytes],
        dead_letters: Sequence[DeadLetter],
        marks: Sequence[Mark] = (),
        rule_state: Mapping[str, bytes | None] | None = None,
    ) -> Appended:
        """Store durably, with the `stored` watermarks these records moved
        and the rules' state they left (None: forget that entry), then drop
        the oldest records beyond the caps."""

    def rule_state(self) -> dict[str, bytes]:
        """The rules' state as last committed (see edge/rules)."""

    def marks(self) -> list[Mark]:
        """The persisted watermarks (see edge/stored.py)."""

    def room(self) -> tuple[int, int]:
        """(records, bytes) that still fit under the caps."""

    def read(self, after_id: int, below_id: int, limit: int) -> list[tuple[int, bytes]]:
        """Up to `limit` records with after_id < id < below_id, oldest first."""

    def oldest(self) -> bytes | None:
        """The oldest record, or None when empty."""

    def delete(self, ids: Sequence[int]) -> int:
        """Forget acknowledged records; returns how many were still here.
        Made durable by the next `append` or `flush`."""

    def flush(self) -> None:
        """Make waiting deletes durable."""

    def stats(self) -> BufferStats: ...

    def dead_letters(self, limit: int) -> list[StoredDeadLetter]:
        """The newest `limit` dead letters, oldest first."""

    def delete_dead_letters(self, ids: Sequence[int]) -> int:
        """Forget dead letters (replayed); how many were still here."""

    def close(self) -> None: ...


def dead_letter(at: float, topic: str, reason: str, detail: str, payload: bytes) -> DeadLetter:
    return DeadLetter(
        at=at,
        topic=topic,
        reason=reason,
        detail=detail,
        payload=payload[:DEAD_LETTER_KEEP_BYTES],
        size=len(payload),
    )
