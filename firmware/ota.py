"""`edgewire flash --update`, the host's side of the OTA protocol, sans-IO.

Rule: the board decides what it needs and where a file resumes; the sender
only ever answers it. It sends one message, waits for the answer, and from
that answer alone picks the next message: the chunk at the offset the board
names (so a lost or doubled chunk costs one resend), the next file, or the
swap. No MQTT, no clock here: the adapter (firmware/update.py) publishes
what `begin()`, `on_answer()` and `on_timeout()` return, each a `Send`
(which topic, what bytes), and calls `on_timeout()` when an answer is
overdue.

Topics: the update command goes on edgewire/<id>/cmd (its answer comes on
cmd/ack); the rest on edgewire/<id>/ota (QoS 1), answered on ota/ack. The
exchange (device/ew_ota.py has it in full):

    command {"id": "ota-…", "update": true}  the program restarts into update mode
    ready   {"ota": "ready"}                   update mode listens (also the
                                               answer to a {"ota": "start"} probe)
    offer   {"ota": "offer", "v", "files": [[name, size, sha256 hex], ...], "trial_s"}
    need    {"ota": "need", "v", "files": [names]}     or "refused" + "error"
    chunk   {"ota": "chunk", "f", "o", "d": base64 of CHUNK_BYTES at most}
    got     {"ota": "got", "f", "o": the offset the board wants next}
    swap    {"ota": "swap", "v"}
    swapped {"ota": "swapped", "v"}  the board restarts into the new files
    done    {"ota": "done", "v"}     once the new version is online; or
            {"ota": "rolled_back", "v"} when it never got there

States: starting → offered → sending → swapping → swapped → done, or failed
(with `error`). An offer that needs nothing ends in done at once (`needed`
empty). A board that goes quiet mid-way (restarted, back in its program) is
sent the command again and resumes where it stopped: it keeps what it
received of this version.
"""

import base64
import hashlib
import json
from typing import Any, Literal

CHUNK_BYTES = 512  # the board takes no more (ew_ota._CHUNK_MAX)
RECOMMAND_AFTER = 3  # answers missed in a row before the command goes again
PROBES_PER_COMMAND = 6  # while starting: probes between two commands

Topic = Literal["cmd", "ota"]
Send = tuple[Topic, bytes]


