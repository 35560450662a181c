"""The edge's reduction rules (edge/rules), without an edge: samples in,
samples (or nothing) out, state handed out and taken back."""

import ast
import math
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.rules import CONVERSIONS, RuleChain, RuleCounters, RuleError, parse_rules
from edgewire import contract
from edgewire.sample import Metrics, Sample, contract_problem
from tests.test_layering import IO_MODULES

ROOT = Path(__file__).resolve().parent.parent
T0 = 1_795_000_200.0  # a multiple of 600: windows of 10, 20, 60 s start here

# A reading: (ts offset from T0, metrics); a result: metrics, or None for dropped.
Reading = tuple[float, Metrics]
Result = Metrics | None


def sample(ts: float, m: Metrics, device: str = "gh-1", seq: int = 0) -> Sample:
    return Sample(device, 1, seq, T0 + ts, dict(m))


def run(chain: RuleChain, readings: list[Reading], device: str = "gh-1") -> list[Result]:
    results: list[Result] = []
    for seq, (ts, m) in enumerate(readings):
        out = chain.apply(sample(ts, m, device, seq))
        assert out is None or out.key == (device, 1, seq)
        results.append(None if out is None else out.m)
    return results


def counters(chain: RuleChain, index: int = 0) -> RuleCounters:
    return chain.counters()[index]


Case = tuple[str, list[dict[str, Any]], list[Reading], list[Result]]


def rounded(results: list[Result]) -> list[Result]:
    """Floats to 6 decimals (f_to_c and friends are not exact); booleans as they are."""
    return [
        None if m is None
        else {k: v if isinstance(v, bool) else round(v, 6) for k, v in m.items()}
        for m in results
    ]  # fmt: skip


def check(case: Case) -> RuleChain:
    _, rules, readings, expected = case
    chain = parse_rules(rules)
    assert rounded(run(chain, readings)) == rounded(expected)
    return chain


# -- each rule kind ------------------------------------------------------------

RANGE: list[Case] = [
    ("bounds are inclusive; outside is dropped",
     [{"range": {"min": -40, "max": 85}}],
     [(0, {"t": -40.0}), (1, {"t": 85.0}), (2, {"t": -40.5, "rh": 50.0}), (3, {"t": 85.1})],
     [{"t": -40.0}, {"t": 85.0}, {"rh": 50.0}, None]),
    ("min alone",
     [{"range": {"min": 0}}],
     [(0, {"t": -1.0}), (1, {"t": 1e9})],
     [None, {"t": 1e9}]),
    ("flag keeps the value and marks the sample",
     [{"metrics": "t*", "range": {"max": 85, "action": "flag"}}],
     [(0, {"t": 90.0, "t2": 91.0}), (1, {"t": 80.0})],
     [{"t": 90.0, "t2": 91.0, "out_of_range": True}, {"t": 80.0}]),
    ("flag under its own name, already true on the sample",
     [{"range": {"max": 85, "action": "flag", "flag": "hot"}}],
     [(0, {"t": 90.0, "hot": True})],
     [{"t": 90.0, "hot": True}]),
    ("booleans pass",
     [{"range": {"min": 0, "max": 1}}],
     [(0, {"door": True, "t": 5.0})],
     [{"door": True}]),
]  # fmt: skip


@pytest.mark.parametrize("case", RANGE, ids=[c[0] for c in RANGE])
def test_range(case: Case) -> None:
    check(case)


def test_range_flag_never_overwrites_a_number_of_the_same_name() -> None:
    chain = parse_rules([{"metrics": "t", "range": {"max": 1, "action": "flag", "flag": "f"}}])
    assert run(chain, [(0, {"t": 5.0, "f": 3.0})]) == [{"t": 5.0, "f": 3.0}]
    assert counters(chain).metrics_flagged == 1
    assert counters(chain).errors == 1


