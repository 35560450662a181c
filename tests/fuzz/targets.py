"""Fuzz targets: one plain function per input path, bytes in, its property
asserted, so that the corpus replay, Hypothesis and atheris all run the same
code.

A target returns when the input was handled as documented (accepted, or
refused the documented way) and raises otherwise: the product's own
exception, as it escaped, or an AssertionError naming the broken property.
Time and memory are not the targets' business: `run_bounded` measures them
around any target, the same way for every harness.

    validate   edge/validate.py, a board's telemetry and status payloads
    rules      edge/rules parse_rules, the [[rules]] of the edge's config
    settings   edgewire/settings.py load_settings, a TOML config file of the
               edge, the cloud and a board
    proto      bytes on the cloud's Ingest stream, decoded and handled as
               cloud/ingest.py does
    ota        device/ew_ota.py, a board's over-the-air update messages
"""

import asyncio
import contextlib
import hashlib
import json
import os
import sys
import tempfile
import time
import tomllib
import tracemalloc
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from google.protobuf.message import DecodeError

from cloud.bus.memory import MemoryBus
from cloud.config import CloudSettings
from cloud.downlink import Downlink
from cloud.ingest import Committer, TelemetryService
from cloud.storage.memory import MemoryStorage
from cloud.storage.threads import StorageThreads
from edge.config import EdgeSettings
from edge.rules import RuleChain, RuleError, parse_rules
from edge.rules.spec import is_glob
from edge.validate import Outcome, Reason, Reject, validate_status, validate_telemetry
from edgewire import contract
from edgewire.errors import ConfigError
from edgewire.paths import CHECKOUT, DEVICE_DIR, SHIMS_DIR
from edgewire.sample import Sample, contract_problem
from edgewire.settings import load_settings
from edgewire.v1 import edgewire_pb2 as pb
from edgewire.wire import decode_sample, encode_sample
from firmware.board_config import BoardSettings, render_config

# The board code runs under CPython through the simulator's shims, as in
# tests/test_ota.py; the shims go first because the venv holds an unrelated
# `micropython` package.
for _folder in (str(SHIMS_DIR), str(DEVICE_DIR)):
    if _folder not in sys.path:
        sys.path.insert(0, _folder)
import ew_board  # type: ignore[import-not-found]  # noqa: E402
import ew_ota  # type: ignore[import-not-found]  # noqa: E402
import ew_trial  # type: ignore[import-not-found]  # noqa: E402

Target = Callable[[bytes], None]

# The largest payload a board may send (contract §2); every input path is
# fuzzed up to about this size.
MAX_INPUT = contract.MAX_PAYLOAD_BYTES
# Per input, for run_bounded: well above what any seed takes (a few ms), so a
# busy CI machine does not fail it, and far below what a hang would take.
TIME_LIMIT_S = 2.0
# Per input, traced by tracemalloc. The worst 64 KB inputs that are merely
# big take about 8 MB: `[0,0,...]`, 32 K bad elements that each become a dead
# letter, and a TOML file of 9,000 tables. What grows faster than the input
# goes far past this (a 16 KB TOML key of 8,000 dotted parts: 250 MB).
MEMORY_LIMIT_BYTES = 16 * 1024 * 1024
# tomllib holds every prefix of a dotted key `a.b.c...` as a tuple of its own
# (a pending flag each) until the line is done: memory grows with the square
# of its parts. Past this many dots on one line a TOML input is
# not run at all, so that a fuzzer cannot take gigabytes from the machine
# (KNOWN_FAILURES in tests/test_fuzz.py has the bug; drop this with its fix).
TOML_DOTS_PER_LINE_MAX = 3000

NOW = 1_800_000_000.0  # the edge's clock for the validator: fixed, so runs repeat
DEVICE = "dev-1"


# -- validate -----------------------------------------------------------------

_GOOD_PAYLOAD = b'{"seq": 1, "boot": 0, "m": {"t": 1}}'


