"""`edgewire demo` brings the whole path up, and Ctrl-C takes it all down."""

import os
import re
import signal
import subprocess
from pathlib import Path

import httpx

from edgewire.procs import edgewire_argv
from tests.helpers import eventually


def children_of(pid: int) -> set[int]:
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:  # the process ended while we looked
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.add(int(entry.name))
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_demo_runs_the_path_and_cleans_up_on_ctrl_c() -> None:
    demo = subprocess.Popen(
        edgewire_argv("demo", "--devices", "2", "--rate", "5", "--http-port", "0"),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert demo.stdout is not None
        url = None
        for line in demo.stdout:
            match = re.search(r"Dashboard:\s+(http://\S+)", line)
            if match:
                url = match.group(1)
                break
        assert url, "the demo printed its dashboard URL"
        assert httpx.get(url, timeout=10).status_code == 200

        def both_boards_reporting() -> bool:
            devices = httpx.get(url + "api/devices", timeout=10).json()
            return len(devices) == 2 and all(d["samples"] > 3 for d in devices)

        eventually(both_boards_reporting, timeout_s=60)
        children = children_of(demo.pid)
        assert len(children) == 4, "mosquitto, cloud, edge and sim"
        demo.send_signal(signal.SIGINT)
        rest, _ = demo.communicate(timeout=60)
        assert demo.returncode == 0, rest
        assert "stopped" in rest
        assert not [pid for pid in children if alive(pid)], "every child process is gone"
    finally:
        if demo.poll() is None:
            os.kill(demo.pid, signal.SIGKILL)
            demo.wait()