DEADBAND: list[Case] = [
    ("abs: kept when it moves more than the band from the last kept",
     [{"deadband": {"abs": 0.2}}],
     [(0, {"t": 20.0}), (1, {"t": 20.1}), (2, {"t": 20.25}), (3, {"t": 20.3}), (4, {"t": 20.0})],
     [{"t": 20.0}, None, {"t": 20.25}, None, {"t": 20.0}]),
    ("abs: exactly the band is inside it",
     [{"deadband": {"abs": 0.5}}],
     [(0, {"t": 1.0}), (1, {"t": 1.5}), (2, {"t": 0.5})],
     [{"t": 1.0}, None, None]),
    ("abs 0 drops repeats only",
     [{"deadband": {"abs": 0}}],
     [(0, {"t": 1.0}), (1, {"t": 1.0}), (2, {"t": 1.001}), (3, {"t": 1.001})],
     [{"t": 1.0}, None, {"t": 1.001}, None]),
    ("heartbeat: kept anyway once the last kept is max_silence_s old",
     [{"deadband": {"abs": 1, "max_silence_s": 60}}],
     [(0, {"t": 20.0}), (30, {"t": 20.0}), (59.9, {"t": 20.0}), (60, {"t": 20.0}),
      (90, {"t": 20.0}), (120, {"t": 20.0})],
     [{"t": 20.0}, None, None, {"t": 20.0}, None, {"t": 20.0}]),
    ("a kept change restarts the silence",
     [{"deadband": {"abs": 1, "max_silence_s": 60}}],
     [(0, {"t": 20.0}), (50, {"t": 25.0}), (100, {"t": 25.0}), (110, {"t": 25.0})],
     [{"t": 20.0}, {"t": 25.0}, None, {"t": 25.0}]),
    ("pct of the last kept value",
     [{"deadband": {"pct": 1}}],
     [(0, {"p": 100.0}), (1, {"p": 100.9}), (2, {"p": 98.9}), (3, {"p": 99.8})],
     [{"p": 100.0}, None, {"p": 98.9}, None]),
    ("pct around zero: the band shrinks to nothing, every change is kept",
     [{"deadband": {"pct": 10}}],
     [(0, {"p": 0.0}), (1, {"p": 0.0}), (2, {"p": 0.001}), (3, {"p": 0.00105}),
      (4, {"p": 0.0012}), (5, {"p": -0.001}), (6, {"p": 0.0})],
     [{"p": 0.0}, None, {"p": 0.001}, None, {"p": 0.0012}, {"p": -0.001}, {"p": 0.0}]),
    ("an earlier ts (clock reset, replay) is kept and becomes the reference",
     [{"deadband": {"abs": 1}}],
     [(100, {"t": 20.0}), (50, {"t": 20.1}), (51, {"t": 20.2}), (101, {"t": 20.3})],
     [{"t": 20.0}, {"t": 20.1}, None, None]),
    ("booleans pass; each metric is its own series",
     [{"deadband": {"abs": 1}}],
     [(0, {"a": 1.0, "b": 5.0, "door": True}), (1, {"a": 1.5, "b": 7.0, "door": True})],
     [{"a": 1.0, "b": 5.0, "door": True}, {"b": 7.0, "door": True}]),
]  # fmt: skip


@pytest.mark.parametrize("case", DEADBAND, ids=[c[0] for c in DEADBAND])
def test_deadband(case: Case) -> None:
    check(case)


def test_deadband_series_are_per_device() -> None:
    chain = parse_rules([{"deadband": {"abs": 1}}])
    assert run(chain, [(0, {"t": 1.0})], device="a") == [{"t": 1.0}]
    assert run(chain, [(1, {"t": 1.0})], device="b") == [{"t": 1.0}]
    assert run(chain, [(2, {"t": 1.0})], device="a") == [None]


INTERVAL: list[Case] = [
    ("kept at least min_interval_s after the last kept",
     [{"min_interval_s": 10}],
     [(0, {"rh": 1.0}), (5, {"rh": 2.0}), (10, {"rh": 3.0}), (19.9, {"rh": 4.0}),
      (25, {"rh": 5.0})],
     [{"rh": 1.0}, None, {"rh": 3.0}, None, {"rh": 5.0}]),
    ("booleans too, each series on its own",
     [{"metrics": ["door", "rh"], "min_interval_s": 10}],
     [(0, {"door": True}), (3, {"door": False, "rh": 1.0}), (11, {"door": True, "rh": 2.0}),
      (14, {"door": False, "rh": 3.0})],
     [{"door": True}, {"rh": 1.0}, {"door": True}, {"rh": 3.0}]),
    ("an earlier ts restarts the series",
     [{"min_interval_s": 10}],
     [(100, {"rh": 1.0}), (0, {"rh": 2.0}), (5, {"rh": 3.0}), (10, {"rh": 4.0})],
     [{"rh": 1.0}, {"rh": 2.0}, None, {"rh": 4.0}]),
]  # fmt: skip


@pytest.mark.parametrize("case", INTERVAL, ids=[c[0] for c in INTERVAL])
def test_min_interval(case: Case) -> None:
    check(case)


