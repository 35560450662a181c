"""Rules that remember each series (device, metric): deadband, min_interval,
aggregate.

Rule: time is the samples' `ts`, never a clock. A value whose ts is before
its series' last kept one (a board clock reset, a replay of older readings)
is kept and becomes the series' reference: the safe side, since keeping a
value can cost a little bandwidth but dropping one loses it. Aggregate
windows follow the same idea: a sample in any window other than the open one
closes it. Every change to a series' state marks it dirty, so the chain can
hand exactly the changed entries to whoever persists them. At most
`max_series` series are remembered per rule; past that the one remembered
longest is forgotten (counted in `evicted`; its entry handed out as deleted).
"""

import math
from typing import Any

import msgspec

from edge.rules.base import MAX_METRICS, Rule, is_finite
from edge.rules.spec import AggregateSpec, DeadbandSpec, IntervalSpec, RuleSpec
from edgewire import contract
from edgewire.sample import Metrics

Series = tuple[str, str]  # (device id, metric name)

_encode = msgspec.msgpack.Encoder().encode


class StatefulRule(Rule):
    uses_time = True
    # What `encode_series` writes: (fingerprint, *the series' state).
    _saved: Any = tuple[int]

    def __init__(self, spec: RuleSpec, cache_limit: int, max_series: int) -> None:
        super().__init__(spec, cache_limit)
        self.state: dict[Series, Any] = {}
        self.dirty: set[Series] = set()
        self.max_series = max_series
        self._fingerprint = int(spec.fingerprint, 16)

    def _remember(self, series: Series, value: object) -> None:
        """Start remembering a new series, forgetting the oldest if full."""
        state = self.state
        if len(state) >= self.max_series:
            oldest = next(iter(state))
            del state[oldest]
            self.dirty.add(oldest)
            self.evicted += 1
        state[series] = value
        self.dirty.add(series)

    def encode_series(self, series: Series) -> bytes | None:
        value = self.state.get(series)
        if value is None:
            return None
        return _encode((self._fingerprint, *value))

    def decode_series(self, data: bytes) -> object | None:
        """The state `encode_series` wrote, or None when it is not this
        rule's (another definition) or not readable."""
        try:
            fingerprint, *value = msgspec.msgpack.decode(data, type=self._saved)
        except msgspec.DecodeError:
            return None
        if fingerprint != self._fingerprint or not all(map(math.isfinite, value)):
            return None
        return self._from_saved(value)

    def _from_saved(self, value: list[Any]) -> object:
        return tuple(value)

    def restore(self, series: Series, value: object) -> bool:
        if series in self.state or len(self.state) < self.max_series:
            self.state[series] = value
            return True
        return False

    def take_over(self, old: Rule) -> None:
        super().take_over(old)
        assert isinstance(old, StatefulRule)
        self.state, old.state = old.state, {}
        self.dirty, old.dirty = old.dirty, set()


class DeadbandRule(StatefulRule):
    """A number is kept when it moved more than the band from the series'
    last kept value, or when that one is `max_silence_s` old (a heartbeat).

    The band is `abs`, or `pct` percent of the last kept value: near zero a
    pct band shrinks to nothing, so every change there is kept (use abs for
    signals that cross zero). A band of 0 keeps every change and drops repeats.
    """

    _saved = tuple[int, float, float]  # last kept value, its ts

    def __init__(self, spec: RuleSpec, cache_limit: int, max_series: int) -> None:
        super().__init__(spec, cache_limit, max_series)
        action = spec.action
        assert isinstance(action, DeadbandSpec)
        self._absolute = action.abs or 0.0
        self._relative = (action.pct or 0.0) / 100
        self._silence = action.max_silence_s or math.inf

    def run(self, device_id: str, ts: float, m: Metrics) -> bool:
        match, state = self.match, self.state
        absolute, relative, silence = self._absolute, self._relative, self._silence
        hit = False
        removed = 0
        for name in tuple(m):
            if not match[name]:
                continue
            hit = True
            value = m[name]
            if value is True or value is False:
                continue
            if value - value != 0.0:  # not finite (base.is_finite)
                self.errors += 1  # never a reference: nothing would differ from it
                continue
            series = (device_id, name)
            last = state.get(series)
            if last is None:
                self._remember(series, (float(value), ts))
                continue
            last_value, last_ts = last
            if (
                abs(value - last_value) <= absolute + relative * abs(last_value)
                and last_ts <= ts < last_ts + silence
            ):
                del m[name]
                removed += 1
                continue
            state[series] = (float(value), ts)
            self.dirty.add(series)
        if hit:
            self.seen += 1
        self.dropped += removed
        return removed > 0


