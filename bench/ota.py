"""`edgewire flash --update` figures (issue 7): over-the-air updates of a
board on the real MicroPython unix port (32 KB heap, 5 samples/s) behind a
private Mosquitto, edge and cloud.

    .venv/bin/python -m bench.ota

For each case: the time from the update command to the board's "done" (two
restarts included: into update mode, and into the new version on trial),
the files and bytes the board needed, the MQTT messages and payload bytes
this computer published, update mode's peak heap (gc.mem_alloc, garbage
included), and the longest gap between two stored samples of the board
(how long it did not sample), with every sample still stored.

- one changed file (the synthetic sensor);
- the whole program changed (the board runs a build with line numbers in
  its bytecode, so every .mpy differs; in a 64 KB heap, as that build needs
  more than 32 KB);
- nothing changed.
Results go to bench/results/ota.json.
"""

import itertools
import json
import re
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from bench.common import Cloud, Edge, write_result
from edgewire.mosquitto import PrivateMosquitto
from edgewire.paths import DEVICE_DIR
from edgewire.procs import stop
from edgewire.sim.micropython import MicroPythonBoard
from edgewire.sim.runner import board_config
from edgewire.urls import parse_endpoint
from firmware.build import build, mpy_cross
from firmware.update import UpdateOptions, update

HEAP = "32K"
RATE = 5.0


def changed_sensor(compiled: Path, folder: Path) -> Path:
    shutil.copytree(compiled, folder)
    source = (DEVICE_DIR / "ew_sensors.py").read_text()
    (folder / "ew_sensors.py").write_text(source.replace("21.0 +", "21.5 +"))
    subprocess.run(
        [mpy_cross(), "-O2", "-X", "no-source-lines", "ew_sensors.py"],
        cwd=folder,
        check=True,
        capture_output=True,
    )
    (folder / "ew_sensors.py").unlink()
    return folder


def stored_ts(cloud_port: int, device: str) -> list[tuple[int, int, float]]:
    rows = httpx.get(
        f"http://127.0.0.1:{cloud_port}/api/readings",
        params={"device": device, "metric": "temp_c", "limit": 100_000},
        timeout=10,
    ).json()
    return sorted((r["boot"], r["seq"], r["ts"]) for r in rows)


def one_case(
    root: Path,
    name: str,
    running: Path,
    new: Path,
    broker: PrivateMosquitto,
    cloud: Cloud,
    heap: str = HEAP,
) -> dict[str, Any]:
    device = f"bench-{name}"
    folder = root / device
    folder.mkdir()
    config = board_config(device, "127.0.0.1", broker.port, rate=RATE, count=None, ring_bytes=2048)
    (folder / "config.json").write_text(json.dumps(config))
    board = MicroPythonBoard(folder, running, heap)
    board.start()
    stopping = threading.Event()

    def keep_stepping() -> None:
        while not stopping.wait(0.02):
            board.step()

    stepper = threading.Thread(target=keep_stepping, daemon=True)
    stepper.start()
    try:
        deadline = time.monotonic() + 30
        while len(stored_ts(cloud.http_port, device)) < 20 and time.monotonic() < deadline:
            time.sleep(0.2)
        options = UpdateOptions(
            device_id=device, broker=parse_endpoint(broker.url, ("mqtt",)), trial_s=60
        )
        report = update(options, lambda line: None, built=new)
        time.sleep(5)  # samples after the update
        rows = stored_ts(cloud.http_port, device)
    finally:
        stopping.set()
        stepper.join()
        board.stop()
    seqs = [(boot, seq) for boot, seq, _ in rows]
    gaps = [b[2] - a[2] for a, b in itertools.pairwise(rows)]
    peaks = [int(p) for p in re.findall(r"heap peak (\d+)", board.console())]
    return {
        "heap": heap,
        "state": report.state,
        "error": report.error,
        "seconds": round(report.seconds, 2),
        "files": report.files,
        "files_needed": len(report.needed),
        "bytes_needed": report.bytes_needed,
        "messages_published": report.messages,
        "payload_bytes_published": report.payload_bytes,
        "chunks_resent": report.resends,
        "update_mode_heap_peak_bytes": max(peaks) if peaks else None,
        "longest_sampling_gap_s": round(max(gaps), 2) if gaps else None,
        "samples_stored": len(rows),
        "every_seq_stored": seqs == [(seqs[0][0], n) for n in range(len(seqs))] if seqs else False,
        "memory_errors": board.console().count("MemoryError"),
    }


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="edgewire-bench-ota-") as scratch:
        root = Path(scratch)
        current = root / "current"
        build(current)
        with_lines = root / "with-lines"
        build(with_lines, lines=True)
        sensor = changed_sensor(current, root / "sensor")
        broker = PrivateMosquitto(root / "mq")
        broker.start()
        cloud = Cloud(root).start()
        edge = Edge(root, broker.url, cloud.grpc_port).start()
        try:
            cases = {
                "one_file": one_case(root, "one", current, sensor, broker, cloud),
                # Line numbers cost the old program about 1 KB of heap: more
                # than a 32 KB heap has to spare.
                "whole_program": one_case(
                    root, "whole", with_lines, current, broker, cloud, heap="64K"
                ),
                "nothing_changed": one_case(root, "same", current, current, broker, cloud),
            }
        finally:
            stop(edge.process)  # type: ignore[arg-type]
            stop(cloud.process)  # type: ignore[arg-type]
            broker.stop()
    write_result("ota", {"samples_per_s": RATE, **cases})


if __name__ == "__main__":
    main()