STATS4 = ["min", "mean", "max", "count"]
AGGREGATE: list[Case] = [
    ("a window is reported on the first sample after it",
     [{"metrics": "light", "aggregate": {"window_s": 60, "stats": STATS4}}],
     [(0, {"light": 1.0}), (30, {"light": 3.0, "t": 20.0}), (59.99, {"light": 2.0}),
      (60, {"light": 9.0})],
     [None, {"t": 20.0}, None,
      {"light_min": 1.0, "light_mean": 2.0, "light_max": 3.0, "light_count": 3.0}]),
    ("skipped windows report nothing; the open one goes with the next sample",
     [{"metrics": "light", "aggregate": {"window_s": 60, "stats": STATS4}}],
     [(0, {"light": 1.0}), (10, {"light": 2.0}), (500, {"light": 7.0}), (530, {"light": 9.0}),
      (9000, {"light": 0.0})],
     [None, None, {"light_min": 1.0, "light_mean": 1.5, "light_max": 2.0, "light_count": 2.0},
      None, {"light_min": 7.0, "light_mean": 8.0, "light_max": 9.0, "light_count": 2.0}]),
    ("sum, first, last; the default stats",
     [{"metrics": "a", "aggregate": {"window_s": 10, "stats": ["sum", "first", "last"]}},
      {"metrics": "b", "aggregate": {"window_s": 10}}],
     [(0, {"a": 1.0, "b": 4.0}), (5, {"a": 2.0, "b": 6.0}), (10, {"a": 0.0, "b": 0.0})],
     [None, None, {"a_sum": 3.0, "a_first": 1.0, "a_last": 2.0,
                   "b_min": 4.0, "b_mean": 5.0, "b_max": 6.0, "b_count": 2.0}]),
    ("booleans pass; an earlier window closes the open one",
     [{"aggregate": {"window_s": 60, "stats": ["count"]}}],
     [(120, {"x": 1.0, "door": True}), (0, {"x": 2.0}), (1, {"x": 3.0}), (200, {"x": 4.0})],
     [{"door": True}, {"x_count": 1.0}, None, {"x_count": 2.0}]),
    ("a stat never overwrites a metric of the sample",
     [{"metrics": "light", "aggregate": {"window_s": 60, "stats": ["min", "max"]}}],
     [(0, {"light": 1.0}), (60, {"light": 2.0, "light_min": -5.0})],
     [None, {"light_min": -5.0, "light_max": 1.0}]),
]  # fmt: skip


@pytest.mark.parametrize("case", AGGREGATE, ids=[c[0] for c in AGGREGATE])
def test_aggregate(case: Case) -> None:
    check(case)


def test_aggregate_counts_windows_and_leaves_out_stat_names_too_long() -> None:
    long_name = "l" * 27  # + "_min" fits 32 characters; + "_count" does not
    chain = parse_rules([{"metrics": "l*", "aggregate": {"window_s": 60}}])
    out = run(chain, [(0, {long_name: 1.0}), (60, {long_name: 2.0})])
    assert out == [None, {f"{long_name}_min": 1.0, f"{long_name}_mean": 1.0,
                          f"{long_name}_max": 1.0}]  # fmt: skip
    assert counters(chain).windows_emitted == 1
    assert counters(chain).errors == 1
    assert counters(chain).metrics_dropped == 2, "folded values leave their sample"


def test_aggregate_stats_stay_within_max_metrics() -> None:
    chain = parse_rules([{"metrics": "a", "aggregate": {"window_s": 60}}])
    full = {f"m{i}": 0.0 for i in range(contract.MAX_METRICS - 2)}
    out = run(chain, [(0, {"a": 1.0}), (60, {"a": 2.0, **full})])[1]
    assert out is not None
    assert len(out) == contract.MAX_METRICS
    assert counters(chain).errors == 2


LINEAR: list[Case] = [
    ("scale", [{"metrics": "t", "scale": {"factor": 0.5, "offset": -1}}],
     [(0, {"t": 10.0, "u": 10.0, "door": False})], [{"t": 4.0, "u": 10.0, "door": False}]),
    ("scale by factor alone", [{"scale": {"factor": 2}}], [(0, {"t": 3.0})], [{"t": 6.0}]),
    ("booleans pass", [{"scale": {"factor": 2}}], [(0, {"door": True})], [{"door": True}]),
    ("f_to_c", [{"convert": "f_to_c"}], [(0, {"t": 212.0}), (1, {"t": 32.0})],
     [{"t": 100.0}, {"t": 0.0}]),
    ("c_to_f", [{"convert": "c_to_f"}], [(0, {"t": -40.0})], [{"t": -40.0}]),
    ("pa_to_hpa", [{"convert": "pa_to_hpa"}], [(0, {"p": 101_325.0})], [{"p": 1013.25}]),
    ("k_to_c", [{"convert": "k_to_c"}], [(0, {"t": 273.15})], [{"t": 0.0}]),
    ("mps_to_kmh", [{"convert": "mps_to_kmh"}], [(0, {"v": 10.0})], [{"v": 36.0}]),
]  # fmt: skip


@pytest.mark.parametrize("case", LINEAR, ids=[c[0] for c in LINEAR])
def test_scale_and_convert(case: Case) -> None:
    check(case)


@pytest.mark.parametrize("unit", sorted(CONVERSIONS))
def test_every_conversion_has_its_inverse(unit: str) -> None:
    source, target = unit.split("_to_")
    back = parse_rules([{"convert": unit}, {"convert": f"{target}_to_{source}"}])
    out = back.apply(sample(0, {"x": 12.5}))
    assert out is not None
    assert out.m["x"] == pytest.approx(12.5)