class IntervalRule(StatefulRule):
    """A value (number or boolean) is kept when its ts is at least
    `min_interval_s` after the series' last kept one."""

    _saved = tuple[int, float]  # ts of the last kept value

    def __init__(self, spec: RuleSpec, cache_limit: int, max_series: int) -> None:
        super().__init__(spec, cache_limit, max_series)
        assert isinstance(spec.action, IntervalSpec)
        self._interval = spec.action.min_interval_s

    def encode_series(self, series: Series) -> bytes | None:
        last_ts = self.state.get(series)
        return None if last_ts is None else _encode((self._fingerprint, last_ts))

    def _from_saved(self, value: list[Any]) -> object:
        return value[0]

    def run(self, device_id: str, ts: float, m: Metrics) -> bool:
        match, state, interval = self.match, self.state, self._interval
        hit = False
        removed = 0
        for name in tuple(m):
            if not match[name]:
                continue
            hit = True
            series = (device_id, name)
            last_ts = state.get(series)
            if last_ts is None:
                self._remember(series, ts)
            elif last_ts <= ts < last_ts + interval:
                del m[name]
                removed += 1
            else:
                state[series] = ts
                self.dirty.add(series)
        if hit:
            self.seen += 1
        self.dropped += removed
        return removed > 0


# An open window: [index (ts // window_s), count, min, max, sum, first, last].
_INDEX, _COUNT, _MIN, _MAX, _SUM, _FIRST, _LAST = range(7)
_STAT_OF = {
    "min": lambda w: w[_MIN],
    "max": lambda w: w[_MAX],
    "mean": lambda w: w[_SUM] / w[_COUNT],
    "sum": lambda w: w[_SUM],
    "count": lambda w: w[_COUNT],
    "first": lambda w: w[_FIRST],
    "last": lambda w: w[_LAST],
}


class AggregateRule(StatefulRule):
    """Numbers are removed from their sample and folded into their series'
    window (aligned to multiples of `window_s` of ts). The first sample of
    the series in another window gets the closed window's stats, as
    `<metric>_<stat>`, and starts the next one with its own value. No timer:
    a window is reported only when its series sends again.

    A stat whose name would break the contract, would overwrite a metric of
    the sample, or would not fit in MAX_METRICS is left out (an error).
    """

    _saved = tuple[int, float, int, float, float, float, float, float]

    def __init__(self, spec: RuleSpec, cache_limit: int, max_series: int) -> None:
        super().__init__(spec, cache_limit, max_series)
        action = spec.action
        assert isinstance(action, AggregateSpec)
        self._width = action.window_s
        self._stats = action.stats
        # metric name -> [(stat, produced name or None when invalid)]
        self._produced: dict[str, list[tuple[str, str | None]]] = {}
        self._cache_limit = cache_limit

    def _from_saved(self, value: list[Any]) -> object:
        return value if value[_COUNT] >= 1 else None

    def run(self, device_id: str, ts: float, m: Metrics) -> bool:
        match, state, dirty = self.match, self.state, self.dirty
        index = ts // self._width
        hit = False
        folded = 0
        for name in tuple(m):
            if not match[name]:
                continue
            hit = True
            value = m[name]
            if value is True or value is False:
                continue
            if value - value != 0.0:  # not finite (base.is_finite)
                self.errors += 1
                continue
            value = float(value)
            del m[name]
            folded += 1
            series = (device_id, name)
            window = state.get(series)
            if window is None:
                self._remember(series, [index, 1, value, value, value, value, value])
                continue
            if window[_INDEX] == index:
                window[_COUNT] += 1
                window[_MIN] = min(window[_MIN], value)
                window[_MAX] = max(window[_MAX], value)
                window[_SUM] += value
                window[_LAST] = value
            else:
                self._report(name, window, m)
                state[series] = [index, 1, value, value, value, value, value]
            dirty.add(series)
        if hit:
            self.seen += 1
        self.dropped += folded
        return folded > 0

    def _report(self, name: str, window: list[Any], m: Metrics) -> None:
        self.emitted += 1
        for stat, produced in self._names(name):
            value = float(_STAT_OF[stat](window))
            if produced is None or produced in m or len(m) >= MAX_METRICS or not is_finite(value):
                self.errors += 1
                continue
            m[produced] = value

    def _names(self, name: str) -> list[tuple[str, str | None]]:
        names = self._produced.get(name)
        if names is None:
            if len(self._produced) >= self._cache_limit:
                self._produced.clear()
            names = self._produced[name] = [
                (stat, produced if contract.is_metric_name(produced := f"{name}_{stat}") else None)
                for stat in self._stats
            ]
        return names
