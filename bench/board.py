"""Board-program figures (issue 4), on the real MicroPython unix port.

    .venv/bin/python -m bench.board

- the size of what goes onto a board (.mpy and sources);
- bytes on the wire per sample, alone and in a 20-sample batch;
- peak heap in use while publishing, from gc.mem_alloc() on MicroPython,
  in a 32 KB heap with a 2 KB ring;
- the smallest heap (in KB, on this 64-bit unix port) that runs 150 samples
  with a 2 KB ring through a private Mosquitto, edge and cloud; and the same
  over TLS (an mqtts:// broker: the board checks its certificate against the
  project CA in ca.der), with 500 samples at that heap too;
- deep sleep: how long a wake keeps the board awake, and the duty cycle.
Results go to bench/results/board.json.
"""

import json
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from bench.common import Cloud, Edge, write_result
from edgewire.ca import init_ca, issue
from edgewire.mosquitto import PrivateMosquitto
from edgewire.paths import DEVICE_DIR
from edgewire.procs import free_port, stop, wait_for_port
from edgewire.sim.micropython import MicroPythonBoard
from edgewire.sim.runner import board_config
from firmware.build import build


def wire_bytes() -> dict[str, float]:
    sys.path.insert(0, str(DEVICE_DIR))
    import ew_ring  # type: ignore[import-not-found]

    ring = ew_ring.Ring(100, 8192)
    ts = 1_795_876_332_308
    for _ in range(21):
        ring.add(ew_ring.encode(ring.next_seq + 1000, 3, ts, {"temp_c": 21.53, "rh": 40.1}))
    topic = len("edgewire/board-01/telemetry")
    box = bytearray(2048)
    single, _ = ew_ring.message_into(box, ring, 20, 1)
    batch, count = ew_ring.message_into(box, ring, 0, 20)
    # PUBLISH: fixed header (1 + 1..2 length bytes), topic length (2), topic,
    # packet id (2), payload; the broker's PUBACK (4) comes back.
    overhead = 1 + 2 + topic + 2

    def length_bytes(n: int) -> int:
        return 1 if n < 128 else 2

    return {
        "payload_bytes_single": single,
        "wire_bytes_per_sample_single": single + overhead + length_bytes(single + topic + 4),
        "wire_bytes_per_sample_batched_20": (batch + overhead + length_bytes(batch + topic + 4))
        / count,
    }


@contextmanager
def behind_the_board(workdir: Path, tls: bool = False) -> Iterator[tuple[PrivateMosquitto, int]]:
    """A private Mosquitto with a real edge and cloud behind it, for a while;
    (broker, the port boards dial). With `tls`, the boards' port is a TLS
    listener whose certificate (for 127.0.0.1) a CA in workdir/ca issued."""
    broker = PrivateMosquitto(workdir / "mq")
    board_port = broker.port
    if tls:
        ca = init_ca(workdir / "ca")
        cert = issue(ca.folder, "broker", "server", hosts=["127.0.0.1"])
        board_port = free_port()
        with broker.config_path.open("a") as config:
            config.write(
                f"listener {board_port} 127.0.0.1\ncafile {ca.cert}\n"
                f"certfile {cert.cert}\nkeyfile {cert.key}\n"
            )
    broker.start()
    wait_for_port(board_port, 10, broker.process)
    cloud = Cloud(workdir).start()
    edge = Edge(workdir, broker.url, cloud.grpc_port).start()
    try:
        yield broker, board_port
    finally:
        stop(edge.process)  # type: ignore[arg-type]
        stop(cloud.process)  # type: ignore[arg-type]
        broker.stop()


def ca_der(pem: Path) -> bytes:
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    return x509.load_pem_x509_certificate(pem.read_bytes()).public_bytes(Encoding.DER)


