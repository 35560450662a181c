"""Hypothesis strategies for the fuzz targets: mutations of the seed corpus
(byte flips, truncation, splicing, huge numbers, deep nesting, long strings)
and inputs built from each format's own parts (JSON payloads, TOML configs,
protobuf messages made with the generated classes, OTA exchanges), all as
the bytes a target takes.

    structured("rules")   [[rules]] arrays built from rule keys, written as
                          TOML, sometimes mutated; or seeds of corpus/rules,
                          mutated
    any_bytes()           plain random bytes, up to 64 KB
"""

import base64
import functools
import hashlib
import json
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time
from pathlib import Path
from typing import Any

from hypothesis import strategies as st

from cloud.config import CloudSettings
from edge.config import EdgeSettings
from edge.rules.units import CONVERSIONS
from edgewire import contract
from edgewire.downlink import STATES
from edgewire.v1 import edgewire_pb2 as pb
from firmware.board_config import BoardSettings
from tests.fuzz.targets import BOARD_FILES, MAX_INPUT

CORPUS = Path(__file__).resolve().parent / "corpus"
# Mutants may cross the 64 KB limit, to reach the size checks from both sides.
MAX_MUTANT = MAX_INPUT + 64


def seeds(target: str) -> list[bytes]:
    """The seed files of corpus/<target>, the found-* ones included (a
    mutant of an input that broke a target once is worth trying again)."""
    return [path.read_bytes() for path in sorted((CORPUS / target).iterdir()) if path.is_file()]


# -- mutations ------------------------------------------------------------------


@dataclass(frozen=True)
class Kit:
    """What mutations of one format insert: its tokens, and the open/close
    pairs that nest (`prefix + open * n + inner + close * n + suffix`)."""

    tokens: tuple[bytes, ...]
    nests: tuple[tuple[bytes, bytes, bytes, bytes, bytes], ...]


_NUMBERS = (
    b"0", b"-0", b"-1", b"1e999", b"-1e999", b"1e-999", b"NaN", b"nan", b"inf", b"-inf",
    b"9223372036854775807", b"9223372036854775808", b"18446744073709551616",
    b"-9223372036854775809", b"4.9e-324", b"1.7976931348623157e308", b"0x7fffffff",
    b"9" * 400, b"1" + b"0" * 4000, b"0." + b"0" * 1000 + b"1", b"1_000", b"01",
)  # fmt: skip
_LONG = (b"a", b"\\u0000", b"\\\\", b"\xff", b"\xf0\x9f\x92\xa9", b" ", b"\n", b'\\"', b"%s")
_REPEATS = (2, 10, 100, 1_000, 10_000, 60_000)
_NUMBER_RE = re.compile(rb"-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?")

