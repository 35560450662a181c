"""A command from the cloud to a board and its answer back, with real parts
at every hop: `POST /api/devices/<id>/cmd` (or the WebSocket) → cloud →
gRPC stream → edge → private Mosquitto → a simulated board running the real
device/ code → `cmd/ack` → edge → cloud, whose state the API and feeds show."""

import json
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.sync.client import ClientConnection
from websockets.sync.client import connect as ws_connect

from edgewire.mosquitto import PrivateMosquitto
from edgewire.procs import edgewire_argv
from tests.helpers import Service, SseClient, eventually

BOARD = "cmd-1"


class Sim:
    """`edgewire sim` with one board, started and stopped as a test says."""

    def __init__(self, mosquitto: PrivateMosquitto, folder: Path) -> None:
        self.argv = edgewire_argv(
            "sim", "--broker", mosquitto.url, "--devices", "1", "--rate", "2",
            "--prefix", "cmd", "--data-dir", str(folder),
        )  # fmt: skip
        self.log = folder.parent / "sim.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                self.argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(20)


@pytest.fixture
def sim(tmp_path: Path, mosquitto: PrivateMosquitto) -> Iterator[Sim]:
    board = Sim(mosquitto, tmp_path / "boards")
    board.start()
    yield board
    board.stop()


def device(cloud: Service) -> dict[str, Any]:
    rows: dict[str, dict[str, Any]] = {row["id"]: row for row in cloud.get("/api/devices")}
    return rows.get(BOARD, {})


def send(cloud: Service, command: object, ttl: str | None = None) -> httpx.Response:
    params = {} if ttl is None else {"ttl": ttl}
    return httpx.post(
        f"{cloud.url}/api/devices/{BOARD}/cmd", json=command, params=params, timeout=10
    )


def state_of(cloud: Service, command_id: str) -> dict[str, Any]:
    rows: dict[str, dict[str, Any]] = {
        row["id"]: row for row in cloud.get(f"/api/devices/{BOARD}/cmd")
    }
    return rows[command_id]


def rate(cloud: Service, seconds: float = 3.0) -> float:
    """Samples per second the cloud stores from the board, over `seconds`."""
    before = device(cloud)["samples"]
    time.sleep(seconds)
    return float(device(cloud)["samples"] - before) / seconds


def test_a_command_from_the_cloud_changes_the_boards_sample_rate(
    cloud: Service, edge: Service, sim: Sim
) -> None:
    eventually(lambda: device(cloud).get("status") == "online" and device(cloud)["samples"] > 2)
    slow = rate(cloud)
    assert slow <= 3.5, f"the board samples at 2/s to begin with, not {slow}"

    with SseClient(f"{cloud.url}/api/stream?device={BOARD}") as live:
        answer = send(cloud, {"set": {"interval_s": 0.05}})
        assert answer.status_code == 202, answer.text
        queued = answer.json()
        assert queued["state"] == "queued"
        assert queued["device"] == BOARD
        done = eventually(
            lambda: (row := state_of(cloud, queued["id"]))["state"] == "acked" and row
        )
        assert done["error"] is None
        fast = rate(cloud)
        assert fast >= 10, f"at 20/s after the command, not {fast}"
        changes = eventually(
            lambda: (
                (
                    seen := [
                        json.loads(e["data"]) for e in live.events if e.get("event") == "command"
                    ]
                )
                and seen[-1]["state"] == "acked"
                and seen
            )
        )
    assert next(c["state"] for c in changes) == "queued"
    assert {c["id"] for c in changes} == {queued["id"]}
    steps = [c["state"] for c in changes]
    assert steps == sorted(steps, key=["queued", "at_edge", "delivered", "acked"].index), (
        "the feed shows the states in order"
    )

    refused = send(cloud, {"set": {"interval_s": -1}})
    assert refused.status_code == 202
    failed = eventually(
        lambda: (row := state_of(cloud, refused.json()["id"]))["state"] == "failed" and row
    )
    assert failed["error"] == "interval_s", "the board's reason reaches the cloud"
    assert edge.get_metric('edgewire_edge_commands_total{step="answered"}') == 2


