"""Cloud storage: every sample once, queryable by device, metric and time.

Rule: `insert` is idempotent on (device_id, boot, seq). It returns the samples
that were new, with their storage ids (increasing in commit order, never
reused: they are the event ids the live feeds resume from), and how many were
already held. A batch is acknowledged to the edge only after `insert`
returned, so the commit is the point of custody.

Implementations: `memory` (tests, the reference model), `sqlite` (the
embedded default) and `postgres` (at scale).
Callers run writes on one thread and reads on another; implementations may
rely on that.
"""

from collections.abc import Sequence
from typing import Protocol

import msgspec

from edgewire.sample import MetricValue, Sample, StoredSample


class InsertResult(msgspec.Struct, frozen=True):
    stored: list[StoredSample]
    duplicates: int


class DeviceRow(msgspec.Struct, frozen=True):
    """A board as the cloud knows it; `samples` counts every sample ever
    stored for it (retention does not lower it)."""

    id: str
    status: str
    last_seen: float | None
    metrics: list[str]
    samples: int
    # The edge that last reported the board's status, and how its buffer
    # stood when it last said (None until it has).
    edge: str | None = None
    edge_buffered: int | None = None
    edge_oldest_age_s: float | None = None
    edge_reported_at: float | None = None


class EdgeStats(msgspec.Struct, frozen=True):
    """How an edge's store-and-forward stood at `at`."""

    edge_id: str
    at: float
    buffered: int
    oldest_age_s: float
    delivery_rate: float


class Reading(msgspec.Struct, frozen=True):
    device: str
    boot: int
    seq: int
    ts: float
    metric: str
    value: MetricValue


class Bucket(msgspec.Struct, frozen=True):
    """The readings of one series within [start, start + every): booleans
    count as 0 and 1, so a flag's mean is the share of the time it was on."""

    device: str
    metric: str
    start: float
    count: int
    min: float
    mean: float
    max: float


class ReadingsQuery(msgspec.Struct, frozen=True):
    device: str | None = None
    metric: str | None = None
    since: float | None = None
    until: float | None = None
    limit: int = 1000


class Storage(Protocol):
    def insert(self, samples: Sequence[Sample], received_at: float) -> InsertResult: ...

    def set_status(self, device_id: str, status: str, at: float, edge_id: str | None) -> None:
        """Record a board's status as of `at`, and the edge it came through;
        older news than held is ignored."""

    def set_edge_stats(self, stats: EdgeStats) -> None:
        """Record how an edge's buffer stands; older news is ignored."""

    def devices(self) -> list[DeviceRow]: ...

    def readings(self, query: ReadingsQuery) -> list[Reading]:
        """Matching readings, oldest first, at most `query.limit`."""

    def downsample(self, query: ReadingsQuery, every_s: float) -> list[Bucket]:
        """Matching readings per series and per `every_s` seconds (buckets
        aligned to the Unix epoch), oldest first, at most `query.limit`."""

    def delete_before(self, ts: float, limit: int) -> int:
        """Delete at most `limit` samples older than `ts` (retention), with
        their readings; how many went. Event ids are never reused."""

    def samples_after(
        self, after_id: int, devices: frozenset[str] | None, limit: int
    ) -> list[StoredSample]:
        """Stored samples with an id above `after_id`, in id order."""

    def close(self) -> None: ...