JSON_KIT = Kit(
    tokens=(
        b'"', b"[", b"]", b"{", b"}", b",", b":", b"null", b"true", b"false", b"\\", b"\\u",
        b"\\ud800", b"\x00", b"\xff", b"\xc0\x80", b" ", b'"m"', b'"seq"', b'"boot"', b'"ts"',
        b'"lo"', b'{"t": 1}', b'"T"', b'"' + b"a" * 33 + b'"', b"1e999", b"NaN", b"-1",
    ),
    nests=(
        (b"", b"[", b"", b"]", b""),
        (b"", b'{"a":', b"1", b"}", b""),
        (b'{"seq":1,"boot":0,"m":{"t":1},"x":', b"[", b"", b"]", b"}"),
        (b'[{"seq":1,"boot":0,"m":{"t":1}},', b'{"a":', b"1", b"}", b"]"),
    ),
)  # fmt: skip
TOML_KIT = Kit(
    tokens=(
        b"=", b"[", b"]", b"[[", b"]]", b"{", b"}", b"\n", b'"', b"'", b'"""', b"'''", b".",
        b",", b"#", b"\\", b"\\u0000", b"\\n", b"\x00", b"\xff", b"\r", b"\t", b"inf", b"nan",
        b"-inf", b"1979-05-27T07:32:00Z", b"1979-05-27", b"07:32:00", b"0x7f", b"0o7", b"0b1",
        b"true", b"rules", b"range", b"min", b"max", b"deadband", b"abs", b"pct", b"aggregate",
        b"stats", b"window_s", b"rename", b"convert", b"scale", b"factor", b"devices",
        b"metrics", b"name", b"gpio", b"mqtt", b"cloud", b"sensors", b"broker", b"retain",
        b'"a\\nb" = 1\n', b"[[rules]]\n", b"[gpio]\n", b"[[sensors]]\n",
    ),
    nests=(
        (b"\nx = ", b"[", b"1", b"]", b"\n"),
        (b"\nx = ", b"{a = ", b"1", b"}", b"\n"),
        (b"\nx", b".a", b" = 1", b"", b"\n"),
        (b"\n[", b"a.", b"a", b"", b"]\n"),
    ),
)  # fmt: skip
PROTO_KIT = Kit(
    tokens=(
        b"\x00", b"\xff" * 10, b"\x80", b"\x80\x80\x80\x80\x80\x80\x80\x80\x80\x01", b"\x08",
        b"\x0a", b"\x10", b"\x12", b"\x18", b"\x21", b"\x28\x01", b"\x32", b"\x11", b"\x1a",
        b"\x0b", b"\x0c", b"\x12\xff\xff\xff\xff\x0f", b"\x0a\x03\xff\xfe\xfd", b"\x7f",
        b"\x21\x00\x00\x00\x00\x00\x00\xf8\x7f", b"\x21\x00\x00\x00\x00\x00\x00\xf0\x7f",
    ),
    nests=(
        (b"", b"\x5b", b"", b"\x5c", b""),  # unknown field 11 as nested groups
        (b"\x12\x00", b"\x5b", b"", b"\x5c", b""),
    ),
)  # fmt: skip
OTA_KIT = Kit(
    tokens=(
        *JSON_KIT.tokens, b"\n", b'"ota"', b'"offer"', b'"chunk"', b'"swap"', b'"start"',
        b'"files"', b'"f"', b'"o"', b'"d"', b'"v"', b'"../x.py"', b'"/tmp/x.py"', b'"a\\\\b.py"',
        b'"\\u0000"', b'"ew_app.py"', b'"config.json"', b'"ota.part"', b"==", b"AAAA",
        b'"trial_s"', b"-1",
    ),
    nests=JSON_KIT.nests,
)  # fmt: skip


def mutate(draw: st.DrawFn, data: bytes, kit: Kit, others: Sequence[bytes]) -> bytes:
    """`data` after one to four mutations drawn from `kit`, some splicing in
    parts of `others`."""
    out = bytearray(data)
    for _ in range(draw(st.integers(1, 4))):
        _mutate_once(draw, out, kit, others)
    return bytes(out[:MAX_MUTANT])


def _mutate_once(draw: st.DrawFn, out: bytearray, kit: Kit, others: Sequence[bytes]) -> None:
    size = len(out)
    at = draw(st.integers(0, size))
    kind = draw(
        st.sampled_from(
            ("flip", "byte", "token", "delete", "truncate", "splice", "repeat", "number",
             "nest", "long")
        )
    )  # fmt: skip
    if kind == "flip" and size:
        out[min(at, size - 1)] ^= 1 << draw(st.integers(0, 7))
    elif kind == "byte" and size:
        out[min(at, size - 1)] = draw(st.integers(0, 255))
    elif kind == "token":
        out[at:at] = draw(st.sampled_from(kit.tokens))
    elif kind == "delete":
        del out[at : at + draw(st.integers(1, 64))]
    elif kind == "truncate":
        del out[at:]
    elif kind == "splice" and others:
        other = draw(st.sampled_from(others))
        out[at:] = other[draw(st.integers(0, len(other))) :]
    elif kind == "repeat" and size:
        end = min(size, at + draw(st.integers(1, 256)))
        part = bytes(out[at:end]) or bytes(out[-1:])
        times = _fit(draw(st.sampled_from(_REPEATS)), len(part), size)
        out[at:end] = part * times
    elif kind == "number":
        numbers = list(_NUMBER_RE.finditer(out))
        number = draw(st.sampled_from(_NUMBERS))
        if numbers:
            found = numbers[draw(st.integers(0, len(numbers) - 1))]
            out[found.start() : found.end()] = number
        else:
            out[at:at] = number
    elif kind == "nest":
        prefix, opening, inner, closing, suffix = draw(st.sampled_from(kit.nests))
        depth = _fit(draw(st.sampled_from(_REPEATS)), len(opening) + len(closing), size)
        out[at:at] = prefix + opening * depth + inner + closing * depth + suffix
    elif kind == "long":
        unit = draw(st.sampled_from(_LONG))
        out[at:at] = unit * _fit(draw(st.sampled_from(_REPEATS)), len(unit), size)


