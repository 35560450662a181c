"""`edgewire sim`: N boards, each the real device/ program, in one process.

Each board is a thread running device/ew_app.App over device/ew_board.Board,
with CPython shims for `usocket`, `machine` and `network` on the path and a
folder of its own as its filesystem (config.json, boot.dat). Nothing above
the socket is simulated: the boards speak MQTT through micropython-lib's
umqtt.simple to a real broker.
"""

import json
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from edgewire import contract
from edgewire.errors import ConfigError
from edgewire.logs import get_logger
from edgewire.paths import SHIMS_DIR, device_dir
from edgewire.urls import parse_endpoint

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


@dataclass
class _SimBoard:
    device_id: str
    app: Any
    thread: threading.Thread
    error: BaseException | None = None


def board_config(
    device_id: str,
    host: str,
    port: int,
    rate: float,
    count: int | None,
    user: str | None = None,
    password: str | None = None,
) -> dict[str, Any]:
    """The config.json a board gets (the same keys `edgewire flash` writes)."""
    return {
        "device_id": device_id,
        "wifi": {"ssid": "", "password": ""},
        "broker": {"host": host, "port": port, "user": user, "password": password},
        "interval_s": 1.0 / rate,
        "sensors": [{"type": "synthetic"}],
        "ring": {"max_samples": 1000, "max_bytes": 64000},
        "keepalive_s": 30,
        "max_samples": count,
    }


def run_sim(options: SimOptions) -> int:
    try:
        endpoint = parse_endpoint(options.broker, ("mqtt",))
    except ValueError as exc:
        raise ConfigError(f"--broker {options.broker!r}: {exc}") from None
    ids = [f"{options.prefix}-{n}" for n in range(1, options.devices + 1)]
    if not all(contract.is_device_id(i) for i in ids):
        raise ConfigError(f"--prefix {options.prefix!r} does not make valid device ids")
    code = device_dir()
    sys.path[:0] = [str(code), str(code / "lib"), str(SHIMS_DIR)]
    import ew_app  # type: ignore[import-not-found]
    import ew_board  # type: ignore[import-not-found]

    # The boards' folders persist like a board's flash: each keeps its boot
    # counter, so a second run is a new boot and its samples are new samples.
    root = options.data_dir or _default_data_dir()
    boards = []
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
        )
        (folder / "config.json").write_text(json.dumps(config))
        board = ew_board.Board(root=f"{folder}/")
        app = ew_app.App(board, board.load_config())
        boards.append(_SimBoard(device_id, app, threading.Thread()))
    return _run(boards, options)


def _default_data_dir() -> Path:
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "edgewire" / "sim"


def _run(boards: list[_SimBoard], options: SimOptions) -> int:
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    for sim in boards:
        sim.thread = threading.Thread(target=_board_main, args=(sim,), name=sim.device_id)
        sim.thread.start()
    log.info("boards running", devices=len(boards), rate=options.rate, count=options.count)
    deadline = None if options.timeout is None else time.monotonic() + options.timeout
    while any(sim.thread.is_alive() for sim in boards):
        if stop.is_set() or (deadline is not None and time.monotonic() > deadline):
            for sim in boards:
                sim.app.running = False
            break
        stop.wait(0.1)
    for sim in boards:
        sim.thread.join()
    summary = {
        sim.device_id: {
            "boot": sim.app.boot,
            "samples": sim.app.ring.next_seq,
            "unstored": len(sim.app.ring),
            "resends": sim.app.resends,
            "dropped": sim.app.ring.dropped,
        }
        for sim in boards
    }
    print(json.dumps({"boards": summary}), flush=True)
    failed = [sim.device_id for sim in boards if sim.error is not None]
    unfinished = [
        sim.device_id
        for sim in boards
        if options.count is not None and (len(sim.app.ring) or not sim.app.sampling_done())
    ]
    if failed or unfinished:
        log.error("simulation incomplete", crashed=failed, not_all_stored=unfinished)
        return 1
    return 0


def _board_main(sim: _SimBoard) -> None:
    try:
        sim.app.run()
    except Exception as exc:
        sim.error = exc
        log.exception("board crashed", device=sim.device_id)
