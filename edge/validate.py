"""Telemetry validation: bytes from a board's topic in, samples or rejects out.

Sans-IO: no clock (the caller passes `now`), no sockets, no storage. Rule: a
payload either becomes samples or dead letters, never an exception; a bad
element of a JSON array rejects that element only, so good data is never lost
to a neighbour's fault. Non-finite metrics cannot get through: msgspec's JSON
refuses `NaN`/`Infinity` tokens and numbers beyond a double's range.
"""

from enum import StrEnum
from typing import Annotated

import msgspec
from msgspec import Meta

from edgewire import contract
from edgewire.sample import Sample

_Counter = Annotated[int, Meta(ge=0, le=contract.MAX_COUNTER)]
_MetricName = Annotated[str, Meta(pattern=f"^{contract.METRIC_NAME_PATTERN}$")]


class _WireSample(msgspec.Struct):
    """A sample object as a board sends it (contract §2); unknown keys ignored."""

    seq: _Counter
    boot: _Counter
    m: Annotated[
        dict[_MetricName, bool | float], Meta(min_length=1, max_length=contract.MAX_METRICS)
    ]
    ts: float | None = None
    # edgewire boards add the lowest seq they still hold uncovered: everything
    # below it is either durable here already or was dropped by the board, so
    # the stored watermark may move past it (see edge/stored.py).
    lo: _Counter | None = None


_decode_payload = msgspec.json.Decoder(_WireSample | list[_WireSample]).decode
_decode_elements = msgspec.json.Decoder(list[msgspec.Raw]).decode
_decode_element = msgspec.json.Decoder(_WireSample).decode


class Reason(StrEnum):
    """Why a payload was rejected: the label of the dead-letter counter."""

    TOO_LARGE = "too_large"
    NOT_JSON = "not_json"
    INVALID = "invalid"
    BAD_DEVICE_ID = "bad_device_id"
    EMPTY = "empty"
    BAD_STATUS = "bad_status"
    BAD_ANSWER = "bad_answer"
    INTERNAL = "internal"  # the edge failed on it: a bug of ours, to fix and replay


class Reject(msgspec.Struct, frozen=True):
    """A dead letter: what arrived, where, and why it was refused."""

    topic: str
    payload: bytes
    reason: Reason
    detail: str


class Accepted(msgspec.Struct, frozen=True):
    sample: Sample
    # The board's `lo` hint, when it sent one.
    lo: int | None


class Outcome(msgspec.Struct):
    accepted: list[Accepted]
    rejected: list[Reject]


# What msgspec raises for a payload it cannot read at all. Besides
# DecodeError: UnicodeDecodeError for invalid UTF-8 inside a key it checks
# against a pattern (the metric names), and RecursionError for JSON nested
# about a thousand deep. Either one escaping here would end the MQTT
# client's thread (found by the fuzzer: tests/fuzz/).
_UNDECODABLE = (msgspec.DecodeError, UnicodeDecodeError, RecursionError)


def _why(exc: Exception) -> str:
    if isinstance(exc, UnicodeDecodeError):
        return "invalid UTF-8"
    if isinstance(exc, RecursionError):
        return "nested too deep"
    return str(exc)


def validate_telemetry(device_id: str, payload: bytes, now: float) -> Outcome:
    """Check one telemetry message of `device_id` (taken from its topic)."""
    topic = contract.topic(device_id, contract.TELEMETRY)
    if not contract.is_device_id(device_id):
        return _rejected(topic, payload, Reason.BAD_DEVICE_ID, f"device id {device_id!r} in topic")
    if len(payload) > contract.MAX_PAYLOAD_BYTES:
        detail = f"{len(payload)} bytes, limit {contract.MAX_PAYLOAD_BYTES}"
        return _rejected(topic, payload, Reason.TOO_LARGE, detail)
    try:
        decoded = _decode_payload(payload)
    except (msgspec.ValidationError, UnicodeDecodeError) as exc:  # before DecodeError
        # A bad element, or bad UTF-8 in a metric name: keep the rest of a batch.
        if payload.lstrip()[:1] == b"[":
            return _validate_elements(device_id, topic, payload, now)
        return _rejected(topic, payload, Reason.INVALID, _why(exc))
    except _UNDECODABLE as exc:
        return _rejected(topic, payload, Reason.NOT_JSON, _why(exc))
    wires = decoded if isinstance(decoded, list) else [decoded]
    if not wires:
        return _rejected(topic, payload, Reason.EMPTY, "empty array")
    outcome = Outcome(accepted=[], rejected=[])
    for wire in wires:
        _admit(outcome, device_id, wire, now)
    return outcome


def validate_status(device_id: str, payload: bytes) -> str | Reject:
    """A status message is one of contract.STATUSES, or a dead letter."""
    topic = contract.topic(device_id, contract.STATUS)
    if not contract.is_device_id(device_id):
        return Reject(topic, payload[:256], Reason.BAD_DEVICE_ID, f"device id {device_id!r}")
    text = payload.decode("utf-8", "replace").strip()
    if text not in contract.STATUSES:
        return Reject(topic, payload[:256], Reason.BAD_STATUS, f"status {text[:40]!r}")
    return text


def _validate_elements(device_id: str, topic: str, payload: bytes, now: float) -> Outcome:
    """Slow path for an array with a bad element: keep every good one."""
    try:
        elements = _decode_elements(payload)
    except _UNDECODABLE as exc:  # list[Raw] fails only on broken JSON
        # Typed decoding stops at the first bad element, before it has seen
        # the rest of the text; the untyped pass finds broken JSON after it.
        return _rejected(topic, payload, Reason.NOT_JSON, _why(exc))
    outcome = Outcome(accepted=[], rejected=[])
    for index, raw in enumerate(elements):
        element = bytes(raw)
        try:
            wire = _decode_element(element)
        except msgspec.ValidationError as exc:
            detail = f"element {index}: {exc}"
            outcome.rejected.append(Reject(topic, element, Reason.INVALID, detail))
            continue
        except _UNDECODABLE as exc:
            detail = f"element {index}: {_why(exc)}"
            outcome.rejected.append(Reject(topic, element, Reason.NOT_JSON, detail))
            continue
        _admit(outcome, device_id, wire, now)
    return outcome


def _admit(outcome: Outcome, device_id: str, wire: _WireSample, now: float) -> None:
    ts = wire.ts
    plausible = ts is not None and contract.is_plausible_ts(ts, now)
    sample = Sample(
        device_id=device_id,
        boot=wire.boot,
        seq=wire.seq,
        ts=ts if plausible and ts is not None else now,
        m=wire.m,
        ts_from_edge=not plausible,
    )
    outcome.accepted.append(Accepted(sample=sample, lo=wire.lo))


def _rejected(topic: str, payload: bytes, reason: Reason, detail: str) -> Outcome:
    return Outcome(accepted=[], rejected=[Reject(topic, payload, reason, detail)])