def run_board(
    workdir: Path,
    compiled: Path,
    heap: str,
    count: int,
    ring_bytes: int,
    rate: float = 20,
    tls: bool = False,
) -> dict[str, object]:
    with behind_the_board(workdir, tls) as (_, port):
        folder = workdir / "board"
        folder.mkdir()
        config = board_config(
            "bench-1", "127.0.0.1", port, rate=rate, count=count, ring_bytes=ring_bytes
        )
        if tls:  # as `edgewire flash` writes it for an mqtts:// broker
            config["broker"]["tls"] = True
            (folder / "ca.der").write_bytes(ca_der(workdir / "ca" / "ca.crt"))
        (folder / "config.json").write_text(json.dumps(config))
        board = MicroPythonBoard(folder, compiled, heap)
        board.start()
        deadline = time.monotonic() + 60 + count / rate
        try:
            while board.step() and time.monotonic() < deadline:
                time.sleep(0.1)
        finally:
            board.stop()
    console = board.console()
    summary = board.summary()
    ok = (
        bool(board.exit_codes)
        and board.exit_codes[-1] == 0
        and "MemoryError" not in console
        and summary is not None
        and summary["unstored"] == 0
        and summary["dropped"] == 0
    )
    return {"ok": ok, "summary": summary}


def duty_cycle(workdir: Path, compiled: Path, heap: str, wakes: int) -> dict[str, object]:
    """A battery board: wake, take a sample, publish it, wait for `stored`,
    sleep. How long each wake keeps the board awake, from the interpreter's
    start to its deep-sleep exit (the unix port stands in for the board, so
    this is the program's share; a real board adds its boot and Wi-Fi join)."""
    awake: list[float] = []
    with behind_the_board(workdir) as (_, port):
        folder = workdir / "sleepy"
        folder.mkdir()
        config = board_config(
            "bench-sleepy", "127.0.0.1", port, rate=1, count=None, ring_bytes=2048
        )
        config["sleep"] = {"awake_s": 20, "sleep_s": 0.5}
        (folder / "config.json").write_text(json.dumps(config))
        board = MicroPythonBoard(folder, compiled, heap)
        try:
            for _ in range(wakes):
                started = time.monotonic()
                board.start()
                assert board.process is not None
                code = board.process.wait(30)
                awake.append(time.monotonic() - started)
                if code != 76:
                    raise RuntimeError(f"the board exited {code}:\n{board.console()[-2000:]}")
                time.sleep(0.5)
        finally:
            board.stop()
    awake.sort()
    median = awake[len(awake) // 2]
    return {
        "wakes": wakes,
        "awake_s_median": round(median, 3),
        "awake_s_max": round(awake[-1], 3),
        "duty_cycle_at_sleep_600s": round(median / (median + 600), 5),
    }


def main() -> None:
    result: dict[str, object] = {}
    with tempfile.TemporaryDirectory(prefix="edgewire-bench-board-") as scratch:
        root = Path(scratch)
        compiled = root / "build"
        files = build(compiled)
        result["build"] = {
            "mpy_bytes": sum(f.stat().st_size for f in files if f.suffix == ".mpy"),
            "source_bytes": sum(f.stat().st_size for f in files if f.suffix == ".py"),
            "files": {str(f.relative_to(compiled)): f.stat().st_size for f in files},
        }
        result["wire"] = wire_bytes()
        smallest = None
        for kb in range(28, 65, 1):
            run = root / f"heap{kb}"
            run.mkdir()
            outcome = run_board(run, compiled, f"{kb}K", count=150, ring_bytes=2048)
            if outcome["ok"]:
                smallest = {"heap_kb": kb, **outcome}
                break
        result["smallest_heap_with_2k_ring"] = smallest
        run = root / "at32"
        run.mkdir()
        result["at_32k_with_2k_ring_500_samples"] = run_board(
            run, compiled, "32K", count=500, ring_bytes=2048, rate=5
        )
        # TLS adds its context (the CA parsed into it: one block of about
        # 3 KB here), a TLS socket a connection and ew_tls.
        smallest = None
        for kb in range(32, 65, 1):
            run = root / f"tls{kb}"
            run.mkdir()
            outcome = run_board(run, compiled, f"{kb}K", count=150, ring_bytes=2048, tls=True)
            if outcome["ok"]:
                smallest = {"heap_kb": kb, **outcome}
                break
        result["tls_smallest_heap_with_2k_ring"] = smallest
        if smallest is not None:
            run = root / "tls-long"
            run.mkdir()
            result["tls_at_smallest_heap_500_samples"] = run_board(
                run, compiled, f"{smallest['heap_kb']}K", 500, ring_bytes=2048, rate=5, tls=True
            )
        run = root / "duty"
        run.mkdir()
        result["deep_sleep"] = duty_cycle(run, compiled, "32K", wakes=10)
    write_result("board", result)


if __name__ == "__main__":
    main()