def test_a_command_for_an_offline_board_waits_at_the_edge_until_its_deadline(
    cloud: Service, edge: Service, sim: Sim
) -> None:
    eventually(lambda: device(cloud).get("status") == "online")
    sim.stop()
    eventually(lambda: device(cloud).get("status") == "offline")

    waits = send(cloud, {"set": {"interval_s": 0.1}}, ttl="10m").json()
    lapses = send(cloud, {"set": {"interval_s": 0.2}}, ttl="2s").json()
    eventually(lambda: state_of(cloud, waits["id"])["state"] == "at_edge")
    expired = eventually(
        lambda: (row := state_of(cloud, lapses["id"]))["state"] == "expired" and row
    )
    assert expired["error"] in ("no answer by the deadline", "deadline passed")
    time.sleep(1)
    assert state_of(cloud, waits["id"])["state"] == "at_edge", "still waiting for its board"

    sim.start()
    eventually(lambda: state_of(cloud, waits["id"])["state"] == "acked", timeout_s=40)
    assert state_of(cloud, lapses["id"])["state"] == "expired", "an expired command never goes"
    assert rate(cloud) >= 5, "the board took the waiting command (10/s) after coming back"


def next_error(socket: ClientConnection) -> str:
    """The next error reply; the board's live samples may come first."""
    while True:
        message = json.loads(socket.recv(10))
        if "error" in message:
            return str(message["error"])
        assert "samples" in message or "status" in message, message


def test_the_websocket_sends_commands_and_shows_their_states(
    cloud: Service, edge: Service, sim: Sim
) -> None:
    eventually(lambda: device(cloud).get("status") == "online")
    with ws_connect(f"ws://127.0.0.1:{cloud.http_port}/api/ws") as socket:
        socket.send(json.dumps({"subscribe": {"devices": [BOARD]}}))
        assert "subscribed" in json.loads(socket.recv(10))
        socket.send(json.dumps({"cmd": {"launch": 1}, "device": BOARD}))
        assert "unknown command" in next_error(socket)
        socket.send(json.dumps({"cmd": {"reboot": True}, "device": "nobody"}))
        assert "no board 'nobody'" in next_error(socket)
        socket.send(json.dumps({"cmd": {"set": {"interval_s": 1}}, "device": BOARD, "ttl": "1m"}))
        queued = None
        states = []
        deadline = time.monotonic() + 30
        while "acked" not in states and time.monotonic() < deadline:
            message = json.loads(socket.recv(30))
            if "queued" in message:
                queued = message["queued"]
            elif "command" in message:
                states.append(message["command"]["state"])
        assert queued is not None
        assert queued["device"] == BOARD
        assert (states[0], states[-1]) == ("queued", "acked"), states


def test_the_command_api_refuses_what_it_cannot_send(cloud: Service) -> None:
    url = f"{cloud.url}/api/devices/{BOARD}/cmd"
    cases = [
        (httpx.post(url, content=b"{not json", timeout=10), 400, "not JSON"),
        (httpx.post(url, json={"set": {}, "reboot": True}, timeout=10), 400, "exactly one"),
        (httpx.post(url, json={"reboot": True}, params={"ttl": "9y"}, timeout=10), 400, "ttl"),
        (httpx.post(url, json={"reboot": True}, params={"ttl": "8d"}, timeout=10), 400, "ttl"),
        (httpx.post(url, content=b" " * 5000, timeout=10), 413, "body over"),
        (httpx.post(url, json={"disable": "x" * 600}, timeout=10), 400, "a board takes"),
        (httpx.post(url, json={"reboot": True}, timeout=10), 404, "no board"),
        (httpx.post(f"{cloud.url}/api/devices/BAD!/cmd", json={"reboot": True}, timeout=10),
         400, "not a device id"),
    ]  # fmt: skip
    for response, status, words in cases:
        assert response.status_code == status, response.text
        assert words in response.json()["error"]
    assert httpx.get(url, timeout=10).json() == []
    assert cloud.get_metric('edgewire_cloud_bad_requests_total{endpoint="cmd"}') == 6
    # The body over the limit is counted as a limit, not as a malformed request.
    assert cloud.get_metric('edgewire_cloud_limit_refused_total{limit="http_body"}') == 1
