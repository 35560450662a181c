"""The sample: one reading of one board, the unit everything downstream moves.

`(device_id, boot, seq)` identifies a sample everywhere; a store that sees the
same key twice keeps the first.
"""

import math
from typing import TypeAlias

import msgspec

from edgewire import contract

MetricValue: TypeAlias = float | bool
Metrics: TypeAlias = dict[str, MetricValue]
SampleKey: TypeAlias = tuple[str, int, int]


class Sample(msgspec.Struct, frozen=True, gc=False):
    device_id: str
    boot: int
    seq: int
    ts: float
    m: Metrics
    # True when `ts` is the edge's receive time because the board's was
    # missing or implausible.
    ts_from_edge: bool = False

    @property
    def key(self) -> SampleKey:
        return (self.device_id, self.boot, self.seq)


class StoredSample(msgspec.Struct, frozen=True, gc=False):
    """A sample as the cloud committed it; `id` orders commits (event id)."""

    id: int
    sample: Sample


def contract_problem(sample: Sample) -> str | None:
    """What makes `sample` break the contract (§2), or None.

    The edge validates board payloads with this and more; the cloud checks
    what an edge sends with this, so a faulty edge cannot store junk.
    """
    if not contract.is_device_id(sample.device_id):
        return f"device id {sample.device_id[:80]!r}"
    if not (0 <= sample.boot <= contract.MAX_COUNTER and 0 <= sample.seq <= contract.MAX_COUNTER):
        return "boot or seq out of range"
    if not math.isfinite(sample.ts):
        return "ts is not finite"
    if not 1 <= len(sample.m) <= contract.MAX_METRICS:
        return f"{len(sample.m)} metrics"
    for name, value in sample.m.items():
        if not contract.is_metric_name(name):
            return f"metric name {name[:40]!r}"
        if not isinstance(value, bool) and not math.isfinite(value):
            return f"metric {name!r} is not finite"
    return None
