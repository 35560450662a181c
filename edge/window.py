"""Bookkeeping of the edge's cloud stream, without the stream.

Rule: a buffered sample is in exactly one of three places: not yet sent
(id above `resume_after`), in flight in one batch, or acknowledged (then the
caller deletes it). A lost stream puts every in-flight sample back to "not
yet sent" by resetting, so it is sent again: the cloud's dedupe makes that
harmless, and nothing unacknowledged is ever deleted.
"""

from collections.abc import Sequence


class InFlight:
    def __init__(self, max_batches: int) -> None:
        self._max_batches = max_batches
        self._batches: dict[int, list[int]] = {}
        self._next_batch_id = 1
        self.resume_after = 0

    @property
    def full(self) -> bool:
        return len(self._batches) >= self._max_batches

    @property
    def batches(self) -> int:
        return len(self._batches)

    def sent(self, ids: Sequence[int]) -> int:
        """Record a batch of buffer ids (ascending) as sent; its batch id."""
        batch_id = self._next_batch_id
        self._next_batch_id += 1
        self._batches[batch_id] = list(ids)
        self.resume_after = max(self.resume_after, ids[-1])
        return batch_id

    def acked(self, batch_id: int) -> list[int]:
        """The buffer ids an acknowledgement covers ([] if unknown or repeated)."""
        return self._batches.pop(batch_id, [])

    def reset(self) -> None:
        """The stream is gone: everything unacknowledged will be sent again."""
        self._batches.clear()
        self.resume_after = 0


def backoff_delay(attempt: int, base_s: float, cap_s: float, unit_random: float) -> float:
    """Exponential backoff with full jitter: uniform in [0, min(cap, base*2^n)).

    `unit_random` is a number in [0, 1) from the caller's random source.
    """
    ceiling = min(cap_s, base_s * float(2 ** min(attempt, 30)))
    return ceiling * unit_random
