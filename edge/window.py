"""What the edge sends to the cloud next, and what an acknowledgement frees.

Sans-IO: the uplink adapter feeds it committed records, buffer reads, acks and
`now`, and asks it what to send. Rules:

1. A buffered record is in exactly one place: waiting in the backlog (on disk,
   id in (backlog_after, live_floor)), waiting in the live lane (in memory,
   id >= live_floor), in flight in one batch, or acknowledged (then the
   caller deletes it). A lost stream (`restart`) turns everything in flight
   or in the live lane back into backlog, so it is sent again; the cloud's
   dedupe makes that harmless, and nothing unacknowledged is ever deleted.
2. The backlog goes out oldest first; new records go out through the live
   lane as they are committed. When both have work, the lanes alternate, so
   live samples are not starved while a backlog drains. A live lane that
   grows past its bound hands its oldest records to the backlog.
3. A batch is bounded by samples and bytes. A live batch goes when it is
   full or when its oldest record has waited `linger_s`: a few milliseconds
   of latency buy batches big enough that the cloud commits hundreds of
   samples per fsync instead of a handful.
"""

from collections import deque
from dataclasses import dataclass
from enum import Enum


class Lane(Enum):
    LIVE = "live"
    BACKLOG = "backlog"


@dataclass(frozen=True)
class Limits:
    max_batches: int = 8
    max_samples: int = 500
    max_bytes: int = 1_000_000
    linger_s: float = 0.02
    live_max_records: int = 20_000


@dataclass(frozen=True)
class Outgoing:
    batch_id: int
    lane: Lane
    ids: list[int]
    records: list[bytes]


class SendPlan:
    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self._inflight: dict[int, list[int]] = {}
        self._next_batch_id = 1
        # (id, record, committed at) in id order.
        self._live: deque[tuple[int, bytes, float]] = deque()
        self.live_floor = 1
        self.backlog_after = 0
        self._backlog_empty = False
        self._last_lane = Lane.LIVE

    # -- feeding -----------------------------------------------------------

    def restart(self, newest_id: int) -> None:
        """A new stream: all that the buffer holds, up to `newest_id`, is
        backlog; records committed after it come through the live lane."""
        self._inflight.clear()
        self._live.clear()
        self.live_floor = newest_id + 1
        self.backlog_after = 0
        self._backlog_empty = False

    def committed(self, first_id: int, records: list[bytes], now: float) -> None:
        """Records just made durable, with ids first_id, first_id + 1, ..."""
        for offset, record in enumerate(records):
            record_id = first_id + offset
            if record_id >= self.live_floor:
                self._live.append((record_id, record, now))
        overflow = len(self._live) - self.limits.live_max_records
        if overflow > 0:
            for _ in range(overflow):
                self._live.popleft()
            self.live_floor = self._live[0][0]
            self._backlog_empty = False

    def skip_to(self, first_id: int) -> None:
        """Records below `first_id` that were never handed to `committed`
        (the hand-off overflowed) are backlog now, and so is the live lane."""
        if first_id > self.live_floor:
            self._live.clear()
            self.live_floor = first_id
            self._backlog_empty = False

    # -- choosing ----------------------------------------------------------

    @property
    def inflight_batches(self) -> int:
        return len(self._inflight)

    @property
    def live_records(self) -> int:
        return len(self._live)

    def next_lane(self, now: float) -> Lane | None:
        """Which lane sends next, or None to wait (see `wait_s`)."""
        if len(self._inflight) >= self.limits.max_batches:
            return None
        live = self._live_ready(now)
        backlog = not self._backlog_empty
        if live and backlog:
            self._last_lane = Lane.BACKLOG if self._last_lane is Lane.LIVE else Lane.LIVE
            return self._last_lane
        if live:
            return Lane.LIVE
        if backlog:
            return Lane.BACKLOG
        return None

    def wait_s(self, now: float) -> float | None:
        """How long nothing can be sent unless something new happens."""
        if self._live and len(self._inflight) < self.limits.max_batches:
            return max(0.0, self._live[0][2] + self.limits.linger_s - now)
        return None

    def _live_ready(self, now: float) -> bool:
        if not self._live:
            return False
        if len(self._live) >= self.limits.max_samples:
            return True
        return now - self._live[0][2] >= self.limits.linger_s

    # -- sending -----------------------------------------------------------

    def take_live(self) -> Outgoing:
        ids: list[int] = []
        records: list[bytes] = []
        size = 0
        while self._live and len(ids) < self.limits.max_samples:
            record_id, record, _ = self._live[0]
            if ids and size + len(record) > self.limits.max_bytes:
                break
            self._live.popleft()
            ids.append(record_id)
            records.append(record)
            size += len(record)
        return self._sent(Lane.LIVE, ids, records)

    def backlog_range(self) -> tuple[int, int, int]:
        """(after_id, below_id, limit) of the next backlog read."""
        return self.backlog_after, self.live_floor, self.limits.max_samples

    def backlog_read(self, rows: list[tuple[int, bytes]]) -> Outgoing | None:
        """The rows a `backlog_range` read returned: a batch, or None when
        the backlog is empty."""
        ids: list[int] = []
        records: list[bytes] = []
        size = 0
        for record_id, record in rows:
            if ids and size + len(record) > self.limits.max_bytes:
                break
            ids.append(record_id)
            records.append(record)
            size += len(record)
        if len(rows) < self.limits.max_samples and len(ids) == len(rows):
            self._backlog_empty = True
        if not ids:
            return None
        self.backlog_after = ids[-1]
        return self._sent(Lane.BACKLOG, ids, records)

    def _sent(self, lane: Lane, ids: list[int], records: list[bytes]) -> Outgoing:
        batch_id = self._next_batch_id
        self._next_batch_id += 1
        self._inflight[batch_id] = ids
        return Outgoing(batch_id, lane, ids, records)

    def acked(self, batch_id: int) -> list[int]:
        """The ids an acknowledgement covers ([] if unknown or repeated)."""
        return self._inflight.pop(batch_id, [])


class RateMeter:
    """Events per second, smoothed exponentially over intervals of at least
    `min_interval_s`; call `add(0, now)` now and then so it decays."""

    def __init__(self, half_life_s: float = 10.0, min_interval_s: float = 1.0) -> None:
        self._half_life_s = half_life_s
        self._min_interval_s = min_interval_s
        self._count = 0
        self._since: float | None = None
        self.per_second = 0.0

    def add(self, count: int, now: float) -> None:
        if self._since is None:
            self._since = now
        self._count += count
        elapsed = now - self._since
        if elapsed >= self._min_interval_s:
            weight = 0.5 ** (elapsed / self._half_life_s)
            self.per_second = weight * self.per_second + (1 - weight) * self._count / elapsed
            self._count = 0
            self._since = now


def drain_eta_s(backlog: int, rate_per_s: float) -> float | None:
    """Seconds until `backlog` records are gone at `rate_per_s`; None if
    nothing is draining."""
    if backlog == 0:
        return 0.0
    if rate_per_s <= 0:
        return None
    return backlog / rate_per_s


def backoff_delay(attempt: int, base_s: float, cap_s: float, unit_random: float) -> float:
    """Exponential backoff with full jitter: uniform in [0, min(cap, base*2^n)).

    `unit_random` is a number in [0, 1) from the caller's random source.
    """
    ceiling = min(cap_s, base_s * float(2 ** min(attempt, 30)))
    return ceiling * unit_random