def validate(data: bytes) -> None:
    """A payload becomes samples or dead letters, never an exception; what
    is accepted honours the contract the cloud checks, and survives the
    edge's encoder."""
    outcome = validate_telemetry(DEVICE, data, NOW)
    assert isinstance(outcome, Outcome)
    assert outcome.accepted or outcome.rejected, "a payload vanished: no sample, no dead letter"
    for accepted in outcome.accepted:
        sample = accepted.sample
        assert sample.device_id == DEVICE
        problem = contract_problem(sample)
        assert problem is None, f"accepted what the cloud refuses: {problem}"
        assert accepted.lo is None or 0 <= accepted.lo <= contract.MAX_COUNTER
        assert decode_sample(encode_sample(sample)) == sample
    for reject in outcome.rejected:
        _check_reject(reject)
    status = validate_status(DEVICE, data)
    if isinstance(status, str):
        assert status in contract.STATUSES
    else:
        _check_reject(status)
        assert status.reason is Reason.BAD_STATUS
    # The same bytes as the device id of a topic (any text can be a topic
    # level): a good payload is accepted under a valid id, dead-lettered under
    # any other.
    device_id = data[:100].decode("utf-8", "replace")
    by_topic = validate_telemetry(device_id, _GOOD_PAYLOAD, NOW)
    if contract.DEVICE_ID_RE.match(device_id):
        assert len(by_topic.accepted) == 1
    else:
        assert [r.reason for r in by_topic.rejected] == [Reason.BAD_DEVICE_ID]


def _check_reject(reject: Reject) -> None:
    assert isinstance(reject.reason, Reason)
    assert isinstance(reject.payload, bytes)
    assert isinstance(reject.detail, str)
    assert reject.detail, "a dead letter says why"


# -- rules --------------------------------------------------------------------


def rules(data: bytes) -> None:
    """parse_rules takes what a TOML file holds: a chain, or RuleError with
    one line; a chain it made then takes samples without raising.

    The input is a TOML document: its `rules` array if it has one, else the
    document itself as the one rule table. Bytes that are not TOML are the
    settings target's business (load_settings reads the file).
    """
    doc = _toml(data)
    if doc is None:
        return
    # The parse was tomllib's work, measured by the settings target: from
    # here on, only what parse_rules and the chain take counts.
    if tracemalloc.is_tracing():
        tracemalloc.reset_peak()
    raw = doc.get("rules", [doc])
    try:
        chain = parse_rules(raw)
    except RuleError as exc:
        one_line(exc)
        return
    _run_chain(chain, raw)


def _toml(data: bytes) -> dict[str, Any] | None:
    if too_dotted(data):
        return None
    try:
        return tomllib.loads(data.decode("utf-8"))
    except (ValueError, RecursionError):
        # Not UTF-8, not TOML, or what tomllib fails on otherwise (an integer
        # of over 4300 digits, nesting past the recursion limit): the settings
        # target holds load_settings to account for those.
        return None


def _run_chain(chain: RuleChain, raw: list[dict[str, Any]]) -> None:
    samples = _samples_for(chain)
    for sample in samples:
        out = chain.apply(sample)
        assert out is None or (out.key == sample.key and out.ts == sample.ts), (sample, out)
        if out is not None:
            assert contract_problem(out) is None, (out, contract_problem(out))
    state = chain.take_changed_state()
    assert all(isinstance(v, bytes | None) for v in state.values())
    chain.counters()
    # A reload with the same config: state handed back, then carried over.
    again = parse_rules(raw)
    again.restore_state({k: v for k, v in state.items() if v is not None})
    again.carry_over(chain)
    for sample in samples[:2]:
        again.apply(sample)
    again.take_changed_state()


def _samples_for(chain: RuleChain) -> list[Sample]:
    """A few valid samples that the chain's own device ids and metric names
    reach, so the rules run rather than only match nothing."""
    devices = {DEVICE}
    names = {"t"}
    for spec in chain.specs:
        devices.update(d for d in spec.devices if not is_glob(d))
        names.update(n for n in spec.metrics if not is_glob(n))
    devices_in = sorted(devices)[:4]
    names_in = sorted(names)[: contract.MAX_METRICS - 1]
    values: list[float | bool] = [1.0, -0.0, 21.5, 1e300, True, -1e-300, 1e6]
    samples = []
    for n in range(6):
        m: dict[str, float | bool] = {
            name: values[(n + i) % len(values)] for i, name in enumerate(names_in)
        }
        for device_id in devices_in:
            samples.append(Sample(device_id, 1, n, NOW + 7.5 * n, m))
    return samples


