"""A private PostgreSQL cluster on a free port, from the installed binaries.

For the tests and the benches: its own data folder and socket folder, so it
can be started and thrown away without touching a system server. PostgreSQL
refuses to run as root; as root, the cluster runs as the `postgres` user
that Debian's package creates, in a folder of its own under the system's
temporary folder (a test's own folder is private to root).
"""

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from edgewire.errors import SetupError
from edgewire.procs import free_port, wait_for_port


def postgres_bin_dir() -> Path:
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not versions:
        raise SetupError("PostgreSQL is not installed (apt-get install postgresql)")
    return Path(versions[-1]).parent


class PrivatePostgres:
    """`durable=False` turns fsync off: for tests, never for figures."""

    def __init__(self, port: int | None = None, durable: bool = False) -> None:
        self.workdir = Path(tempfile.mkdtemp(prefix="edgewire-pg-"))
        self.durable = durable
        self.port = port or free_port()
        self.data = self.workdir / "data"
        self.log_path = self.workdir / "postgres.log"
        self._bin = postgres_bin_dir()
        self._user: str | None = "postgres" if os.geteuid() == 0 else None

    def url(self, database: str = "postgres") -> str:
        user = self._user or pwd.getpwuid(os.geteuid()).pw_name
        return f"postgresql://{user}@127.0.0.1:{self.port}/{database}"

    def _run(self, *argv: str) -> None:
        command = [str(self._bin / argv[0]), *argv[1:]]
        if self._user:
            command = ["runuser", "-u", self._user, "--", *command]
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise SetupError(f"{argv[0]} failed: {result.stderr.strip() or result.stdout.strip()}")

    def start(self) -> "PrivatePostgres":
        self.workdir.mkdir(parents=True, exist_ok=True)
        if self._user:
            entry = pwd.getpwnam(self._user)
            os.chown(self.workdir, entry.pw_uid, entry.pw_gid)
        if not self.data.exists():
            self._run("initdb", "-D", str(self.data), "-A", "trust", "-E", "UTF8", "--no-sync")
        options = f"-p {self.port} -c listen_addresses=127.0.0.1"
        options += f" -c unix_socket_directories={self.workdir}"
        if not self.durable:
            options += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log_path), "-o", options, "-w",
                  "start")  # fmt: skip
        wait_for_port(self.port, 30)
        return self

    def create_database(self, name: str) -> str:
        """A fresh database; its URL."""
        import psycopg

        with psycopg.connect(self.url(), autocommit=True) as db:
            db.execute(f'DROP DATABASE IF EXISTS "{name}"')
            db.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self) -> None:
        """Stop the cluster and delete its folder."""
        deadline = time.monotonic() + 30
        while (self.data / "postmaster.pid").exists() and time.monotonic() < deadline:
            try:
                self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")
            except SetupError:
                time.sleep(0.2)
        shutil.rmtree(self.workdir, ignore_errors=True)
