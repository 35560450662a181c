"""The sans-IO telemetry validator, against contract §2."""

import json
import math
import time

from hypothesis import given
from hypothesis import strategies as st

from edge.validate import Reason, validate_status, validate_telemetry
from edgewire import contract

NOW = 1_800_000_000.0


def check(payload: object, device: str = "dev-1", now: float = NOW):  # type: ignore[no-untyped-def]
    raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return validate_telemetry(device, raw, now)


def test_a_good_sample_keeps_its_fields() -> None:
    outcome = check({"seq": 17, "boot": 3, "ts": NOW - 5.125, "m": {"temp_c": 21.5, "door": True}})
    assert outcome.rejected == []
    [accepted] = outcome.accepted
    sample = accepted.sample
    assert (sample.device_id, sample.boot, sample.seq) == ("dev-1", 3, 17)
    assert sample.ts == NOW - 5.125
    assert sample.m == {"temp_c": 21.5, "door": True}
    assert sample.m["door"] is True, "booleans stay booleans"
    assert not sample.ts_from_edge
    assert accepted.lo is None


def test_an_integer_metric_becomes_a_float() -> None:
    [accepted] = check({"seq": 1, "boot": 0, "m": {"count": 3}}).accepted
    assert isinstance(accepted.sample.m["count"], float)


def test_missing_or_implausible_time_is_stamped_by_the_edge() -> None:
    for ts in (None, 1_000_000.0, NOW + contract.MAX_CLOCK_AHEAD_S + 1):
        payload: dict[str, object] = {"seq": 1, "boot": 0, "m": {"t": 1}}
        if ts is not None:
            payload["ts"] = ts
        [accepted] = check(payload).accepted
        assert accepted.sample.ts == NOW
        assert accepted.sample.ts_from_edge
    [near] = check({"seq": 1, "boot": 0, "ts": NOW + 60, "m": {"t": 1}}).accepted
    assert not near.sample.ts_from_edge, "a clock a minute ahead is plausible"


def test_a_backlog_array_and_its_lo_hint() -> None:
    payload = [{"lo": 4, "seq": 5, "boot": 2, "m": {"t": 1}}, {"seq": 6, "boot": 2, "m": {"t": 2}}]
    outcome = check(payload)
    assert [a.sample.seq for a in outcome.accepted] == [5, 6]
    assert [a.lo for a in outcome.accepted] == [4, None]


def test_bad_payloads_are_rejected_with_a_reason() -> None:
    cases: list[tuple[bytes, Reason, str]] = [
        (b"hello", Reason.NOT_JSON, "malformed"),
        (b'{"seq": 1, "boot": 0, "m": {"t": NaN}}', Reason.NOT_JSON, "malformed"),
        (b'{"seq": 1, "boot": 0, "m": {"t": 1e999}}', Reason.INVALID, "out of range"),
        (b'{"boot": 0, "m": {"t": 1}}', Reason.INVALID, "seq"),
        (b'{"seq": -1, "boot": 0, "m": {"t": 1}}', Reason.INVALID, "seq"),
        (b'{"seq": 1.5, "boot": 0, "m": {"t": 1}}', Reason.INVALID, "seq"),
        (b'{"seq": true, "boot": 0, "m": {"t": 1}}', Reason.INVALID, "seq"),
        (b'{"seq": 1, "boot": 0, "m": {}}', Reason.INVALID, "length"),
        (b'{"seq": 1, "boot": 0, "m": {"T": 1}}', Reason.INVALID, "regex"),
        (b'{"seq": 1, "boot": 0, "m": {"t": "1"}}', Reason.INVALID, "str"),
        (b'{"seq": 1, "boot": 0, "ts": "now", "m": {"t": 1}}', Reason.INVALID, "ts"),
        (b'{"seq": 99999999999999999999, "boot": 0, "m": {"t": 1}}', Reason.INVALID, "seq"),
        (b'"a string"', Reason.INVALID, "object"),
        (b"[]", Reason.EMPTY, "empty"),
        (b"[{}, ", Reason.NOT_JSON, "truncated"),
        (b'{"seq": 1, "boot": 0, "m": {"t": 1}} trailing', Reason.NOT_JSON, "trailing"),
    ]
    for payload, reason, fragment in cases:
        outcome = validate_telemetry("dev-1", payload, NOW)
        assert outcome.accepted == [], payload
        [reject] = outcome.rejected
        assert reject.reason == reason, (payload, reject)
        assert fragment in reject.detail, (payload, reject.detail)
        assert reject.payload == payload