# -- settings -----------------------------------------------------------------

_MODELS: tuple[type[EdgeSettings] | type[CloudSettings] | type[BoardSettings], ...] = (
    EdgeSettings,
    CloudSettings,
    BoardSettings,
)


def settings(data: bytes) -> None:
    """A config file, as bytes on disk, gives each service's settings or
    ConfigError with one line; settings that loaded are usable as the
    services use them (their checks ran at load). An input too dotted for
    tomllib (TOML_DOTS_PER_LINE_MAX) is skipped."""
    if too_dotted(data):
        return
    with tempfile.TemporaryDirectory(prefix="edgewire-fuzz-") as folder:
        path = Path(folder) / "config.toml"
        path.write_bytes(data)
        for model in _MODELS:
            try:
                loaded = load_settings(model, path, {}, environ={})
            except ConfigError as exc:
                one_line(exc)
                continue
            _use_settings(loaded)


def too_dotted(data: bytes) -> bool:
    return dotted_parts(data) > TOML_DOTS_PER_LINE_MAX


def dotted_parts(data: bytes) -> int:
    """Dots on the line of the input with the most."""
    return max(line.count(b".") for line in data.split(b"\n"))


def _use_settings(loaded: EdgeSettings | CloudSettings | BoardSettings) -> None:
    if isinstance(loaded, EdgeSettings):
        loaded.mqtt_endpoint  # noqa: B018  (a property that parses: validated at load)
        loaded.cloud_endpoint  # noqa: B018
        parse_rules(loaded.rules)
    elif isinstance(loaded, CloudSettings):
        loaded.retain_s  # noqa: B018
    else:
        # `edgewire flash` turns the board's settings into its config.json:
        # a missing or bad broker is a ConfigError, anything else renders.
        try:
            rendered = render_config(loaded, DEVICE)
        except ConfigError as exc:
            one_line(exc)
        else:
            assert isinstance(json.loads(rendered), dict)


def one_line(exc: BaseException) -> None:
    """A documented error says what is wrong in one line."""
    message = str(exc)
    assert message, f"{type(exc).__name__} with no message"
    assert "\n" not in message, f"not one line: {message!r}"
    assert "\r" not in message, f"not one line: {message!r}"


# -- proto --------------------------------------------------------------------


def proto(data: bytes) -> None:
    """Bytes on the Ingest stream decode to an EdgeMessage or raise
    DecodeError. cloud/ingest.py catches nothing there: grpc's server turns
    the DecodeError of its request deserializer into the end of the call
    (status UNKNOWN), and the edge reconnects and sends again. A message
    that decodes goes through the cloud's handling of its kind without
    raising, each bad sample of a batch refused, counted and acknowledged.
    The same bytes as one Sample (edgewire.wire.decode_sample) and as what
    the edge decodes from the cloud (CloudMessage) decode or raise
    DecodeError too."""
    try:
        message = pb.EdgeMessage.FromString(data)
    except DecodeError:
        pass
    else:
        _ingest(message)
    try:
        sample = decode_sample(data)
    except DecodeError:
        pass
    else:
        if contract_problem(sample) is None:
            assert decode_sample(encode_sample(sample)) == sample
    with contextlib.suppress(DecodeError):
        pb.CloudMessage.FromString(data)


def _ingest(message: pb.EdgeMessage) -> None:
    """The message through the cloud's own handling of an admitted edge's
    stream, over its real in-process parts: memory storage, the memory bus,
    the downlink."""
    asyncio.run(_ingest_async(message))


async def _ingest_async(message: pb.EdgeMessage) -> None:
    storage = StorageThreads(MemoryStorage())
    try:
        bus = MemoryBus()
        service = TelemetryService(Committer(storage, bus), storage, bus, Downlink(storage, bus))
        sent: list[pb.CloudMessage] = []

        async def write(answer: pb.CloudMessage) -> None:
            sent.append(answer)

        await service._handle("edge-1", message, write, cast(Any, None))
        kind = message.WhichOneof("kind")
        if kind == "batch":
            [answer] = sent
            assert answer.ack.batch_id == message.batch.batch_id
            assert answer.ack.stored + answer.ack.duplicates + answer.ack.refused == len(
                message.batch.samples
            )
        elif kind == "status":
            devices = {row.id for row in await storage.devices()}
            assert devices <= {message.status.device_id}
            if devices:
                assert contract.is_device_id(message.status.device_id)
        else:
            assert sent == []
    finally:
        storage.close()


