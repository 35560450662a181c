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
from typing import Any, Protocol

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


class CommandRow(msgspec.Struct, frozen=True):
    """A command for a board and where it stands (edgewire/downlink.py has
    the states and the rule that they only move forward)."""

    id: str
    device: str
    command: dict[str, Any]  # what the user sent, without the id
    state: str
    created_at: float
    updated_at: float
    expires_at: float
    error: str | None = None


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

    def add_command(self, row: CommandRow) -> None:
        """Keep a new command (its id is new)."""

    def update_command(
        self, command_id: str, device_id: str, state: str, at: float, error: str | None
    ) -> CommandRow | None:
        """Move a command to `state` (with `error` for failed/expired) if it
        is `device_id`'s and that is forward of where it stands
        (edgewire.downlink.states_before, in one atomic statement); the row
        after, or None when nothing moved (unknown id, another board's
        command, or the command is already as far or further)."""

    def commands_for_edge(self, edge_id: str, now: float, limit: int) -> list[CommandRow]:
        """Commands still to hand to an edge: queued or at_edge, not expired
        at `now`, for boards whose status last came through `edge_id`;
        oldest first, at most `limit`."""

    def commands(self, device: str | None, limit: int) -> list[CommandRow]:
        """The newest commands (of one board, or all), newest first."""

    def expire_commands(self, now: float, limit: int) -> list[CommandRow]:
        """Move up to `limit` commands whose deadline has passed while they
        were not final to `expired` (error "deadline passed"); the rows after."""

    def close(self) -> None: ...
