"""Reading the `[[rules]]` tables of the edge's config into rule specs.

Rule: every mistake a config can hold is found here, at load, as one
RuleError naming the rule (its name and 1-based position, `rules[N]`, the
way the default names count) and the field. The engine only ever gets specs
this module accepted, so at runtime it meets no unknown key, no missing
bound, and no metric name it could have been told about up front.
"""

import hashlib
import math
from collections.abc import Callable
from typing import Annotated, Any, Literal, TypeAlias, TypeVar

import msgspec
from msgspec import Meta

from edge.rules.units import CONVERSIONS
from edgewire import contract

ACTIONS = ("range", "deadband", "min_interval_s", "aggregate", "scale", "convert", "rename")
RULE_KEYS = ("name", "devices", "metrics", *ACTIONS)
NAME_MAX_CHARS = 80
GLOB_CHARS = frozenset("*?[")

Stat: TypeAlias = Literal["min", "max", "mean", "sum", "count", "first", "last"]
_NonNegative = Annotated[float, Meta(ge=0)]
_Positive = Annotated[float, Meta(gt=0)]
T = TypeVar("T")


class RuleError(ValueError):
    """A `[[rules]]` entry that cannot be used; the message says which and why,
    on one line whatever a key holds (a quoted TOML key may hold a newline)."""

    def __init__(self, message: str) -> None:
        super().__init__(message.replace("\r", "\\r").replace("\n", "\\n"))


# Makes the RuleError of the rule being read: fail(field, message).
Fail: TypeAlias = Callable[[str, str], RuleError]