# -- ota ----------------------------------------------------------------------

# What the board holds before the messages: two program files and a config.
BOARD_FILES = {
    "ew_app.py": b"print('app 1')\n",
    "ew_ring.mpy": bytes(range(200)),
    "config.json": b'{"device_id": "board-1"}',
}
_OTA_KINDS = ("ready", "need", "got", "swapped", "refused")
# Messages per input, at most: a window of one, so a real update is a few
# dozen; this bounds the filesystem work of a 64 KB input of tiny messages.
_OTA_MESSAGES = 400


def ota(data: bytes) -> None:
    """Each line of the input is one message on the board's ota topic. The
    board answers every one with bytes (refused, when bad), never raises,
    touches no path outside its folder, and a program file under its own
    name is either the old one or matches a SHA-256 some offer named for it."""
    with tempfile.TemporaryDirectory(prefix="edgewire-fuzz-") as outer:
        folder = Path(outer) / "board"
        folder.mkdir()
        for name, content in BOARD_FILES.items():
            (folder / name).write_bytes(content)
        handler = ew_ota.Ota(ew_board.Board(str(folder) + "/"), b"edgewire/board-1/")
        offered: dict[str, set[str]] = {}
        with _confined(folder):
            for message in data.split(b"\n")[:_OTA_MESSAGES]:
                _note_offer(message, offered)
                reply = handler.handle(message)
                assert isinstance(reply, bytes), f"answered {reply!r}"
                assert json.loads(reply)["ota"] in _OTA_KINDS, reply
        for path in folder.iterdir():
            assert path.is_file(), f"not a flat file: {path.name}"
            name, content = path.name, path.read_bytes()
            if name == "config.json":
                assert content == BOARD_FILES[name], "an update reached config.json"
            elif name.endswith((".py", ".mpy")) and content != BOARD_FILES.get(name):
                # .new, .old, ota.part and ota.json are not loaded as code.
                digest = hashlib.sha256(content).hexdigest()
                assert digest in offered.get(name, ()), f"{name} replaced, unchecked"


