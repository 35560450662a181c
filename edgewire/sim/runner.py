"""`edgewire sim`: N boards, each the real device/ program.

`--runtime cpython` (default): each board is a thread running
device/ew_app.App over device/ew_board.Board, with CPython shims for
`usocket`, `machine` and `network` on the path. `--runtime micropython`: each
board is a process of the real MicroPython unix port, with a hard heap cap,
running the compiled program (see edgewire/sim/micropython.py). Either way
every board has a folder of its own as its filesystem (config.json, its boot
counter), and nothing above the socket is simulated: the boards speak MQTT
through micropython-lib's umqtt.simple to a real broker.
"""

import json
import os
import signal
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

from edgewire import contract
from edgewire.errors import ConfigError
from edgewire.logs import get_logger
from edgewire.paths import SHIMS_DIR, device_dir
from edgewire.urls import parse_endpoint
from firmware.board_config import BOARD_CA, ca_for_board

log = get_logger("edgewire.sim")


@dataclass(frozen=True)
class SimOptions:
    broker: str
    devices: int
    rate: float
    count: int | None
    timeout: float | None
    prefix: str
    runtime: str
    data_dir: Path | None
    heap: str = "32K"
    ca: Path | None = None


def board_config(
    device_id: str,
    host: str,
    port: int,
    rate: float,
    count: int | None,
    user: str | None = None,
    password: str | None = None,
    ring_bytes: int = 65536,
) -> dict[str, Any]:
    """The config.json a board gets (the same keys `edgewire flash` writes)."""
    return {
        "device_id": device_id,
        "wifi": {"ssid": "", "password": ""},
        "broker": {"host": host, "port": port, "user": user, "password": password},
        "interval_s": 1.0 / rate,
        "sensors": [{"type": "synthetic"}],
        # About 64 bytes a sample: room for that many seconds' worth.
        "ring": {"max_samples": max(8, ring_bytes // 64), "max_bytes": ring_bytes},
        "keepalive_s": 30,
        "max_samples": count,
    }


def run_sim(options: SimOptions) -> int:
    try:
        endpoint = parse_endpoint(options.broker, ("mqtt", "mqtts"))
    except ValueError as exc:
        raise ConfigError(f"--broker {options.broker!r}: {exc}") from None
    ca_der = ca_for_board(endpoint.tls, options.ca)
    ids = [f"{options.prefix}-{n}" for n in range(1, options.devices + 1)]
    if not all(contract.is_device_id(i) for i in ids):
        raise ConfigError(f"--prefix {options.prefix!r} does not make valid device ids")
    device_dir()
    # The boards' folders persist like a board's flash: each keeps its boot
    # counter, so a second run is a new boot and its samples are new samples.
    root = options.data_dir or _default_data_dir()
    folders = []
    for device_id in ids:
        folder = root / device_id
        folder.mkdir(parents=True, exist_ok=True)
        config = board_config(
            device_id,
            endpoint.host,
            endpoint.port,
            options.rate,
            options.count,
            endpoint.username,
            endpoint.password,
            ring_bytes=_ring_bytes(options),
        )
        if ca_der is not None:
            config["broker"]["tls"] = True  # as `edgewire flash` writes it
            (folder / BOARD_CA).write_bytes(ca_der)
        (folder / "config.json").write_text(json.dumps(config))
        folders.append(folder)
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    log.info("boards running", devices=len(ids), rate=options.rate, runtime=options.runtime)
    if options.runtime == "micropython":
        return _run_micropython(folders, options, stop)
    return _run_cpython(folders, options, stop)


def _ring_bytes(options: SimOptions) -> int:
    """A CPython board gets a roomy ring; a MicroPython one what its heap allows
    beside the program (which needs about 28 KB on the 64-bit unix port)."""
    if options.runtime != "micropython":
        return 128 * 1024
    heap = int(options.heap.rstrip("KkMm")) * (1024 if options.heap[-1] in "Kk" else 1)
    if options.heap[-1] in "Mm":
        heap *= 1024 * 1024
    return max(1024, min(64 * 1024, (heap - 34 * 1024) // 2))


def _default_data_dir() -> Path:
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "edgewire" / "sim"


def _deadline(options: SimOptions) -> float | None:
    return None if options.timeout is None else time.monotonic() + options.timeout


def _report(summaries: dict[str, dict[str, Any]], options: SimOptions, failed: list[str]) -> int:
    print(json.dumps({"boards": summaries}), flush=True)
    unfinished = [
        name
        for name, s in summaries.items()
        if options.count is not None
        and (s.get("unstored", 1) or s.get("dropped", 0) or s.get("samples", 0) < options.count)
    ]
    if failed or unfinished:
        log.error("simulation incomplete", crashed=failed, not_all_stored=unfinished)
        return 1
    return 0


# -- CPython: a thread a board ----------------------------------------------


@dataclass
class _ThreadBoard:
    folder: Path
    app: Any = None
    error: BaseException | None = None
    thread: threading.Thread = field(default_factory=threading.Thread)
    running: bool = True


def _run_cpython(folders: list[Path], options: SimOptions, stop: threading.Event) -> int:
    code = device_dir()
    sys.path[:0] = [str(code), str(code / "lib"), str(SHIMS_DIR)]
    boards = [_ThreadBoard(folder) for folder in folders]
    for sim in boards:
        sim.thread = threading.Thread(target=_board_main, args=(sim,), name=sim.folder.name)
        sim.thread.start()
    deadline = _deadline(options)
    while any(sim.thread.is_alive() for sim in boards):
        if stop.is_set() or (deadline is not None and time.monotonic() > deadline):
            for sim in boards:
                sim.running = False
                if sim.app is not None:
                    sim.app.running = False
            break
        stop.wait(0.1)
    for sim in boards:
        sim.thread.join()
    summaries = {sim.folder.name: sim.app.summary() for sim in boards if sim.app is not None}
    return _report(summaries, options, [s.folder.name for s in boards if s.error is not None])


def _board_main(sim: _ThreadBoard) -> None:
    """One board's life: start, and start again after a reboot or a sleep."""
    import ew_app  # type: ignore[import-not-found]
    import ew_board  # type: ignore[import-not-found]

    board = ew_board.Board(root=f"{sim.folder}/")
    while sim.running:
        try:
            sim.app = ew_app.App(board)
            sim.app.run()
            return
        except SystemExit as exit_:
            if exit_.code == ew_board.EXIT_DEEPSLEEP:
                time.sleep(int(board.read("sleep.ms") or 0) / 1000)
            elif exit_.code != ew_board.EXIT_REBOOT:
                return
        except Exception as exc:
            sim.error = exc
            log.exception("board crashed", device=sim.folder.name)
            return


# -- MicroPython: a process a board -------------------------------------------


def _run_micropython(folders: list[Path], options: SimOptions, stop: threading.Event) -> int:
    from edgewire.sim.micropython import MicroPythonBoard
    from firmware.build import build

    with tempfile.TemporaryDirectory(prefix="edgewire-build-") as scratch:
        compiled = Path(scratch)
        build(compiled)
        boards = [MicroPythonBoard(folder, compiled, options.heap) for folder in folders]
    for board in boards:
        board.start()
    deadline = _deadline(options)
    live = list(boards)
    while live:
        if stop.is_set() or (deadline is not None and time.monotonic() > deadline):
            for board in live:
                board.stop()
            break
        live = [board for board in live if board.step()]
        stop.wait(0.1)
    summaries: dict[str, dict[str, Any]] = {}
    failed = []
    for board in boards:
        summary = board.summary()
        if summary is not None:
            summaries[board.folder.name] = summary
        console = board.console()
        if "Traceback" in console or "MemoryError" in console:
            failed.append(board.folder.name)
    return _report(summaries, options, failed)