def _fit(times: int, unit: int, size: int) -> int:
    """`times`, fewer if that many `unit`-byte pieces would not fit the limit."""
    return max(1, min(times, (MAX_MUTANT - size) // max(1, unit)))


def mutants(target: str, kit: Kit) -> st.SearchStrategy[bytes]:
    pool = seeds(target)

    @st.composite
    def build(draw: st.DrawFn) -> bytes:
        return mutate(draw, draw(st.sampled_from(pool)), kit, pool)

    return build()


def maybe_mutated(
    strategy: st.SearchStrategy[bytes], kit: Kit, target: str
) -> st.SearchStrategy[bytes]:
    """What `strategy` builds, as it is or with a few mutations."""
    pool = seeds(target)

    @st.composite
    def build(draw: st.DrawFn) -> bytes:
        data = draw(strategy)
        return mutate(draw, data, kit, pool) if draw(st.booleans()) else data

    return build()


# -- values of the formats ----------------------------------------------------------

_text = st.text(max_size=12)
_floats = st.floats() | st.sampled_from([0.0, -0.0, 1e308, -1e308, 5e-324, 1e16, 2.0**63])
_ints = st.integers(-(2**70), 2**70) | st.sampled_from(
    [0, -1, 1, 65535, 65536, contract.MAX_COUNTER, contract.MAX_COUNTER + 1, 2**64, -(2**63)]
)
_metric_names = st.from_regex(contract.METRIC_NAME_PATTERN, fullmatch=True) | st.sampled_from(
    ["T", "", "a" * 33, "1a", "a-b", "temp_c", "rh", "light", "out_of_range", "é"]
)
_device_ids = st.from_regex(contract.DEVICE_ID_PATTERN, fullmatch=True) | st.sampled_from(
    ["", "UPPER", "-lead", "x" * 65, "sp ace", "a/b", "dev-1", "*", "gh-*", "a\nb"]
)
# What TOML can hold (no null); dates and times too, which JSON cannot.
_toml_scalars = (
    _text | _ints | _floats | st.booleans() | st.datetimes() | st.dates() | st.times()
)  # fmt: skip
_toml_values = st.recursive(
    _toml_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_text, inner, max_size=4),
    max_leaves=12,
)
_json_values = st.recursive(
    st.none() | st.booleans() | _ints | _floats | _text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_text, inner, max_size=4),
    max_leaves=12,
)


