"""`edgewire flash`: put the board program and its config on a board.

Rule: what to copy is decided once, by `make_plan` from the files wanted and
the hashes the board reports, and nothing else decides it: a file whose
SHA-256 already matches is never sent again, so flashing twice costs one
look at the board. Everything written is read back and hashed on the board.

    settings (flags > EDGEWIRE_* > --config TOML) → config.json (+ ca.der: mqtts://)
    firmware.build (mpy-cross) + those            → payloads
    survey of the board (one command)             → plan: copy / skip / remove
    space check, copy, verify, clock, soft reset  → Report

The Wi-Fi password goes into config.json and nowhere else: no plan line,
error or report shows it.
"""

import json
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field, replace
from functools import cached_property
from hashlib import sha256
from pathlib import Path

from edgewire.errors import ConfigError
from edgewire.urls import parse_endpoint
from firmware.board_config import (
    BOARD_CA,
    CONFIG,
    BoardSettings,
    board_ca,
    broker_endpoint,
    find_ca,
    render_config,
)
from firmware.boardfs import NEW, BoardFs, Stored, board_path
from firmware.micropython_image import (
    Chip,
    EsptoolStep,
    Uf2Step,
    install_micropython,
    micropython_step,
)
from firmware.rawrepl import FlashError, OutOfSpaceError, PortError, RawRepl, ReplError
from firmware.watch import BoardWatcher, hide_password

__all__ = [  # what callers take from here (the CLI, tests, bench)
    "BoardSettings", "EsptoolStep", "FlashOptions", "Payload", "Report", "Uf2Step",
    "describe_plan", "flash", "hide_password", "make_plan", "micropython_step", "render_config",
]  # fmt: skip

# -- the plan (pure) ----------------------------------------------------------


@dataclass(frozen=True)
class Payload:
    """A file that belongs on the board."""

    path: str
    data: bytes = field(repr=False)

    @cached_property
    def sha256(self) -> str:
        return sha256(self.data).hexdigest()


