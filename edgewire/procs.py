"""Child processes that cannot outlive their parent, and free ports.

Used by `edgewire demo` and the tests: every child gets PR_SET_PDEATHSIG, so
if the parent is killed (even with SIGKILL) the kernel stops the child too.
"""

import ctypes
import http.client
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from edgewire.errors import EdgewireError

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def spawn(argv: Sequence[str], log_path: Path) -> subprocess.Popen[bytes]:
    """Start `argv` with stdout and stderr going to `log_path`."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        return subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=_die_with_parent,  # noqa: PLW1509  # only calls prctl
        )


def edgewire_argv(*args: str) -> list[str]:
    """The command line of an `edgewire` subcommand in this interpreter."""
    return [sys.executable, "-m", "edgewire", *args]


def wait_for_port(
    port: int, timeout_s: float, process: subprocess.Popen[bytes] | None = None
) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise EdgewireError(f"process exited with {process.returncode} before listening")
        with socket.socket() as sock:
            sock.settimeout(0.5)
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise EdgewireError(f"nothing listened on port {port} within {timeout_s:.0f} s")


def wait_for_health(
    port: int, timeout_s: float, process: subprocess.Popen[bytes] | None = None
) -> None:
    """Wait until GET /healthz on 127.0.0.1:port answers 200."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise EdgewireError(f"process exited with {process.returncode} during start-up")
        if _healthy(port):
            return
        time.sleep(0.1)
    raise EdgewireError(f"http://127.0.0.1:{port}/healthz was not healthy within {timeout_s:.0f} s")


def _healthy(port: int) -> bool:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
    try:
        connection.request("GET", "/healthz")
        return connection.getresponse().status == 200
    except OSError:  # not listening yet
        return False
    finally:
        connection.close()


def stop(process: subprocess.Popen[bytes], timeout_s: float = 10.0) -> int:
    """SIGTERM, then SIGKILL after `timeout_s`; the exit status."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.returncode