def test_a_scale_that_overflows_leaves_the_metric_out() -> None:
    chain = parse_rules([{"scale": {"factor": 1e300}}])
    assert run(chain, [(0, {"a": 1e10, "b": 1.0})]) == [{"b": 1e300}]
    assert counters(chain).errors == 1


RENAME: list[Case] = [
    ("numbers and booleans", [{"metrics": ["temp_f", "door*"], "rename": "x"}],
     [(0, {"temp_f": 1.0}), (1, {"door_open": True})], [{"x": 1.0}, {"x": True}]),
    ("never overwrites: a name already on the sample keeps its value",
     [{"metrics": "temp_f", "rename": "temp_c"}],
     [(0, {"temp_f": 70.0, "temp_c": 21.0})], [{"temp_f": 70.0, "temp_c": 21.0}]),
    ("two matching: the first in the sample's order is renamed",
     [{"metrics": "t*", "rename": "temp"}],
     [(0, {"t2": 2.0, "t1": 1.0})], [{"temp": 2.0, "t1": 1.0}]),
    ("to its own name: nothing to do",
     [{"metrics": "t*", "rename": "t"}], [(0, {"t": 1.0})], [{"t": 1.0}]),
]  # fmt: skip


@pytest.mark.parametrize("case", RENAME, ids=[c[0] for c in RENAME])
def test_rename(case: Case) -> None:
    check(case)


def test_rename_collisions_are_counted() -> None:
    chain = parse_rules([{"metrics": "t*", "rename": "temp"}])
    run(chain, [(0, {"t1": 1.0, "t2": 2.0, "t3": 3.0})])
    assert counters(chain).metrics_changed == 1
    assert counters(chain).errors == 2


# -- the chain ----------------------------------------------------------------

CHAIN: list[Case] = [
    ("each rule sees the one before: convert, rename, then deadband in °C",
     [{"metrics": "temp_f", "convert": "f_to_c"},
      {"metrics": "temp_f", "rename": "temp_c"},
      {"metrics": "temp_c", "deadband": {"abs": 0.5}}],
     [(0, {"temp_f": 68.0}), (1, {"temp_f": 68.5}), (2, {"temp_f": 69.0})],
     [{"temp_c": 20.0}, None, {"temp_c": 20.555556}]),
    ("the same rules in another order: the deadband works in °F",
     [{"metrics": "temp_f", "deadband": {"abs": 0.5}},
      {"metrics": "temp_f", "convert": "f_to_c"},
      {"metrics": "temp_f", "rename": "temp_c"}],
     [(0, {"temp_f": 68.0}), (1, {"temp_f": 68.5}), (2, {"temp_f": 69.0})],
     [{"temp_c": 20.0}, None, {"temp_c": 20.555556}]),
    ("a range after a scale checks the scaled value",
     [{"scale": {"factor": 10}}, {"range": {"max": 100}}],
     [(0, {"a": 9.0, "b": 11.0})], [{"a": 90.0}]),
    ("a range before it checks the raw one",
     [{"range": {"max": 100}}, {"scale": {"factor": 10}}],
     [(0, {"a": 9.0, "b": 11.0})], [{"a": 90.0, "b": 110.0}]),
    ("a flag made by one rule is a metric to the next",
     [{"range": {"max": 1, "action": "flag"}}, {"metrics": "out_of_range", "rename": "bad"}],
     [(0, {"a": 2.0})], [{"a": 2.0, "bad": True}]),
]  # fmt: skip


@pytest.mark.parametrize("case", CHAIN, ids=[c[0] for c in CHAIN])
def test_chain_order(case: Case) -> None:
    check(case)


GLOBS = [
    # (devices, metrics, device, metric, matched)
    ("*", "*", "gh-1", "t", True),
    ("gh-*", "*", "gh-1", "t", True),
    ("gh-*", "*", "barn-1", "t", False),
    (["barn-?", "gh-*"], "*", "barn-2", "t", True),
    (["barn-?", "gh-*"], "*", "barn-12", "t", False),
    ("gh-[ab]", "*", "gh-b", "t", True),
    ("gh-[!ab]", "*", "gh-b", "t", False),
    ("*", "temp_*", "gh-1", "temp_c", True),
    ("*", "temp_*", "gh-1", "temp", False),
    ("*", ["rh", "temp_?"], "gh-1", "rh", True),
    ("*", ["rh", "temp_?"], "gh-1", "rh2", False),
    ("*", "t", "gh-1", "T", False),  # case matters
]


