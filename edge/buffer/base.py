"""The edge buffer: where a sample waits, durably, until the cloud has it.

Rule: `append` returns only once its samples and dead letters would survive a
power cut; only then may the MQTT message they came in be acknowledged. A
sample leaves the buffer by `delete` after the cloud acknowledged it, or by
the record cap (oldest first, and the caller counts what `append` reports as
dropped). Implementations: `memory` (tests, and the model the SQLite one is
held to) and `sqlite`.
"""

from collections.abc import Sequence
from typing import Protocol

import msgspec

from edgewire.sample import Sample

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


class BufferStats(msgspec.Struct, frozen=True):
    records: int
    oldest_ts: float | None
    dead_letters: int


class Buffer(Protocol):
    def append(self, samples: Sequence[Sample], dead_letters: Sequence[DeadLetter]) -> int:
        """Store durably; returns how many old samples the record cap dropped."""

    def read(self, after_id: int, limit: int) -> list[tuple[int, Sample]]:
        """Up to `limit` samples with an id above `after_id`, oldest first.

        Ids increase with every append and are never reused, so "after the
        last id sent" is a sound resume point.
        """

    def delete(self, ids: Sequence[int]) -> None:
        """Forget acknowledged samples; unknown ids are ignored."""

    def stats(self) -> BufferStats: ...

    def dead_letters(self, limit: int) -> list[StoredDeadLetter]:
        """The newest `limit` dead letters, oldest first."""

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