@dataclass(frozen=True)
class Plan:
    copy: tuple[Payload, ...]
    skip: tuple[Payload, ...]
    remove: tuple[tuple[str, str], ...]  # (path, why)
    on_board: Mapping[str, Stored | None]

    @property
    def copy_bytes(self) -> int:
        return sum(len(p.data) for p in self.copy)

    @property
    def dirs(self) -> list[str]:
        """Folders the copied files go into (parents first)."""
        found = {p.path.rsplit("/", 1)[0] for p in self.copy if "/" in p.path}
        return sorted(found)

    def space_needed(self, block_size: int) -> int:
        """Free bytes the board needs before the copy starts: files take
        whole blocks, and while a file is copied its old version and the new
        one both exist (the old goes at the rename)."""

        def blocks(size: int) -> int:
            return -(-size // block_size) * block_size

        def old(path: str) -> int:
            stored = self.on_board.get(path)
            return blocks(stored.size) if stored else 0

        running = -sum(old(path) for path, _ in self.remove)  # removed first
        peak = 0
        for payload in self.copy:
            new = blocks(len(payload.data))
            peak = max(peak, running + new)
            running += new - old(payload.path)
        return peak


def survey_paths(wanted: Sequence[str]) -> list[str]:
    """Every path the plan needs to know about on the board."""
    paths = []
    for path in wanted:
        paths += [path, path + NEW]
        if path.endswith(".mpy"):
            paths.append(path[: -len(".mpy")] + ".py")
    return paths


def make_plan(
    payloads: Sequence[Payload], on_board: Mapping[str, Stored | None], force: bool = False
) -> Plan:
    copy, skip, remove = [], [], []
    for payload in payloads:
        stored = on_board.get(payload.path)
        if stored is not None and stored.sha256 == payload.sha256 and not force:
            skip.append(payload)
        else:
            copy.append(payload)
        if on_board.get(payload.path + NEW) is not None:
            remove.append((payload.path + NEW, "left by a copy that was cut off"))
        if payload.path.endswith(".mpy"):
            source = payload.path[: -len(".mpy")] + ".py"
            if on_board.get(source) is not None:
                remove.append((source, f"it would be imported instead of {payload.path}"))
    return Plan(tuple(copy), tuple(skip), tuple(remove), dict(on_board))


def describe_plan(plan: Plan) -> list[str]:
    lines = [
        f"copy {len(plan.copy)} files ({plan.copy_bytes:,} bytes), "
        f"skip {len(plan.skip)} unchanged, remove {len(plan.remove)}"
    ]
    for payload in plan.copy:
        why = "changed" if plan.on_board.get(payload.path) else "new"
        lines.append(f"  copy    {payload.path:<28} {len(payload.data):>7,} B  ({why})")
    for payload in plan.skip:
        lines.append(f"  skip    {payload.path:<28} {len(payload.data):>7,} B  (same SHA-256)")
    for path, why in plan.remove:
        lines.append(f"  remove  {path:<28} {'':>9}  ({why})")
    return lines


def load_payloads(built: Path, files: Sequence[Path]) -> list[Payload]:
    """The build's files, at their paths relative to `built`."""
    return [
        Payload(board_path(file.relative_to(built).as_posix()), file.read_bytes()) for file in files
    ]


# -- the board, as flash sees it ----------------------------------------------

_SURVEY = """\
import sys,os,json,binascii
try:
 import machine
except ImportError:
 machine=None
_u=getattr(machine,'unique_id',None)
_s=os.statvfs('.')
print(json.dumps([sys.platform,binascii.hexlify(_u()).decode() if _u else None,\
hasattr(machine,'RTC'),_s[0],_s[0]*_s[4]]))
"""


@dataclass(frozen=True)
class Survey:
    platform: str
    unique_id: str | None
    has_rtc: bool
    block_size: int
    free_bytes: int
    files: Mapping[str, Stored | None]


def survey(repl: RawRepl, fs: BoardFs, paths: Sequence[str]) -> Survey:
    out = repl.exec(_SURVEY).decode(errors="replace").strip()
    try:
        platform, unique_id, has_rtc, block, free = json.loads(out)
        facts = Survey(str(platform), unique_id, bool(has_rtc), int(block), int(free), {})
    except (ValueError, TypeError) as exc:
        raise ReplError(f"unexpected answer from the board: {out[:200]!r}") from exc
    return replace(facts, files=fs.stat_files(paths))


def resolve_device_id(wanted: str, found: Survey) -> str:
    if wanted != "auto":
        return wanted
    if not found.unique_id:
        raise ConfigError(
            f"--device-id auto: this board ({found.platform}) reports no "
            "machine.unique_id(); give one with --device-id NAME"
        )
    return found.unique_id


def set_clock(repl: RawRepl, found: Survey) -> str:
    """Set the board's RTC to UTC now; what was done, for the report."""
    if not found.has_rtc:
        host = "; the unix port runs on the host's clock" if found.platform == "linux" else ""
        return f"not set ({found.platform} has no machine.RTC{host})"
    now = time.time()
    t = time.gmtime(now)
    fields = (t.tm_year, t.tm_mon, t.tm_mday, t.tm_wday, t.tm_hour, t.tm_min, t.tm_sec, 0)
    repl.exec(f"import machine\nmachine.RTC().datetime({fields!r})")
    return "set to " + time.strftime("%Y-%m-%dT%H:%M:%SZ", t)


# -- flashing -----------------------------------------------------------------


@dataclass(frozen=True)
class FlashOptions:
    port: str
    dry_run: bool = False
    force: bool = False
    wait: bool = False
    wait_timeout_s: float = 60.0
    wait_broker: str | None = None
    micropython: Path | None = None
    chip: Chip = "auto"
    baud: int = 460800
    erase: bool = False
    drives: Sequence[Path] | None = None
    progress: bool = True  # click progress bars on stderr
    connect_timeout_s: float = 5.0


@dataclass
class Report:
    device_id: str = ""
    platform: str = ""
    copied: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    file_bytes: int = 0  # file data copied
    wire_bytes: int = 0  # everything sent to the board
    seconds: float = 0.0
    clock: str = ""
    first_sample: bytes | None = None

    def summary(self, port: str) -> str:
        return (
            f"flashed {self.device_id} at {port} ({self.platform}): copied "
            f"{len(self.copied)} files ({self.file_bytes:,} bytes), {len(self.skipped)} "
            f"unchanged, all verified; clock {self.clock}; soft-reset. "
            f"{self.seconds:.2f} s, {self.wire_bytes:,} bytes sent"
        )


Progress = Callable[[int], None]


def flash(
    options: FlashOptions,
    settings: BoardSettings,
    echo: Callable[[str], None],
    built: tuple[Path, list[Path]] | None = None,
    on_chunk: Progress | None = None,
) -> Report:
    """Install (or, with dry_run, plan) the board program at options.port.
    `built`: an existing firmware.build output; `on_chunk(n)` hears every
    chunk of file data written (tests cut the cable there)."""
    broker = broker_endpoint(settings)  # a bad --broker fails before anything is touched
    ca = board_ca(settings)  # ... and so does an mqtts:// one without its CA
    watch = (
        parse_endpoint(options.wait_broker, ("mqtt", "mqtts")) if options.wait_broker else broker
    )
    watch_ca = find_ca(settings) if options.wait and watch.tls else None
    step = None
    if options.micropython is not None:
        step = micropython_step(
            options.micropython,
            options.port,
            options.chip,
            options.baud,
            options.erase,
            options.drives,
        )
        if options.dry_run:
            echo("plan: " + step.describe())
            echo(f"then: install the board program over {options.port} (every file)")
            return Report()
        install_micropython(step, echo)
    with _build(built) as (root, files), ExitStack() as stack:
        started = time.monotonic()
        # A board that has just had MicroPython written reboots, and a USB
        # one leaves and comes back: its port is waited for.
        repl = stack.enter_context(
            _connect(options.port, options.connect_timeout_s, 15.0 if step else 0.0)
        )
        program = load_payloads(root, files)
        if ca is not None:
            program.append(Payload(BOARD_CA, ca))
        found, plan, device_id = plan_flash(repl, settings, program, options)
        report = Report(device_id=device_id, platform=found.platform)
        report.skipped = [p.path for p in plan.skip]
        if options.dry_run:
            echo(
                f"board at {options.port}: {found.platform}, {found.free_bytes:,} bytes free; "
                f"device id {device_id}; broker {broker.redacted()}"
            )
            for line in describe_plan(plan):
                echo(line)
            echo("(dry run: nothing written)")
            return report
        apply_plan(repl, found, plan, report, options.progress, on_chunk)
        # Listening before the reset: the board's first `online` is then heard
        # live, and a retained one from before this flash is told apart.
        watcher = None
        if options.wait:
            watcher = stack.enter_context(BoardWatcher(watch, device_id, watch_ca))
        repl.soft_reset()
        repl.run_main()
        # Closed before waiting: a port held open but not read fills up, and
        # a board printing to it could stall.
        repl.close()
        report.seconds = time.monotonic() - started
        report.wire_bytes = repl.bytes_written
        echo(report.summary(options.port))
        if watcher is not None:
            report.first_sample = watcher.wait(options.wait_timeout_s)
            echo(f"{device_id} is online; first sample: {report.first_sample.decode()}")
    return report


def plan_flash(
    repl: RawRepl, settings: BoardSettings, program: list[Payload], options: FlashOptions
) -> tuple[Survey, Plan, str]:
    """Look at the board once; what to do there, and the board's device id."""
    # The config's bytes need the device id, which may come from the board:
    # the survey asks about config.json along with the rest.
    found = survey(repl, BoardFs(repl), survey_paths([*(p.path for p in program), CONFIG]))
    if found.platform == "esp8266" and broker_endpoint(settings).tls:
        raise ConfigError(
            "this board is an ESP8266: its TLS (axTLS) cannot check the broker's certificate,"
            " so it cannot use an mqtts:// broker; give it mqtt:// (see hardware.md)"
        )
    device_id = resolve_device_id(settings.device_id, found)
    payloads = [*program, Payload(CONFIG, render_config(settings, device_id))]
    return found, make_plan(payloads, found.files, options.force), device_id


def apply_plan(
    repl: RawRepl,
    found: Survey,
    plan: Plan,
    report: Report,
    progress: bool,
    on_chunk: Progress | None = None,
) -> None:
    """Check space, remove, copy, verify, set the clock; `report` says what was done."""
    fs = BoardFs(repl)
    needed = plan.space_needed(found.block_size)
    if needed > found.free_bytes:
        raise OutOfSpaceError(
            f"board has {found.free_bytes:,} bytes free, these files need {needed:,} "
            f"({len(plan.copy)} files, {plan.copy_bytes:,} bytes, in "
            f"{found.block_size}-byte blocks): remove files from the board, or erase it"
        )
    for path, _ in plan.remove:
        fs.remove(path)
        report.removed.append(path)
    for folder in plan.dirs:
        fs.mkdir_p(folder)

    with _bar(progress, plan.copy_bytes, "copying  ") as copied:

        def advance(n: int) -> None:
            copied(n)
            if on_chunk is not None:
                on_chunk(n)

        for payload in plan.copy:
            fs.write(payload.path, payload.data, advance)
            report.copied.append(payload.path)
            report.file_bytes += len(payload.data)
    with _bar(progress, len(plan.copy), "verifying") as verified:
        for payload in plan.copy:
            got = fs.sha256(payload.path)
            if got != payload.sha256:
                raise FlashError(
                    f"{payload.path} on the board does not match what was sent "
                    f"(SHA-256 {got or 'missing'}, expected {payload.sha256}); flash again"
                )
            verified(1)
    report.clock = set_clock(repl, found)


def _connect(port: str, enter_timeout_s: float, appear_timeout_s: float) -> RawRepl:
    """The board's raw REPL; a port that is not there (yet) is waited for
    up to appear_timeout_s."""
    deadline = time.monotonic() + appear_timeout_s
    while True:
        try:
            repl = RawRepl(port)
        except PortError:
            if time.monotonic() >= deadline or os.path.exists(port):
                raise
            time.sleep(0.2)
            continue
        try:
            repl.enter(enter_timeout_s)
        except FlashError:
            repl.close()
            raise
        return repl


@contextmanager
def _build(built: tuple[Path, list[Path]] | None) -> Iterator[tuple[Path, list[Path]]]:
    if built is not None:
        yield built
        return
    from firmware.build import build

    with tempfile.TemporaryDirectory(prefix="edgewire-flash-") as tmp:
        root = Path(tmp)
        yield root, build(root)


@contextmanager
def _bar(show: bool, length: int, label: str) -> Iterator[Progress]:
    if not show or length == 0:
        yield lambda n: None
        return
    import click

    with click.progressbar(length=length, label=label, file=sys.stderr) as bar:
        yield bar.update