def test_too_many_metrics_and_too_large() -> None:
    many = {"seq": 1, "boot": 0, "m": {f"m{i}": i for i in range(contract.MAX_METRICS + 1)}}
    assert check(many).rejected[0].reason == Reason.INVALID
    exactly = {"seq": 1, "boot": 0, "m": {f"m{i}": i for i in range(contract.MAX_METRICS)}}
    assert len(check(exactly).accepted) == 1
    big = json.dumps({"seq": 1, "boot": 0, "m": {"t": 1}, "x": "y" * contract.MAX_PAYLOAD_BYTES})
    assert check(big.encode()).rejected[0].reason == Reason.TOO_LARGE


def test_the_device_id_comes_from_the_topic_and_must_be_valid() -> None:
    good = {"seq": 1, "boot": 0, "m": {"t": 1}}
    for bad in ("", "UPPER", "-lead", "x" * 65, "sp ace", "a/b"):
        assert check(good, device=bad).rejected[0].reason == Reason.BAD_DEVICE_ID
    assert check(good, device="a" * 64).accepted


def test_one_bad_element_does_not_sink_the_array() -> None:
    payload = (
        b'[{"seq": 1, "boot": 0, "m": {"t": 1}}, {"seq": "x"},'
        b' {"seq": 3, "boot": 0, "m": {"t": 3}}]'
    )
    outcome = validate_telemetry("dev-1", payload, NOW)
    assert [a.sample.seq for a in outcome.accepted] == [1, 3]
    [reject] = outcome.rejected
    assert reject.detail.startswith("element 1:")
    assert reject.payload == b'{"seq": "x"}'


def test_bad_utf8_in_a_metric_name_sinks_only_its_own_sample() -> None:
    # Found by the fuzzer: msgspec raised UnicodeDecodeError here, which
    # ended the edge's MQTT thread.
    bad = b'{"seq": 2, "boot": 0, "m": {"temp_\xe9": 21.5}}'
    outcome = validate_telemetry("dev-1", bad, NOW)
    assert outcome.accepted == []
    assert [(r.reason, r.detail) for r in outcome.rejected] == [(Reason.INVALID, "invalid UTF-8")]
    batch = b'[{"seq": 1, "boot": 0, "m": {"t": 1}}, ' + bad + b"]"
    outcome = validate_telemetry("dev-1", batch, NOW)
    assert [a.sample.seq for a in outcome.accepted] == [1]
    assert [r.detail for r in outcome.rejected] == ["element 1: invalid UTF-8"]


def test_json_nested_too_deep_is_a_dead_letter_not_a_crash() -> None:
    for payload in (
        b"[" * 1200 + b"]" * 1200,
        b'{"seq": 1, "x": ' + b"[" * 1200 + b"]" * 1200 + b"}",
    ):
        outcome = validate_telemetry("dev-1", payload, NOW)
        assert outcome.accepted == []
        assert [r.reason for r in outcome.rejected] == [Reason.NOT_JSON]


def test_status_messages() -> None:
    assert validate_status("dev-1", b"online") == "online"
    assert validate_status("dev-1", b"offline\n") == "offline"
    bad = validate_status("dev-1", b"on fire")
    assert not isinstance(bad, str)
    assert bad.reason == Reason.BAD_STATUS


metric_names = st.from_regex(r"\A[a-z][a-z0-9_]{0,31}\Z")
values = st.one_of(st.booleans(), st.floats(allow_nan=False, allow_infinity=False))


@given(
    seq=st.integers(0, contract.MAX_COUNTER),
    boot=st.integers(0, contract.MAX_COUNTER),
    metrics=st.dictionaries(metric_names, values, min_size=1, max_size=contract.MAX_METRICS),
)
def test_every_valid_sample_is_accepted_unchanged(
    seq: int, boot: int, metrics: dict[str, object]
) -> None:
    outcome = check({"seq": seq, "boot": boot, "ts": NOW, "m": metrics})
    assert outcome.rejected == []
    sample = outcome.accepted[0].sample
    assert (sample.seq, sample.boot, sample.m) == (seq, boot, metrics)


@given(st.binary(max_size=512))
def test_arbitrary_bytes_never_raise(payload: bytes) -> None:
    outcome = validate_telemetry("dev-1", payload, time.time())
    for accepted in outcome.accepted:
        assert all(isinstance(v, bool) or math.isfinite(v) for v in accepted.sample.m.values())
    assert outcome.accepted or outcome.rejected


@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
        lambda c: st.lists(c) | st.dictionaries(st.text(), c),
        max_leaves=20,
    )
)
def test_arbitrary_json_never_raises(document: object) -> None:
    try:
        raw = json.dumps(document).encode()
    except ValueError:
        return
    outcome = validate_telemetry("dev-1", raw, NOW)
    assert outcome.accepted or outcome.rejected