@pytest.mark.parametrize(("devices", "metrics", "device", "metric", "matched"), GLOBS)
def test_glob_matching(
    devices: str | list[str], metrics: str | list[str], device: str, metric: str, matched: bool
) -> None:
    chain = parse_rules([{"devices": devices, "metrics": metrics, "range": {"max": 0}}])
    for _ in range(2):  # the second time from the caches
        assert (run(chain, [(0, {metric: 1.0})], device=device) == [None]) is matched


def test_caches_stay_bounded_and_correct() -> None:
    chain = parse_rules([{"devices": "d*", "metrics": "m*", "range": {"max": 0}}], cache_limit=3)
    for round_ in range(3):
        for i in range(10):
            assert chain.apply(sample(round_, {f"m{i}": 1.0}, device=f"d{i}")) is None
            kept = chain.apply(sample(round_, {f"x{i}": 1.0}, device=f"d{i}"))
            assert kept is not None
            assert kept.m == {f"x{i}": 1.0}
            assert chain.apply(sample(round_, {f"m{i}": 1.0}, device=f"e{i}")) is not None


def test_an_untouched_sample_comes_back_as_it_was() -> None:
    s = sample(0, {"t": 1.0})
    assert parse_rules([]).apply(s) is s
    assert parse_rules([{"devices": "other", "scale": {"factor": 2}}]).apply(s) is s
    assert parse_rules([{"metrics": "other", "scale": {"factor": 2}}]).apply(s) is s
    assert parse_rules([{"range": {"max": 5}}]).apply(s) is s


def test_counters_per_rule() -> None:
    chain = parse_rules([
        {"name": "sane", "metrics": "t", "range": {"min": 0, "max": 50}},
        {"name": "flagged", "metrics": "p", "range": {"max": 10, "action": "flag"}},
        {"name": "x2", "metrics": "t", "scale": {"factor": 2}},
        {"name": "window", "metrics": "l", "aggregate": {"window_s": 10, "stats": ["max"]}},
    ])  # fmt: skip
    run(chain, [(0, {"t": 60.0, "p": 1.0}), (1, {"t": 5.0, "p": 20.0, "l": 1.0}),
                (11, {"l": 2.0}), (12, {"rh": 1.0})])  # fmt: skip
    assert [(c.rule, c.samples_seen) for c in chain.counters()] == [
        ("sane", 2), ("flagged", 2), ("x2", 1), ("window", 2)
    ]  # fmt: skip
    sane, flagged, x2, window = chain.counters()
    assert sane.metrics_dropped == 1
    assert flagged.metrics_flagged == 1
    assert x2.metrics_changed == 1
    assert (window.windows_emitted, window.metrics_dropped) == (1, 2)
    assert all(c.errors == 0 for c in chain.counters())


# -- state: restart and reload --------------------------------------------------

STATEFUL_RULES: list[dict[str, Any]] = [
    {"name": "quiet", "metrics": "t", "deadband": {"abs": 0.5, "max_silence_s": 30}},
    {"name": "slow", "metrics": "rh", "min_interval_s": 10},
    {"name": "light", "metrics": "l", "aggregate": {"window_s": 20,
                                                    "stats": ["min", "max", "count", "last"]}},
]  # fmt: skip


def readings(start: int, stop: int) -> list[Reading]:
    return [
        (float(i * 3), {"t": 20 + (i % 7) * 0.3, "rh": 40.0 + i, "l": float(i % 5)})
        for i in range(start, stop)
    ]


def without_t(results: list[Result]) -> list[Result]:
    """The results as if metric t had never been sent."""
    return [None if m is None else {k: v for k, v in m.items() if k != "t"} or None
            for m in results]  # fmt: skip


def test_state_round_trip_gives_identical_outputs() -> None:
    before = parse_rules(STATEFUL_RULES)
    run(before, readings(0, 15))
    saved = before.take_changed_state()
    assert saved
    assert all(key.startswith("rules/") and value for key, value in saved.items())
    assert "rules/light/gh-1/l" in saved

    after = parse_rules(STATEFUL_RULES)
    after.restore_state({key: value for key, value in saved.items() if value is not None})
    assert after.take_changed_state() == {}, "restored entries are not news"
    assert run(after, readings(15, 60)) == run(before, readings(15, 60))


def test_take_changed_state_hands_out_changes_only() -> None:
    chain = parse_rules(STATEFUL_RULES)
    run(chain, readings(0, 5))
    assert len(chain.take_changed_state()) == 3
    assert chain.take_changed_state() == {}
    chain.apply(sample(100, {"l": 1.0}))
    assert list(chain.take_changed_state()) == ["rules/light/gh-1/l"]


def test_state_keys_escape_slashes_and_percents() -> None:
    name = "50% / day"
    rules: list[dict[str, Any]] = [{"name": name, "min_interval_s": 10}]
    chain = parse_rules(rules)
    chain.apply(sample(0, {"rh": 1.0}))
    saved = chain.take_changed_state()
    assert list(saved) == ["rules/50%25 %2F day/gh-1/rh"]
    fresh = parse_rules(rules)
    fresh.restore_state({k: v for k, v in saved.items() if v is not None})
    assert fresh.apply(sample(5, {"rh": 1.0})) is None, "the restored series"