class OtaSender:
    """Sends `files` (name, contents) as version `version` to one board."""

    def __init__(
        self, files: list[tuple[str, bytes]], version: str, trial_s: float | None = None
    ) -> None:
        self.version = version
        self.files = dict(files)
        self.hashes = {name: hashlib.sha256(data).hexdigest() for name, data in files}
        self.trial_s = trial_s
        self.command_id = f"ota-{version}"
        self.state = "new"
        self.error: str | None = None
        self.needed: list[str] = []
        self.resends = 0  # chunks sent again: lost, or asked for by offset
        self.restarts = 0  # times the board had to be sent to update mode again
        self._pending: list[str] = []  # needed files not yet complete, current first
        self._sent_at: int | None = None  # offset of the chunk awaiting its answer
        self._last: bytes | None = None  # the ota message awaiting an answer
        self._missed = 0  # timeouts in a row

    # -- what to publish --------------------------------------------------

    def begin(self) -> Send:
        """The update command, for the board's program."""
        self.state = "starting"
        self._missed = 0
        return self._command()

    def start(self) -> bytes:
        """The offer: the complete new file set (to a board in update mode)."""
        self.state = "offered"
        entries = [[name, len(data), self.hashes[name]] for name, data in self.files.items()]
        offer: dict[str, Any] = {"ota": "offer", "v": self.version, "files": entries}
        if self.trial_s is not None:
            offer["trial_s"] = self.trial_s
        return self._send(offer)

    def on_timeout(self) -> Send | None:
        """No answer came: what to send now (None when nothing is awaited)."""
        if self.state == "starting":
            self._missed += 1
            if self._missed % PROBES_PER_COMMAND == 0:
                return self._command()
            return "ota", b'{"ota":"start"}'
        if self.state not in ("offered", "sending", "swapping") or self._last is None:
            return None
        self._missed += 1
        if self._missed >= RECOMMAND_AFTER:
            # Silent for this long: the board is back in its program (a
            # restart, a lost link). Send it to update mode again.
            self.restarts += 1
            return self.begin()
        if self.state == "sending":
            self.resends += 1
        return "ota", self._last

    def on_command_answer(self, msg: bytes) -> None:
        """A message from the cmd/ack topic: a refusal of our command ends it."""
        try:
            answer = json.loads(msg)
            ours = answer.get("id") == self.command_id
        except (ValueError, AttributeError):
            return  # not ours
        if ours and answer.get("ok") is False and self.state not in ("done", "failed"):
            error = answer.get("error")
            hint = " (its program predates updates: flash it once over serial)"
            self._fail(
                f"the board refused the update command: {error}"
                + hint * (error == "unknown command")
            )

    def on_answer(self, msg: bytes) -> Send | None:
        """Take one message from the ota/ack topic; the next one to publish,
        or None (finished, failed, or nothing to do about this answer)."""
        try:
            answer = json.loads(msg)
            kind = answer["ota"]
        except (ValueError, KeyError, TypeError):
            return None  # not ours: another tool's message on the topic
        if self.state in ("done", "failed", "new"):
            return None
        self._missed = 0
        if kind == "ready":
            if self.state in ("starting", "offered", "sending", "swapping"):
                return "ota", self.start()  # (again: the board resumes)
            return None
        if kind == "refused":
            self._fail(f"the board refused the update: {answer.get('error')}")
            return None
        if kind == "need" and self.state == "offered" and answer.get("v") == self.version:
            return self._ota(self._on_need(answer.get("files")))
        if kind == "got" and self.state == "sending":
            return self._ota(self._on_got(answer.get("f"), answer.get("o")))
        if kind == "swapped" and self.state == "swapping" and answer.get("v") == self.version:
            self.state = "swapped"
            self._last = None
            return None
        if (
            kind == "done"
            and self.state in ("swapping", "swapped")
            and answer.get("v") == self.version
        ):
            self.state = "done"
            return None
        if kind == "rolled_back" and answer.get("v") == self.version:
            self._fail(f"version {self.version} did not come online: rolled back")
            return None
        return None  # stale or doubled (QoS 1 delivers at least once)

    def give_up(self, error: str) -> None:
        """The adapter's deadline passed."""
        self._fail(error)

    def progress(self) -> tuple[int, int]:
        """(bytes the board has of the needed files, bytes needed)."""
        total = sum(len(self.files[n]) for n in self.needed)
        if self.state in ("swapping", "swapped", "done"):
            return total, total
        if self.state != "sending" or not self._pending:
            return 0, total
        left = sum(len(self.files[n]) for n in self._pending)
        return total - left + (self._sent_at or 0), total

    # -- the steps --------------------------------------------------------

    def _on_need(self, names: Any) -> bytes | None:
        if not isinstance(names, list) or any(n not in self.files for n in names):
            self._fail(f"the board asked for files not offered: {names!r}")
            return None
        self.needed = [n for n in self.files if n in names]
        self._pending = list(self.needed)
        if not self._pending:
            self.state = "done"
            self._last = None
            return None
        self.state = "sending"
        return self._chunk(0)

    def _on_got(self, name: Any, offset: Any) -> bytes | None:
        if not self._pending or name != self._pending[0]:
            return None  # an answer about a file already finished
        size = len(self.files[name])
        if not isinstance(offset, int) or not 0 <= offset <= size:
            self._fail(f"the board asked for {name} at offset {offset!r} of {size}")
            return None
        if offset == self._sent_at and offset < size:
            return None  # a doubled answer to the chunk before: that one is in flight
        if self._sent_at is not None and offset < self._sent_at:
            self.resends += 1  # the board lost what we sent from here
        if offset < size:
            return self._chunk(offset)
        self._pending.pop(0)
        if self._pending:
            return self._chunk(0)
        self.state = "swapping"
        self._sent_at = None
        return self._send({"ota": "swap", "v": self.version})

    def _chunk(self, offset: int) -> bytes:
        name = self._pending[0]
        data = self.files[name][offset : offset + CHUNK_BYTES]
        self._sent_at = offset
        return self._send(
            {"ota": "chunk", "f": name, "o": offset, "d": base64.b64encode(data).decode()}
        )

    def _command(self) -> Send:
        command = {"id": self.command_id, "update": True}
        return "cmd", json.dumps(command, separators=(",", ":")).encode()

    @staticmethod
    def _ota(message: bytes | None) -> Send | None:
        return None if message is None else ("ota", message)

    def _send(self, message: dict[str, Any]) -> bytes:
        self._last = json.dumps(message, separators=(",", ":")).encode()
        return self._last

    def _fail(self, error: str) -> None:
        self.state = "failed"
        self.error = error
        self._last = None
