"""`edgewire demo`: the whole path on one machine, on free ports.

A private Mosquitto, `edgewire cloud`, `edgewire edge` and `edgewire sim` run
as child processes exactly as they would on separate machines; Ctrl-C stops
them in reverse order and removes their temporary folder.
"""

import signal
import subprocess
import tempfile
import threading
from pathlib import Path
from types import FrameType

from edgewire.errors import EdgewireError
from edgewire.mosquitto import PrivateMosquitto
from edgewire.procs import (
    edgewire_argv,
    free_port,
    port_is_free,
    spawn,
    stop,
    wait_for_health,
)

_LOG_TAIL_LINES = 20


def run_demo(devices: int, rate: float, http_port: int) -> int:
    stopping = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stopping.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    with tempfile.TemporaryDirectory(prefix="edgewire-demo-") as scratch:
        root = Path(scratch)
        children: list[tuple[str, subprocess.Popen[bytes]]] = []
        broker = PrivateMosquitto(root / "mosquitto")
        try:
            broker.start()
            grpc_port = free_port()
            if http_port == 0 or not port_is_free(http_port):
                http_port = free_port()
            edge_http_port = free_port()
            cloud = spawn(
                edgewire_argv(
                    "cloud",
                    "--host",
                    "127.0.0.1",
                    "--grpc-port",
                    str(grpc_port),
                    "--http-port",
                    str(http_port),
                    "--db",
                    f"sqlite:///{root}/cloud.db",
                ),
                root / "cloud.log",
            )
            children.append(("cloud", cloud))
            wait_for_health(http_port, 30, cloud)
            edge = spawn(
                edgewire_argv(
                    "edge",
                    "--mqtt",
                    broker.url,
                    "--cloud",
                    f"grpc://127.0.0.1:{grpc_port}",
                    "--data-dir",
                    str(root / "edge"),
                    "--http-host",
                    "127.0.0.1",
                    "--http-port",
                    str(edge_http_port),
                    "--edge-id",
                    "demo-edge",
                ),
                root / "edge.log",
            )
            children.append(("edge", edge))
            wait_for_health(edge_http_port, 30, edge)
            sim = spawn(
                edgewire_argv(
                    "sim",
                    "--broker",
                    broker.url,
                    "--devices",
                    str(devices),
                    "--rate",
                    str(rate),
                    "--prefix",
                    "demo",
                    "--data-dir",
                    str(root / "boards"),
                ),
                root / "sim.log",
            )
            children.append(("sim", sim))
            print(
                f"edgewire demo is running: {devices} simulated boards -> Mosquitto "
                f"(port {broker.port}) -> edge -> cloud\n\n"
                f"  Dashboard:  http://127.0.0.1:{http_port}/\n"
                f"  Readings:   http://127.0.0.1:{http_port}/api/readings?limit=20\n"
                f"  Live feed:  http://127.0.0.1:{http_port}/api/stream\n"
                f"  Edge:       http://127.0.0.1:{edge_http_port}/metrics\n\n"
                "Press Ctrl-C to stop.",
                flush=True,
            )
            failed = _wait(children, stopping)
        except EdgewireError as exc:
            failed = str(exc)
        finally:
            for _, process in reversed(children):
                stop(process)
            broker.stop()
        if failed:
            print(f"edgewire demo: {failed}")
            for name in ("cloud", "edge", "sim"):
                _print_tail(root / f"{name}.log", name)
            return 1
        print("edgewire demo stopped.")
        return 0


def _wait(children: list[tuple[str, subprocess.Popen[bytes]]], stopping: threading.Event) -> str:
    """Block until Ctrl-C (returns "") or a child dies (returns which)."""
    while not stopping.wait(0.5):
        for name, process in children:
            if process.poll() is not None:
                return f"{name} exited unexpectedly with status {process.returncode}"
    return ""


def _print_tail(path: Path, name: str) -> None:
    if path.exists():
        lines = path.read_text(errors="replace").splitlines()[-_LOG_TAIL_LINES:]
        print(f"--- last lines of {name}'s log ---")
        print("\n".join(lines))