def test_eviction_keeps_state_bounded_and_deletes_the_entry() -> None:
    chain = parse_rules([{"name": "slow", "min_interval_s": 10}], max_series=2)
    for device in ("a", "b", "c"):
        chain.apply(sample(0, {"rh": 1.0}, device=device))
    changed = chain.take_changed_state()
    assert changed["rules/slow/a/rh"] is None
    assert changed["rules/slow/b/rh"] is not None
    assert counters(chain).series_evicted == 1
    assert chain.apply(sample(1, {"rh": 1.0}, device="a")) is not None, "a starts afresh"


def test_restore_ignores_and_deletes_what_no_rule_can_use() -> None:
    old = parse_rules([*STATEFUL_RULES, {"name": "gone", "min_interval_s": 5}])
    run(old, readings(0, 3))
    saved = {k: v for k, v in old.take_changed_state().items() if v is not None}
    saved["rules/slow/gh-1/x"] = b"\xc1 not msgpack"
    saved["other/component/key"] = b"not ours"

    changed_rules = [dict(rule) for rule in STATEFUL_RULES]
    changed_rules[0]["deadband"] = {"abs": 0.6, "max_silence_s": 30}  # "quiet" redefined
    new = parse_rules(changed_rules)
    new.restore_state(saved)
    assert new.take_changed_state() == {
        "rules/quiet/gh-1/t": None,
        "rules/gone/gh-1/rh": None,
        "rules/gone/gh-1/t": None,
        "rules/slow/gh-1/x": None,
    }
    # "slow" and "light" are unchanged: their series carry on.
    assert without_t(run(new, readings(3, 30))) == without_t(run(old, readings(3, 30)))


def test_carry_over_keeps_unchanged_rules_and_drops_the_rest() -> None:
    reloaded = [dict(rule) for rule in STATEFUL_RULES[1:]]
    reloaded.append({"name": "quiet", "metrics": "t", "deadband": {"abs": 9}})  # redefined
    # What the reloaded rules do to the same samples, had they run all along.
    reference = parse_rules(reloaded)
    run(reference, readings(0, 10))
    expected = run(reference, readings(10, 30))

    old = parse_rules(STATEFUL_RULES)
    run(old, readings(0, 10))
    old.take_changed_state()
    new = parse_rules(reloaded)
    new.carry_over(old)
    out = run(new, readings(10, 30))

    assert without_t(out) == without_t(expected), '"slow" and "light" carried on'
    assert out[0] is not None
    assert "t" in out[0], "the redefined deadband starts without a reference"
    counts = {c.rule: c for c in new.counters()}
    assert counts["slow"].samples_seen == 30, "counters carried over"
    assert counts["quiet"].samples_seen == 20, "a redefined rule counts from zero"
    changed = new.take_changed_state()
    assert changed["rules/quiet/gh-1/t"] is not None, "rewritten by the new definition"
    assert old.take_changed_state() == {}, "the old chain gave its state away"


def test_carry_over_deletes_the_state_of_removed_rules() -> None:
    old = parse_rules(STATEFUL_RULES)
    run(old, readings(0, 2))
    new = parse_rules(STATEFUL_RULES[:1])
    new.carry_over(old)
    changed = new.take_changed_state()
    assert changed["rules/slow/gh-1/rh"] is None
    assert changed["rules/light/gh-1/l"] is None
    assert changed["rules/quiet/gh-1/t"] is not None, "not yet taken from the old chain"


# -- bad configs ---------------------------------------------------------------