class RangeSpec(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    min: float | None = None
    max: float | None = None
    action: Literal["drop", "flag"] = "drop"
    flag: str = "out_of_range"


class DeadbandSpec(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    abs: _NonNegative | None = None
    pct: _NonNegative | None = None
    max_silence_s: _Positive | None = None


class IntervalSpec(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    min_interval_s: _Positive


class AggregateSpec(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    window_s: _Positive
    stats: Annotated[tuple[Stat, ...], Meta(min_length=1)] = ("min", "mean", "max", "count")


class ScaleSpec(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    factor: float = 1.0
    offset: float = 0.0


class ConvertSpec(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    unit: str
    factor: float
    offset: float


class RenameSpec(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    to: str


Action: TypeAlias = (
    RangeSpec | DeadbandSpec | IntervalSpec | AggregateSpec | ScaleSpec | ConvertSpec | RenameSpec
)


class RuleSpec(msgspec.Struct, frozen=True):
    name: str
    position: int
    devices: tuple[str, ...]
    metrics: tuple[str, ...]
    action: Action
    # Of devices, metrics and action (not of name or position): state saved
    # under a rule is only taken back by a rule with the same fingerprint.
    fingerprint: str


def parse_specs(raw: list[dict[str, Any]]) -> list[RuleSpec]:
    if not isinstance(raw, list):
        raise RuleError(f"rules: expected an array of tables, got {type(raw).__name__}")
    specs: list[RuleSpec] = []
    positions: dict[str, int] = {}
    for position, entry in enumerate(raw, 1):
        spec = _parse_one(entry, position)
        if spec.name in positions:
            raise _error(
                spec.name, position, "name", f"already used by rules[{positions[spec.name]}]"
            )
        positions[spec.name] = position
        specs.append(spec)
    return specs


def is_glob(pattern: str) -> bool:
    return not GLOB_CHARS.isdisjoint(pattern)


def _parse_one(entry: object, position: int) -> RuleSpec:
    default_name = f"rule {position}"
    if not isinstance(entry, dict):
        raise _error(
            default_name, position, "rule", f"expected a table, got {type(entry).__name__}"
        )
    name = entry.get("name", default_name)
    if not isinstance(name, str) or not 1 <= len(name) <= NAME_MAX_CHARS or not name.isprintable():
        raise _error(
            default_name, position, "name", f"expected 1 to {NAME_MAX_CHARS} printable characters"
        )

    def fail(field: str, message: str) -> RuleError:
        return _error(name, position, field, message)

    unknown = sorted(str(key) for key in entry if key not in RULE_KEYS)
    if unknown:
        raise fail(unknown[0], f"unknown key; a rule has {', '.join(RULE_KEYS)}")
    devices = _globs(entry.get("devices", "*"), "devices", fail)
    metrics = _globs(entry.get("metrics", "*"), "metrics", fail)
    given = [key for key in ACTIONS if key in entry]
    if len(given) != 1:
        found = ", ".join(given) or "none"
        raise fail("action", f"give exactly one of {', '.join(ACTIONS)} (found {found})")
    kind = given[0]
    action = _parse_action(kind, entry[kind], metrics, fail)
    definition = msgspec.json.encode((devices, metrics, kind, action))
    fingerprint = hashlib.blake2b(definition, digest_size=4).hexdigest()
    return RuleSpec(name, position, devices, metrics, action, fingerprint)


def _globs(value: object, field: str, fail: Fail) -> tuple[str, ...]:
    patterns = [value] if isinstance(value, str) else value
    if not isinstance(patterns, list) or not patterns:
        raise fail(field, "expected a glob or a non-empty list of globs")
    valid, what = (
        (contract.is_device_id, "device id") if field == "devices"
        else (contract.is_metric_name, "metric name")
    )  # fmt: skip
    for pattern in patterns:
        if not isinstance(pattern, str) or not pattern:
            raise fail(field, f"expected a non-empty string, got {pattern!r}")
        if not is_glob(pattern) and not valid(pattern):
            # A typo that would make the rule silently match nothing.
            raise fail(field, f"{pattern!r} is not a valid {what}, so it would match nothing")
    return tuple(patterns)


def _parse_action(kind: str, value: object, metrics: tuple[str, ...], fail: Fail) -> Action:
    if kind == "range":
        return _check_range(_convert(value, RangeSpec, kind, fail), fail)
    if kind == "deadband":
        deadband = _convert(value, DeadbandSpec, kind, fail)
        if (deadband.abs is None) == (deadband.pct is None):
            raise fail(kind, "give exactly one of abs or pct")
        return deadband
    if kind == "min_interval_s":
        return _convert({kind: value}, IntervalSpec, "", fail)
    if kind == "aggregate":
        return _check_stat_names(_convert(value, AggregateSpec, kind, fail), metrics, fail)
    if kind == "scale":
        return _convert(value, ScaleSpec, kind, fail)
    if kind == "convert":
        if not isinstance(value, str) or value not in CONVERSIONS:
            raise fail(kind, f"unknown conversion {value!r}; known: {', '.join(CONVERSIONS)}")
        linear = CONVERSIONS[value]
        return ConvertSpec(unit=value, factor=linear.factor, offset=linear.offset)
    if not isinstance(value, str) or not contract.is_metric_name(value):
        raise fail(kind, f"{value!r} is not a valid metric name ({contract.METRIC_NAME_PATTERN})")
    return RenameSpec(to=value)


def _convert(value: object, into: type[T], field: str, fail: Fail) -> T:
    """msgspec's checks, its message moved under the rule's name and field."""
    if field and not isinstance(value, dict):
        raise fail(field, f"expected a table, got {type(value).__name__}")
    try:
        spec = msgspec.convert(value, into)
    except msgspec.ValidationError as exc:
        message, _, path = str(exc).partition(" - at `$")
        where = ".".join(part for part in (field, path.rstrip("`").lstrip(".")) if part)
        message = message.replace("Object contains unknown field", "unknown key")
        raise fail(where or "rule", message[:1].lower() + message[1:]) from None
    # TOML has inf and nan; no bound, band, window or factor may be either.
    for name in into.__struct_fields__:  # type: ignore[attr-defined]
        number = getattr(spec, name)
        if isinstance(number, float) and not math.isfinite(number):
            raise fail(f"{field}.{name}" if field else name, "must be a finite number")
    return spec


def _check_range(spec: RangeSpec, fail: Fail) -> RangeSpec:
    if spec.min is None and spec.max is None:
        raise fail("range", "give min, max or both")
    if spec.min is not None and spec.max is not None and spec.min > spec.max:
        raise fail("range", f"min {spec.min} is above max {spec.max}")
    if spec.flag != "out_of_range" and spec.action != "flag":
        raise fail("range.flag", 'names the flag metric of action = "flag" only')
    if not contract.is_metric_name(spec.flag):
        raise fail("range.flag", f"{spec.flag!r} is not a valid metric name")
    return spec


def _check_stat_names(spec: AggregateSpec, metrics: tuple[str, ...], fail: Fail) -> AggregateSpec:
    if len(set(spec.stats)) != len(spec.stats):
        raise fail("aggregate.stats", "a stat is listed twice")
    for metric in metrics:
        if is_glob(metric):
            continue  # the engine checks each matching name as it meets it
        for stat in spec.stats:
            produced = f"{metric}_{stat}"
            if not contract.is_metric_name(produced):
                raise fail(
                    "aggregate.stats",
                    f"{produced!r} would not be a valid metric name (at most 32 characters)",
                )
    return spec


def _error(name: str, position: int, field: str, message: str) -> RuleError:
    return RuleError(f'rule "{name}" (rules[{position}]): {field}: {message}')
