"""A private RabbitMQ node on a free port, from the installed server.

For the tests: its own node name, data, logs and config (which replace the
system's /etc/rabbitmq ones), so it can be started and thrown away beside a
system broker. As root, the node runs as the `rabbitmq` user that Debian's
package creates, in a folder of its own under the system's temporary folder.
"""

import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

from edgewire.errors import SetupError
from edgewire.procs import free_port, wait_for_port


def rabbitmq_server() -> Path:
    found = sorted(glob.glob("/usr/lib/rabbitmq/lib/rabbitmq_server-*/sbin/rabbitmq-server"))
    if not found:
        raise SetupError("RabbitMQ is not installed (apt-get install rabbitmq-server)")
    return Path(found[-1])


class PrivateRabbitMQ:
    def __init__(self) -> None:
        self.workdir = Path(tempfile.mkdtemp(prefix="edgewire-rmq-"))
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/"

    def start(self) -> "PrivateRabbitMQ":
        w = self.workdir
        (w / "rabbitmq.conf").write_text(
            f"listeners.tcp.default = 127.0.0.1:{self.port}\n"
            "loopback_users = none\n"
            "log.console = false\n"
        )
        (w / "enabled_plugins").write_text("[].\n")
        (w / "rabbitmq-env.conf").write_text("")
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "RABBITMQ_CONF_ENV_FILE": str(w / "rabbitmq-env.conf"),
            "RABBITMQ_CONFIG_FILE": str(w / "rabbitmq.conf"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(w / "enabled_plugins"),
            "RABBITMQ_NODENAME": f"edgewire{self.port}@localhost",
            "RABBITMQ_DIST_PORT": str(free_port()),
            "RABBITMQ_MNESIA_BASE": str(w / "mnesia"),
            "RABBITMQ_LOG_BASE": str(w / "log"),
            "RABBITMQ_PID_FILE": str(w / "pid"),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
        }
        argv = [str(rabbitmq_server())]
        if os.geteuid() == 0:
            user = pwd.getpwnam("rabbitmq")
            for path in [w, *w.iterdir()]:
                os.chown(path, user.pw_uid, user.pw_gid)
            env["HOME"] = user.pw_dir  # where its Erlang cookie lives
            argv = ["runuser", "-u", "rabbitmq", "--", "env", *[f"{k}={v}" for k, v in env.items()],
                    *argv]  # fmt: skip
        with (w / "server.log").open("ab") as log:
            self.process = subprocess.Popen(
                argv, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        wait_for_port(self.port, 60)
        return self

    def stop(self) -> None:
        """Stop the node (and its Erlang VM) and delete its folder."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)
        shutil.rmtree(self.workdir, ignore_errors=True)
