"""A private Mosquitto on a free port, from the installed binary.

For `edgewire demo` and the tests: its own config, persistence folder and log,
so it can be stopped, killed and restarted without touching a system broker.
"""

import getpass
import shutil
import signal
import subprocess
from pathlib import Path

from edgewire.errors import SetupError
from edgewire.procs import free_port, spawn, wait_for_port

_CANDIDATES = ("mosquitto", "/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto")


def mosquitto_binary() -> str:
    for candidate in _CANDIDATES:
        found = shutil.which(candidate)
        if found:
            return found
    raise SetupError("mosquitto is not installed (apt-get install mosquitto)")


class PrivateMosquitto:
    def __init__(
        self, workdir: Path, port: int | None = None, max_queued_messages: int = 100_000
    ) -> None:
        self.workdir = workdir
        self.port = port or free_port()
        self.log_path = workdir / "mosquitto.log"
        self.process: subprocess.Popen[bytes] | None = None
        workdir.mkdir(parents=True, exist_ok=True)
        self.config_path = workdir / "mosquitto.conf"
        self.config_path.write_text(
            "\n".join(
                [
                    f"listener {self.port} 127.0.0.1",
                    "allow_anonymous true",
                    "persistence true",
                    f"persistence_location {workdir}/",
                    # Mosquitto drops root privileges to this user; ours owns
                    # the folder, so it can write its snapshot there.
                    f"user {getpass.getuser()}",
                    # Room for an edge that is away for a while.
                    f"max_queued_messages {max_queued_messages}",
                    "max_inflight_messages 1000",
                    "log_dest stderr",
                    "log_type error",
                    "log_type warning",
                    "log_type notice",
                    "",
                ]
            )
        )

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.process = spawn([mosquitto_binary(), "-c", str(self.config_path)], self.log_path)
        wait_for_port(self.port, 10, self.process)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)