def _either(valid: st.SearchStrategy[Any], junk: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Mostly a value of the right kind, sometimes anything at all."""
    return st.one_of(valid, valid, valid, junk)


def toml_document(doc: dict[str, Any]) -> bytes:
    """`doc` as TOML, every value inline (TOML 1.0 reads it back as `doc`)."""
    return "".join(f"{_toml_key(k)} = {_toml_value(v)}\n" for k, v in doc.items()).encode()


def _toml_key(key: str) -> str:
    return _toml_string(key)


def _toml_string(text: str) -> str:
    # JSON's escapes are TOML's, except that TOML also wants DEL escaped.
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007f")


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return _toml_string(value)
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        items = ", ".join(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items())
        return "{" + items + "}"
    raise TypeError(f"no TOML for {type(value).__name__}")


# -- validate -------------------------------------------------------------------------

_counters = _either(st.integers(0, 10) | st.sampled_from([contract.MAX_COUNTER]), _json_values)
_timestamps = _either(st.floats(contract.EARLIEST_PLAUSIBLE_TS - 10, 2e9) | _floats, _json_values)
_metric_values = _either(_floats | st.booleans() | st.integers(-(2**70), 2**70), _json_values)
_wire_samples = st.fixed_dictionaries(
    {
        "seq": _counters,
        "boot": _counters,
        "m": _either(st.dictionaries(_metric_names, _metric_values, max_size=70), _json_values),
    },
    optional={"ts": _timestamps, "lo": _counters, "extra": _json_values},
)


@st.composite
def _payloads(draw: st.DrawFn) -> bytes:
    value = draw(st.one_of(_wire_samples, st.lists(_wire_samples, max_size=8), _json_values))
    indent = draw(st.sampled_from([None, 0, 2]))
    return json.dumps(value, allow_nan=True, indent=indent).encode()


# -- rules ------------------------------------------------------------------------------

_globs = _metric_names | st.sampled_from(["*", "t*", "temp_?", "[dp]*", "[", "*a*a*a*b", "**"])
_stats = st.sampled_from(["min", "max", "mean", "sum", "count", "first", "last", "median"])
_actions = st.one_of(
    st.fixed_dictionaries(
        {"range": _either(st.fixed_dictionaries(
            {},
            optional={"min": _either(_floats, _toml_values), "max": _either(_floats, _toml_values),
                      "action": _either(st.sampled_from(["drop", "flag"]), _toml_values),
                      "flag": _either(_metric_names, _toml_values)}), _toml_values)}),
    st.fixed_dictionaries(
        {"deadband": _either(st.fixed_dictionaries(
            {}, optional={"abs": _either(_floats, _toml_values), "pct": _floats,
                          "max_silence_s": _either(_floats, _toml_values)}), _toml_values)}),
    st.fixed_dictionaries({"min_interval_s": _either(_floats, _toml_values)}),
    st.fixed_dictionaries(
        {"aggregate": _either(st.fixed_dictionaries(
            {"window_s": _either(_floats, _toml_values)},
            optional={"stats": _either(st.lists(_stats, max_size=8), _toml_values)}),
            _toml_values)}),
    st.fixed_dictionaries(
        {"scale": _either(st.fixed_dictionaries(
            {}, optional={"factor": _either(_floats, _toml_values), "offset": _floats}),
            _toml_values)}),
    st.fixed_dictionaries({"convert": _either(st.sampled_from(sorted(CONVERSIONS)), _text)}),
    st.fixed_dictionaries({"rename": _either(_metric_names, _toml_values)}),
)  # fmt: skip
_rule_tables = st.builds(
    lambda action, more, extra: {**action, **more, **extra},
    _actions,
    st.fixed_dictionaries(
        {},
        optional={
            "name": _either(st.text(min_size=1, max_size=90), _toml_values),
            "devices": _either(_device_ids | st.lists(_device_ids, max_size=3), _toml_values),
            "metrics": _either(_globs | st.lists(_globs, max_size=3), _toml_values),
        },
    ),
    st.dictionaries(_text | st.sampled_from(["range", "rename", "x\ny"]), _toml_values, max_size=1)
    | st.just({}),
)


@st.composite
def _rules_documents(draw: st.DrawFn) -> bytes:
    tables = draw(st.lists(_rule_tables, max_size=5))
    return toml_document({"rules": tables})


# -- settings ----------------------------------------------------------------------------

_urls = st.sampled_from(
    ["mqtt://127.0.0.1:1883", "mqtt://user:pw@broker.local", "mqtt://[::1]:1883", "grpc://h:1",
     "grpc://127.0.0.1:50051", "mqtt://h:99999", "mqtt://", "mqtt://h:-1", "http://h", "",
     "mqtt://u:p@:1", "grpc://[::1", "mqtt://h:1/path?q#f", "mqtt://%zz@h"]
) | _text  # fmt: skip
_gpio_tables = st.fixed_dictionaries(
    {},
    optional={
        "device_id": _device_ids,
        "interval_s": _either(_floats, _toml_values),
        "i2c_sensors": _either(
            st.lists(st.fixed_dictionaries(
                {"kind": st.sampled_from(["bme280", "bmp180"]),
                 "address": st.sampled_from([0x76, 0x77, 0x80, -1])},
                optional={"prefix": _either(st.sampled_from(["", "out_", "Out"]), _text)}),
                max_size=9),
            _toml_values),
        "status_led_pin": _either(st.integers(0, 30), _toml_values),
        "button_pin": _either(st.integers(0, 30), _toml_values),
        "button_bounce_ms": _either(st.integers(-1, 10_000), _toml_values),
        "simulate": _either(st.booleans(), _toml_values),
    },
)  # fmt: skip
_FIELD_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "mqtt": _urls, "cloud": _urls, "broker": _urls,
    "db": st.sampled_from(["sqlite:///x.db", "memory://", "postgresql://u@h/db", "mysql://x"]),
    "bus": st.sampled_from(["memory://", "amqp://u:p@h/", "amqps://h", "kafka://h"]),
    "retain": st.sampled_from(["30d", "1h", "90m", "0s", "-1d", "1e999d", "d", "", "1y"]),
    "edge_id": _device_ids, "device_id": _device_ids | st.just("auto"),
    "http_port": _ints, "grpc_port": _ints,
    "rules": st.lists(_rule_tables, max_size=3),
    "gpio": _gpio_tables,
    "sensors": st.lists(st.dictionaries(_text | st.just("type"), _toml_values, max_size=3)),
    "sensor": st.sampled_from(["synthetic", "internal", "bme280", "dht22", "sht31"]),
    "log_level": st.sampled_from(["debug", "info", "warning", "error", "trace"]),
    "buffer_full_policy": st.sampled_from(["drop_oldest", "backpressure", "drop_newest"]),
    "cloud_compression": st.sampled_from(["none", "gzip", "zstd"]),
}  # fmt: skip
_FIELDS = sorted(
    {*EdgeSettings.__struct_fields__, *CloudSettings.__struct_fields__,
     *BoardSettings.__struct_fields__}
)  # fmt: skip


@st.composite
def _settings_documents(draw: st.DrawFn) -> bytes:
    names = draw(st.lists(st.sampled_from(_FIELDS) | _text, max_size=8, unique=True))
    doc = {}
    for name in names:
        plausible = _FIELD_VALUES.get(name, _floats | st.integers(-10, 10**9) | st.booleans())
        doc[name] = draw(_either(plausible, _toml_values))
    return toml_document(doc)


# -- proto --------------------------------------------------------------------------------

_uint64 = st.integers(0, 2**64 - 1) | st.sampled_from([contract.MAX_COUNTER + 1, 2**64 - 1])
_pb_metrics = st.builds(
    lambda name, value: pb.Metric(name=name, **value),
    _metric_names | _text,
    st.one_of(
        st.builds(lambda x: {"number": x}, _floats),
        st.builds(lambda x: {"flag": x}, st.booleans()),
        st.just({}),
    ),
)
_pb_samples = st.builds(
    pb.Sample,
    device_id=_device_ids | _text,
    boot=_uint64,
    seq=_uint64,
    ts=_floats,
    ts_from_edge=st.booleans(),
    metrics=st.lists(_pb_metrics, max_size=70),
)
_pb_messages = st.one_of(
    st.builds(lambda h: pb.EdgeMessage(hello=h), st.builds(pb.Hello, edge_id=_text,
                                                             software_version=_text)),
    st.builds(lambda b: pb.EdgeMessage(batch=b), st.builds(
        pb.Batch, batch_id=_uint64, samples=st.lists(_pb_samples, max_size=6))),
    st.builds(lambda s: pb.EdgeMessage(status=s), st.builds(
        pb.DeviceStatus, device_id=_device_ids | _text,
        status=st.sampled_from(contract.STATUSES) | _text, at=_floats)),
    st.builds(lambda s: pb.EdgeMessage(stats=s), st.builds(
        pb.EdgeStats, at=_floats, buffered=_uint64, oldest_age_s=_floats,
        delivery_rate=_floats)),
    st.builds(lambda c: pb.EdgeMessage(command_update=c), st.builds(
        pb.CommandUpdate, id=_text, device_id=_device_ids | _text,
        state=st.sampled_from(STATES) | _text, error=_text, at=_floats)),
)  # fmt: skip
_proto_bytes = st.one_of(
    _pb_messages.map(lambda m: m.SerializeToString()),
    _pb_samples.map(lambda s: s.SerializeToString()),
)


# -- ota ------------------------------------------------------------------------------------

_ota_names = st.sampled_from(
    ["ew_app.py", "ew_ring.mpy", "new.py", "empty.py", "../x.py", "/tmp/x.py", "a\\b.py",
     ".hidden.py", "x" * 38 + ".py", "config.json", "ota.part", "config.json\x00.py", "a.PY",
     "main.py", "ew_ota.mpy", "sub/ew_app.py", "..py", ""]
) | _text  # fmt: skip


@st.composite
def _ota_sessions(draw: st.DrawFn) -> bytes:
    """An offer, the chunks of the files it needs and a swap, each part of
    it right most of the time and wrong some of the time, with stray
    messages between."""
    files = draw(
        st.lists(
            st.tuples(
                _ota_names,
                st.binary(max_size=1300) | st.sampled_from(list(BOARD_FILES.values())),
            ),
            max_size=4,
            unique_by=lambda f: f[0],
        )
    )
    version = draw(st.sampled_from(["1.4", "", "1" * 200]) | _text)
    entries: list[Any] = []
    for name, content in files:
        sha = hashlib.sha256(content).hexdigest()
        entries.append(
            [
                name,
                draw(_either(st.just(len(content)), _json_values)),
                draw(_either(st.sampled_from([sha, sha.upper()]), _json_values)),
            ]
        )
    offer: dict[str, Any] = {"ota": "offer", "v": version, "files": entries}
    if draw(st.booleans()):
        offer["trial_s"] = draw(_json_values)
    messages: list[Any] = [offer]
    for name, content in files:
        for at in range(0, max(1, len(content)), 512):
            part = content[at : at + draw(st.sampled_from([512, 513, 100]))]
            encoded = base64.b64encode(part).decode()
            messages.append(
                {
                    "ota": "chunk",
                    "f": name,
                    "o": draw(_either(st.just(at), _json_values)),
                    "d": draw(_either(st.just(encoded), st.sampled_from(["!", "A", "====", ""]))),
                }
            )
    messages.append({"ota": "swap", "v": draw(_either(st.just(version), _json_values))})
    messages += draw(st.lists(st.sampled_from([{"ota": "start"}, {"ota": "x"}, []]), max_size=2))
    if draw(st.booleans()):
        messages = draw(st.permutations(messages))
    return b"\n".join(json.dumps(m).encode() for m in messages)


# -- per target -------------------------------------------------------------------------------

KITS: dict[str, Kit] = {
    "validate": JSON_KIT,
    "rules": TOML_KIT,
    "settings": TOML_KIT,
    "proto": PROTO_KIT,
    "ota": OTA_KIT,
}
_BUILT: dict[str, Callable[[], st.SearchStrategy[bytes]]] = {
    "validate": _payloads,
    "rules": _rules_documents,
    "settings": _settings_documents,
    "proto": lambda: _proto_bytes,
    "ota": _ota_sessions,
}


@functools.cache
def structured(target: str) -> st.SearchStrategy[bytes]:
    """Inputs built from the format's parts, some then mutated; and mutants
    of the seeds."""
    kit = KITS[target]
    return st.one_of(maybe_mutated(_BUILT[target](), kit, target), mutants(target, kit))


def any_bytes() -> st.SearchStrategy[bytes]:
    return st.binary(max_size=MAX_INPUT)