BAD: list[tuple[list[Any], str, str]] = [
    # (rules, the rule as the message names it, the field)
    ([{"name": "x", "deadband": {"abs": 1, "pct": 2}}], 'rule "x" (rules[1])', "deadband"),
    ([{"deadband": {}}], 'rule "rule 1" (rules[1])', "deadband"),
    ([{"deadband": {"abs": -1}}], 'rule "rule 1" (rules[1])', "deadband.abs"),
    ([{"deadband": {"abs": 1, "max_silence_s": 0}}], "(rules[1])", "deadband.max_silence_s"),
    ([{"deadband": 0.5}], "(rules[1])", "deadband"),
    (
        [{"rename": "a"}, {"name": "r", "range": {"min": "cold"}}],
        'rule "r" (rules[2])',
        "range.min",
    ),
    ([{"range": {}}], "(rules[1])", "range"),
    ([{"range": {"min": 5, "max": 1}}], "(rules[1])", "range"),
    ([{"range": {"min": True}}], "(rules[1])", "range.min"),
    ([{"range": {"max": float("inf")}}], "(rules[1])", "range.max"),
    ([{"range": {"max": 1, "action": "warn"}}], "(rules[1])", "range.action"),
    ([{"range": {"max": 1, "action": "flag", "flag": "Bad!"}}], "(rules[1])", "range.flag"),
    ([{"range": {"max": 1, "flag": "hot"}}], "(rules[1])", "range.flag"),
    ([{"range": {"max": 1, "maximum": 2}}], "(rules[1])", "range"),
    ([{"min_interval_s": -1}], "(rules[1])", "min_interval_s"),
    ([{"min_interval_s": "10s"}], "(rules[1])", "min_interval_s"),
    ([{"min_interval_s": float("nan")}], "(rules[1])", "min_interval_s"),
    ([{"aggregate": {"window_s": 0}}], "(rules[1])", "aggregate.window_s"),
    ([{"aggregate": {"stats": ["min"]}}], "(rules[1])", "aggregate"),
    ([{"aggregate": {"window_s": 60, "stats": ["median"]}}], "(rules[1])", "aggregate.stats[0]"),
    ([{"aggregate": {"window_s": 60, "stats": []}}], "(rules[1])", "aggregate.stats"),
    ([{"aggregate": {"window_s": 60, "stats": ["min", "min"]}}], "(rules[1])", "aggregate.stats"),
    ([{"metrics": "a" * 28, "aggregate": {"window_s": 60}}], "(rules[1])", "aggregate.stats"),
    ([{"scale": {"factor": "2"}}], "(rules[1])", "scale.factor"),
    ([{"scale": {"gain": 2}}], "(rules[1])", "scale"),
    ([{"convert": "furlongs_to_m"}], "(rules[1])", "convert"),
    ([{"convert": 3}], "(rules[1])", "convert"),
    ([{"rename": "Temp C"}], "(rules[1])", "rename"),
    ([{"rename": "a" * 33}], "(rules[1])", "rename"),
    ([{"name": "both", "range": {"max": 1}, "scale": {}}], 'rule "both" (rules[1])', "action"),
    ([{"name": "none", "metrics": "t"}], 'rule "none" (rules[1])', "action"),
    ([{"name": "typo", "metric": "t", "rename": "u"}], 'rule "typo" (rules[1])', "metric"),
    ([{"devices": [], "rename": "u"}], "(rules[1])", "devices"),
    ([{"devices": "GH-1", "rename": "u"}], "(rules[1])", "devices"),
    ([{"metrics": ["t", 3], "rename": "u"}], "(rules[1])", "metrics"),
    ([{"metrics": "Temp", "rename": "u"}], "(rules[1])", "metrics"),
    ([{"name": "", "rename": "u"}], 'rule "rule 1" (rules[1])', "name"),
    ([{"name": 7, "rename": "u"}], 'rule "rule 1" (rules[1])', "name"),
    ([{"name": "a", "rename": "u"}, {"name": "a", "rename": "v"}], 'rule "a" (rules[2])', "name"),
    ([{"rename": "u"}, {"name": "rule 1", "rename": "v"}], 'rule "rule 1" (rules[2])', "name"),
    ([{"rename": "u"}, "rename"], 'rule "rule 2" (rules[2])', "rule"),
]


@pytest.mark.parametrize(("rules", "rule", "field"), BAD, ids=[str(b[0])[:60] for b in BAD])
def test_bad_configs_name_the_rule_and_field(rules: list[Any], rule: str, field: str) -> None:
    with pytest.raises(RuleError) as caught:
        parse_rules(rules)
    message = str(caught.value)
    assert message.startswith("rule ")
    assert rule in message
    assert f"): {field}: " in message, message


def test_rules_must_be_a_list() -> None:
    with pytest.raises(RuleError, match="rules: expected an array of tables"):
        parse_rules({"range": {}})  # type: ignore[arg-type]


def test_a_good_config_from_the_docs_loads() -> None:
    chain = parse_rules([
        {"name": "sane temperatures", "devices": "greenhouse-*", "metrics": ["temp_*", "rh"],
         "range": {"min": -40, "max": 85, "action": "drop"}},
        {"metrics": "temp_c", "deadband": {"abs": 0.2, "max_silence_s": 300}},
        {"metrics": "rh", "min_interval_s": 10},
        {"metrics": "light", "aggregate": {"window_s": 60, "stats": STATS4}},
        {"metrics": "temp_f", "scale": {"factor": 0.5555556, "offset": -17.777778}},
        {"metrics": "pressure_pa", "convert": "pa_to_hpa"},
        {"metrics": "temp_f", "rename": "temp_c"},
    ])  # fmt: skip
    assert [spec.name for spec in chain.specs][:2] == ["sane temperatures", "rule 2"]
    assert len(chain) == 7


# -- properties ----------------------------------------------------------------