class _ConfinedOs:
    """The `os` of the board code under test: a path outside the board's
    folder fails the target (an AssertionError, which Ota.handle does not
    catch), before the real call; reads too, since a hash of any file the
    host names would leak it."""

    _PATHS = frozenset({"stat", "statvfs", "remove", "rename", "mkdir", "rmdir", "listdir"})

    def __init__(self, folder: Path) -> None:
        self._folder = os.path.normpath(folder)

    def check(self, path: object) -> None:
        if isinstance(path, str | bytes):
            # Resolved as text: the real call may refuse it (a NUL) on its own.
            full = os.path.normpath(os.path.join(os.getcwd(), os.fsdecode(path)))
            inside = full == self._folder or full.startswith(self._folder + os.sep)
            assert inside, f"the board code reached {path!r}, outside its folder"

    def open(self, path: Any, *args: Any, **kwargs: Any) -> Any:
        self.check(path)
        return open(path, *args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        real = getattr(os, name)
        if name not in self._PATHS:
            return real

        def checked(*paths: Any) -> Any:
            for path in paths:
                self.check(path)
            return real(*paths)

        return checked


@contextlib.contextmanager
def _confined(folder: Path) -> Iterator[None]:
    """`os` and `open` of the board modules replaced by _ConfinedOs's for
    the while (tests/test_ota.py imports the same modules: put back after)."""
    confined = _ConfinedOs(folder)
    modules = (ew_ota, ew_trial, ew_board)
    saved = [(module, dict(vars(module))) for module in modules]
    for module in modules:
        module.open = confined.open
        if hasattr(module, "os"):
            module.os = confined
    try:
        yield
    finally:
        for module, names in saved:
            for name in ("open", "os"):
                if name in names:
                    setattr(module, name, names[name])
                elif hasattr(module, name):
                    delattr(module, name)


def _note_offer(message: bytes, offered: dict[str, set[str]]) -> None:
    """Remember the (name, sha256) pairs an offer names, read as leniently
    as the board reads them."""
    try:
        parsed = json.loads(message)
    except (ValueError, RecursionError):
        return
    if not isinstance(parsed, dict) or parsed.get("ota") != "offer":
        return
    files = parsed.get("files")
    for entry in files if isinstance(files, list) else ():
        if isinstance(entry, list) and len(entry) == 3:
            name, _, sha = entry
            if isinstance(name, str) and isinstance(sha, str):
                offered.setdefault(name, set()).add(sha.lower())


# -- every target, and how they are run ---------------------------------------

TARGETS: dict[str, Target] = {
    "validate": validate,
    "rules": rules,
    "settings": settings,
    "proto": proto,
    "ota": ota,
}


def run_bounded(
    target: Target,
    data: bytes,
    *,
    time_limit_s: float | None = TIME_LIMIT_S,
    memory_limit: int = MEMORY_LIMIT_BYTES,
) -> None:
    """`target(data)`, then fail if it took longer than `time_limit_s` (None:
    unchecked, for Hypothesis, whose deadline does it) or its peak of traced
    memory grew past `memory_limit`. A hang is stopped by pytest-timeout
    (or libFuzzer's -timeout), not here.

    Memory is traced for this call if nothing traces it already; a caller
    running many inputs starts tracemalloc once around them all instead,
    as test_fuzz.py and __main__.py do: starting and stopping it for each
    input costs the process about a kilobyte each time, for good."""
    tracing = tracemalloc.is_tracing()
    if not tracing:
        tracemalloc.start()
    tracemalloc.reset_peak()
    before, _ = tracemalloc.get_traced_memory()
    started = time.perf_counter()
    try:
        target(data)
    finally:
        elapsed = time.perf_counter() - started
        _, peak = tracemalloc.get_traced_memory()
        if not tracing:
            tracemalloc.stop()
    if time_limit_s is not None and elapsed > time_limit_s:
        # Once more: a slow input is slow twice, a busy machine pauses once.
        started = time.perf_counter()
        target(data)
        elapsed = time.perf_counter() - started
        assert elapsed <= time_limit_s, f"{elapsed:.2f} s for {len(data)} bytes"
    grown = peak - before
    assert grown <= memory_limit, f"{grown / 2**20:.1f} MB traced for {len(data)} bytes"


@dataclass(frozen=True)
class Known:
    """A product bug a target found and that is not fixed yet. Its failure
    is told apart from others by target, exception type, where it was raised
    (the start of raised_at's answer: "edge/validate.py", or with the
    function, "edge/validate.py:_validate_elements"; a broken property is
    raised in tests/fuzz/targets.py) and a fragment of its message."""

    target: str
    found: str  # its input, corpus/<target>/<found>
    raises: type[BaseException]
    where: str
    reason: str
    says: str = ""
    # For a failure that names no place of its own (a memory or time limit):
    # what tells its inputs from others.
    given: Callable[[bytes], bool] | None = None

    def matches(self, target: str, data: bytes, exc: BaseException) -> bool:
        return (
            target == self.target
            and isinstance(exc, self.raises)
            and raised_at(exc).startswith(self.where)
            and self.says in str(exc)
            and (self.given is None or self.given(data))
        )


def raised_at(exc: BaseException) -> str:
    """`path:function` of the innermost frame of the checkout's own code
    (not the venv's) that `exc` passed through, the path relative to the
    checkout; product frames win over the targets' own."""
    ours = ""
    product = ""
    tb = exc.__traceback__
    while tb is not None:
        code = tb.tb_frame.f_code
        path = Path(code.co_filename)
        if path.is_relative_to(CHECKOUT) and not path.is_relative_to(CHECKOUT / ".venv"):
            where = f"{path.relative_to(CHECKOUT)}:{code.co_name}"
            if path.is_relative_to(CHECKOUT / "tests"):
                ours = where
            else:
                product = where
        tb = tb.tb_next
    return product or ours
