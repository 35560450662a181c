"""Rules that look at one sample only: range, scale/convert, rename.

A rule iterates over a snapshot of the names (`tuple(m)`) because it may
remove or add metrics of the dict it walks.
"""

from edge.rules.base import MAX_METRICS, Rule
from edge.rules.spec import ConvertSpec, RangeSpec, RenameSpec, RuleSpec, ScaleSpec
from edgewire.sample import Metrics


class RangeRule(Rule):
    """Numbers outside [min, max] are removed, or kept and the sample flagged.

    A NaN is in no range. The flag is the boolean metric `flag` set to true;
    when the sample already has a non-boolean metric of that name, it is
    left alone and the rule counts an error instead.
    """

    def __init__(self, spec: RuleSpec, cache_limit: int) -> None:
        super().__init__(spec, cache_limit)
        assert isinstance(spec.action, RangeSpec)
        self._low = -float("inf") if spec.action.min is None else spec.action.min
        self._high = float("inf") if spec.action.max is None else spec.action.max
        self._flag = spec.action.flag if spec.action.action == "flag" else None

    def run(self, device_id: str, ts: float, m: Metrics) -> bool:
        match, low, high = self.match, self._low, self._high
        hit = False
        outside = 0
        for name in tuple(m):
            if not match[name]:
                continue
            hit = True
            value = m[name]
            if value is True or value is False or low <= value <= high:
                continue
            outside += 1
            if self._flag is None:
                del m[name]
        if hit:
            self.seen += 1
        if not outside:
            return False
        if self._flag is None:
            self.dropped += outside
            return True
        self.flagged += outside
        present = m.get(self._flag)
        if (present is None and len(m) < MAX_METRICS) or present is True or present is False:
            m[self._flag] = True
            return True
        self.errors += 1
        return False


class LinearRule(Rule):
    """Numbers become `value * factor + offset` (scale, and convert by name).

    A result that is not finite (an overflow) is left out, counted as an error.
    """

    def __init__(self, spec: RuleSpec, cache_limit: int) -> None:
        super().__init__(spec, cache_limit)
        assert isinstance(spec.action, ScaleSpec | ConvertSpec)
        self._factor = spec.action.factor
        self._offset = spec.action.offset

    def run(self, device_id: str, ts: float, m: Metrics) -> bool:
        match, factor, offset = self.match, self._factor, self._offset
        changed = 0
        hit = False
        for name in tuple(m):
            if not match[name]:
                continue
            hit = True
            value = m[name]
            if value is True or value is False:
                continue
            result = value * factor + offset
            if result - result == 0.0:  # finite (base.is_finite)
                m[name] = result
                changed += 1
            else:
                del m[name]
                self.errors += 1
                changed += 1
        if hit:
            self.seen += 1
        self.changed += changed
        return changed > 0


class RenameRule(Rule):
    """Matching metrics (numbers and booleans) take the name `to`.

    A rename never overwrites: when the sample already has a metric named
    `to` (sent by the board, made by an earlier rule, or renamed here from
    an earlier matching name in the sample's order), the metric keeps its
    own name and the rule counts an error. Nothing is lost, and which value
    a key carries never depends on an overwrite order.
    """

    def __init__(self, spec: RuleSpec, cache_limit: int) -> None:
        super().__init__(spec, cache_limit)
        assert isinstance(spec.action, RenameSpec)
        self._to = spec.action.to

    def run(self, device_id: str, ts: float, m: Metrics) -> bool:
        match, to = self.match, self._to
        changed = False
        hit = False
        for name in tuple(m):
            if not match[name]:
                continue
            hit = True
            if name == to:
                continue
            if to in m:
                self.errors += 1
                continue
            m[to] = m.pop(name)
            self.changed += 1
            changed = True
        if hit:
            self.seen += 1
        return changed