metric_names = st.sampled_from(["t", "rh", "temp_c", "temp_f", "light", "door", "p",
                                "x" * 30, "out_of_range"])  # fmt: skip
globs = st.sampled_from(["*", "t*", "temp_?", "rh", "light", "[dp]*", "x*"])
numbers = st.floats(-1e6, 1e6, allow_nan=False)
valid_values = st.one_of(st.booleans(), st.floats(allow_nan=False, allow_infinity=False))
actions = st.one_of(
    st.fixed_dictionaries({"range": st.fixed_dictionaries(
        {"min": numbers, "action": st.sampled_from(["drop", "flag"])})}),
    st.fixed_dictionaries({"deadband": st.one_of(
        st.fixed_dictionaries({"abs": st.floats(0, 10)},
                              optional={"max_silence_s": st.floats(1, 100)}),
        st.fixed_dictionaries({"pct": st.floats(0, 50)}))}),
    st.fixed_dictionaries({"min_interval_s": st.floats(0.1, 100)}),
    st.fixed_dictionaries({"aggregate": st.fixed_dictionaries(
        {"window_s": st.floats(0.5, 100),
         "stats": st.lists(st.sampled_from(["min", "max", "mean", "sum", "count", "first", "last"]),
                           min_size=1, unique=True)})}),
    st.fixed_dictionaries({"scale": st.fixed_dictionaries(
        {"factor": st.floats(-1e300, 1e300), "offset": numbers})}),
    st.fixed_dictionaries({"convert": st.sampled_from(sorted(CONVERSIONS))}),
    st.fixed_dictionaries({"rename": metric_names}),
)  # fmt: skip
rule_dicts = st.builds(
    lambda action, devices, metrics: {**action, "devices": devices, "metrics": metrics},
    actions,
    st.sampled_from(["*", "gh-*", ["a", "b*"]]),
    st.one_of(globs, st.lists(globs, min_size=1, max_size=3)),
)
valid_samples = st.builds(
    Sample,
    device_id=st.sampled_from(["gh-1", "gh-2", "a", "b7"]),
    boot=st.integers(0, 3),
    seq=st.integers(0, contract.MAX_COUNTER),
    ts=st.floats(0, 2e9),
    m=st.dictionaries(
        st.one_of(metric_names, st.from_regex(contract.METRIC_NAME_PATTERN, fullmatch=True)),
        valid_values,
        min_size=1,
        max_size=contract.MAX_METRICS,
    ),
)


@settings(max_examples=300, deadline=None)
@given(rules=st.lists(rule_dicts, max_size=6), samples=st.lists(valid_samples, max_size=30))
def test_a_chain_keeps_keys_and_the_contract(
    rules: list[dict[str, Any]], samples: list[Sample]
) -> None:
    chain = parse_rules(rules)
    for s in samples:
        assert contract_problem(s) is None
        out = chain.apply(s)
        if out is not None:
            assert out.key == s.key
            assert (out.ts, out.ts_from_edge) == (s.ts, s.ts_from_edge)
            assert contract_problem(out) is None, (out, contract_problem(out))


junk_values = st.one_of(
    st.booleans(), st.floats(), st.integers(-(10**400), 10**400), st.none(), st.text(max_size=3)
)
junk_samples = st.builds(
    Sample,
    device_id=st.one_of(st.text(max_size=10), st.sampled_from(["gh-1", "a"])),
    boot=st.integers(),
    seq=st.integers(),
    ts=st.one_of(st.floats(), st.integers(-(10**400), 10**400)),
    m=st.dictionaries(st.one_of(metric_names, st.text(max_size=40)), junk_values, max_size=70),
)


@settings(max_examples=300, deadline=None)
@given(rules=st.lists(rule_dicts, max_size=6), samples=st.lists(junk_samples, max_size=20))
def test_apply_never_raises_even_for_junk(
    rules: list[dict[str, Any]], samples: list[Sample]
) -> None:
    chain = parse_rules(rules)
    for s in samples:
        out = chain.apply(s)
        assert out is None or out.key == s.key
    chain.take_changed_state()
    chain.counters()


def test_a_non_finite_ts_passes_time_rules_untouched() -> None:
    chain = parse_rules([{"min_interval_s": 10}, {"scale": {"factor": 2}}])
    out = chain.apply(Sample("gh-1", 1, 0, math.nan, {"rh": 1.0}))
    assert out is not None
    assert out.m == {"rh": 2.0}
    assert counters(chain).errors == 1


# -- layering -------------------------------------------------------------------


@pytest.mark.parametrize("path", sorted((ROOT / "edge" / "rules").glob("*.py")), ids=str)
def test_rules_are_sans_io(path: Path) -> None:
    imported: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    assert not imported & IO_MODULES, f"{path} imports {sorted(imported & IO_MODULES)}"
