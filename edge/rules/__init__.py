"""The edge's data-reduction rules: the `[[rules]]` of its config, applied to
each sample before it is buffered.

Sans-IO: no clock (time is the samples' `ts`), no sockets, no disk. The
caller persists what `take_changed_state` hands out and gives it back to
`restore_state` after a restart.

    chain = parse_rules(config["rules"])        # RuleError names rule and field
    sample = chain.apply(sample)                 # None: nothing left to keep
    chain.counters()                             # per rule, for /metrics
    store(chain.take_changed_state())            # {key: bytes, or None to delete}
    new_chain.carry_over(chain)                  # on a config reload

A rule has `name` (default "rule N", N counting from 1), `devices` and
`metrics` (fnmatch globs, one or a list, default "*") and exactly one action:

- `range = {min, max, action = "drop" | "flag", flag = "out_of_range"}`
- `deadband = {abs | pct, max_silence_s}`
- `min_interval_s = 10`
- `aggregate = {window_s, stats = [min, max, mean, sum, count, first, last]}`
- `scale = {factor, offset}`; `convert = "<name>"` from edge/rules/units.py
- `rename = "<new name>"` (never overwrites a metric; see RenameRule)

range, deadband, aggregate, scale and convert pass boolean metrics untouched;
min_interval_s and rename handle them like numbers.
"""

from typing import Any

from edge.rules.base import RuleCounters
from edge.rules.chain import DEFAULT_CACHE_LIMIT, DEFAULT_MAX_SERIES, RuleChain
from edge.rules.spec import RuleError, RuleSpec, parse_specs
from edge.rules.units import CONVERSIONS

__all__ = ["CONVERSIONS", "RuleChain", "RuleCounters", "RuleError", "RuleSpec", "parse_rules"]


def parse_rules(
    raw: list[dict[str, Any]],
    *,
    max_series: int = DEFAULT_MAX_SERIES,
    cache_limit: int = DEFAULT_CACHE_LIMIT,
) -> RuleChain:
    """The chain of the `[[rules]]` tables `raw`; RuleError if any is wrong.

    `max_series` bounds the series each stateful rule remembers and
    `cache_limit` the device ids and metric names each remembers matching.
    """
    return RuleChain(parse_specs(raw), max_series=max_series, cache_limit=cache_limit)
