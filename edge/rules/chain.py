"""The chain: every rule, in order, over each sample, and the state they keep.

Rule: a sample leaves `apply` with its own key `(device_id, boot, seq)` or
not at all (when no metric is left), never as two samples or under another
key, and `apply` never raises: a value no rule can handle is left as it was
and counted as an error of the rule that met it.

State entries are keyed `rules/<rule name>/<device id>/<metric>` ("%" and "/"
inside a part escaped as %25 and %2F), so a rule whose definition changed
writes over the entries of its earlier self; each value starts with the
fingerprint of the rule's definition, and an entry with another fingerprint,
or of a rule no longer configured, is not loaded but handed back as a
deletion by the next `take_changed_state`.
"""

from collections.abc import Mapping, Sequence

from edge.rules.base import Rule, RuleCounters
from edge.rules.spec import (
    AggregateSpec,
    ConvertSpec,
    DeadbandSpec,
    IntervalSpec,
    RangeSpec,
    RenameSpec,
    RuleSpec,
    ScaleSpec,
)
from edge.rules.stateful import AggregateRule, DeadbandRule, IntervalRule, Series, StatefulRule
from edge.rules.stateless import LinearRule, RangeRule, RenameRule
from edgewire.sample import Metrics, Sample

DEFAULT_MAX_SERIES = 100_000
DEFAULT_CACHE_LIMIT = 10_000
STATE_PREFIX = "rules"

# What a Sample holding values outside its declared types can make a rule
# raise (a str value, an int too large for a float, an unhashable id).
_JUNK = (TypeError, ValueError, ArithmeticError)

_STATELESS: dict[type, type[Rule]] = {
    RangeSpec: RangeRule,
    ScaleSpec: LinearRule,
    ConvertSpec: LinearRule,
    RenameSpec: RenameRule,
}
_STATEFUL: dict[type, type[StatefulRule]] = {
    DeadbandSpec: DeadbandRule,
    IntervalSpec: IntervalRule,
    AggregateSpec: AggregateRule,
}


class _RulesByDevice(dict[str, tuple[Rule, ...]]):
    """device id -> the rules whose device globs match it, learnt on a miss;
    forgotten whole past `limit` ids."""

    def __init__(self, rules: tuple[Rule, ...], limit: int) -> None:
        super().__init__()
        self._rules = rules
        self._limit = limit

    def __missing__(self, device_id: str) -> tuple[Rule, ...]:
        matching = tuple(rule for rule in self._rules if rule.matches_device(device_id))
        if len(self) >= self._limit:
            self.clear()
        self[device_id] = matching
        return matching


class RuleChain:
    def __init__(
        self,
        specs: Sequence[RuleSpec],
        *,
        max_series: int = DEFAULT_MAX_SERIES,
        cache_limit: int = DEFAULT_CACHE_LIMIT,
    ) -> None:
        self.specs = tuple(specs)
        rules: list[Rule] = []
        for spec in self.specs:
            kind = type(spec.action)
            if kind in _STATEFUL:
                rules.append(_STATEFUL[kind](spec, cache_limit, max_series))
            else:
                rules.append(_STATELESS[kind](spec, cache_limit))
        self._rules = tuple(rules)
        self._by_name = {rule.name: rule for rule in self._rules}
        self._stateful = tuple(rule for rule in self._rules if isinstance(rule, StatefulRule))
        self._for_device = _RulesByDevice(self._rules, cache_limit)
        # State keys to delete unless a rule holds that series again by the
        # next take_changed_state: key -> (rule name, series).
        self._stale: dict[str, tuple[str, Series]] = {}

    def __len__(self) -> int:
        return len(self._rules)

    def apply(self, sample: Sample) -> Sample | None:
        """`sample` after every rule, or None when no metric is left."""
        if not self._rules:
            return sample
        try:
            device_id = sample.device_id
            rules = self._for_device[device_id]
            if not rules:
                return sample
            ts = sample.ts
            if ts.__class__ is not float:
                ts = float(ts)  # state keeps floats only
            m = dict(sample.m)
            if ts - ts != 0.0:  # not finite (base.is_finite)
                rules = tuple(rule for rule in rules if self._can_run_untimed(rule, m))
        except _JUNK:
            return sample
        changed = False
        for rule in rules:
            try:
                if rule.run(device_id, ts, m):
                    changed = True
            except _JUNK:
                # Left part-done: it may only have changed or removed
                # metrics of this sample, which is all a rule may do.
                rule.errors += 1
                changed = True
            if not m:
                return None
        if not changed:
            return sample
        return Sample(device_id, sample.boot, sample.seq, sample.ts, m, sample.ts_from_edge)

    @staticmethod
    def _can_run_untimed(rule: Rule, m: Metrics) -> bool:
        if not rule.uses_time:
            return True
        if any(rule.match[name] for name in m):
            rule.errors += 1
        return False

    def counters(self) -> list[RuleCounters]:
        return [rule.counters() for rule in self._rules]

    # -- state -------------------------------------------------------------

    def take_changed_state(self) -> dict[str, bytes | None]:
        """State entries changed since the last call: bytes to store, or
        None to delete."""
        changed: dict[str, bytes | None] = {}
        for key, (name, series) in self._stale.items():
            rule = self._by_name.get(name)
            changed[key] = rule.encode_series(series) if isinstance(rule, StatefulRule) else None
        self._stale.clear()
        for rule in self._stateful:
            for series in rule.dirty:
                changed[state_key(rule.name, series)] = rule.encode_series(series)
            rule.dirty.clear()
        return changed

    def restore_state(self, entries: Mapping[str, bytes]) -> None:
        """Load entries an earlier chain handed out. Keys without the
        `rules/` prefix are not ours and are ignored; ours that no rule can
        use are deleted by the next `take_changed_state`."""
        for key, data in entries.items():
            parsed = parse_state_key(key)
            if parsed is None:
                continue
            name, series = parsed
            rule = self._by_name.get(name)
            if isinstance(rule, StatefulRule) and isinstance(data, bytes):
                value = rule.decode_series(data)
                if value is not None and rule.restore(series, value):
                    continue
            self._stale[key] = (name, series)

    def carry_over(self, old: "RuleChain") -> None:
        """Continue from `old` after a config reload: each rule with the name
        and definition of one in `old` takes over its state and counters
        (`old` is left without them); the state of the others is deleted."""
        for key, item in old._stale.items():
            self._stale.setdefault(key, item)
        old._stale = {}
        for previous in old._rules:
            rule = self._by_name.get(previous.name)
            if (
                rule is not None
                and type(rule) is type(previous)
                and rule.spec.fingerprint == previous.spec.fingerprint
            ):
                rule.take_over(previous)
            elif isinstance(previous, StatefulRule):
                for series in (*previous.state, *previous.dirty):
                    self._stale[state_key(previous.name, series)] = (previous.name, series)


def state_key(rule_name: str, series: Series) -> str:
    return "/".join((STATE_PREFIX, _escape(rule_name), _escape(series[0]), _escape(series[1])))


def parse_state_key(key: str) -> tuple[str, Series] | None:
    parts = key.split("/") if isinstance(key, str) else []
    if len(parts) != 4 or parts[0] != STATE_PREFIX:
        return None
    return _unescape(parts[1]), (_unescape(parts[2]), _unescape(parts[3]))


def _escape(part: str) -> str:
    return part.replace("%", "%25").replace("/", "%2F")


def _unescape(part: str) -> str:
    return part.replace("%2F", "/").replace("%25", "%")
