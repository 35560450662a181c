"""What every compiled rule is: a matcher, counters, and `run` over one sample.

Rule: `run` only changes, removes or adds metrics of the one sample it is
given (never its key), and it adds a metric only under a name and with a
value the contract allows; anything else it would produce is left out and
counted in `errors`. It never raises for a metric value of the declared
types; the chain counts anything stranger as an error of the rule.
"""

from typing import ClassVar

import msgspec

from edge.rules.matching import GlobCache, glob_matcher
from edge.rules.spec import RuleSpec
from edgewire import contract
from edgewire.sample import Metrics

MAX_METRICS = contract.MAX_METRICS


class RuleCounters(msgspec.Struct, frozen=True, kw_only=True):
    """How much one rule did since the chain started (plain, monotonic ints)."""

    rule: str
    # Samples with at least one metric the rule matched.
    samples_seen: int
    # Metrics removed from their sample: out of range, inside the deadband,
    # too soon after the last kept value, or folded into a window.
    metrics_dropped: int
    # Metrics given a new value (scale, convert) or a new name (rename).
    metrics_changed: int
    # Out-of-range values kept by a `flag` range rule.
    metrics_flagged: int
    # Closed aggregate windows reported on a sample.
    windows_emitted: int
    # A metric the rule would have produced against the contract (left out),
    # a rename or stat that would have overwritten a metric, a value or
    # timestamp a rule cannot use (left as it was).
    errors: int
    # Series whose state was forgotten to stay within `max_series`.
    series_evicted: int


class Rule:
    # Whether the rule reads sample timestamps: a sample with a non-finite
    # ts passes it untouched (counted as an error).
    uses_time: ClassVar[bool] = False

    def __init__(self, spec: RuleSpec, cache_limit: int) -> None:
        self.spec = spec
        self.name = spec.name
        self.match = GlobCache(spec.metrics, cache_limit)
        self._device_match = glob_matcher(spec.devices).match
        self.seen = 0
        self.dropped = 0
        self.changed = 0
        self.flagged = 0
        self.emitted = 0
        self.errors = 0
        self.evicted = 0

    def matches_device(self, device_id: str) -> bool:
        return self._device_match(device_id) is not None

    def run(self, device_id: str, ts: float, m: Metrics) -> bool:
        """Apply the rule to the metrics `m` of one sample, in place.

        True when `m` changed."""
        raise NotImplementedError

    def counters(self) -> RuleCounters:
        return RuleCounters(
            rule=self.name,
            samples_seen=self.seen,
            metrics_dropped=self.dropped,
            metrics_changed=self.changed,
            metrics_flagged=self.flagged,
            windows_emitted=self.emitted,
            errors=self.errors,
            series_evicted=self.evicted,
        )

    def take_over(self, old: "Rule") -> None:
        """Continue from `old`, an identical rule of the chain this one replaces."""
        self.seen, self.dropped, self.changed = old.seen, old.dropped, old.changed
        self.flagged, self.emitted, self.errors = old.flagged, old.emitted, old.errors
        self.evicted = old.evicted


def is_finite(value: float) -> bool:
    # inf - inf and nan - nan are nan, which equals nothing; faster than
    # math.isfinite, and true for ints of any size. The per-metric loops
    # write `value - value == 0.0` inline: a call costs as much again.
    return value - value == 0.0
