"""`edgewire flash --update`, the host's side of the OTA protocol, sans-IO.

Rule: the board decides what it needs and where a file resumes; the sender
only ever answers it. It sends one message, waits for the answer, and from
that answer alone picks the next message: the chunk at the offset the board
names (so a lost or doubled chunk costs one resend), the next file, or the
swap. No MQTT, no clock here: the adapter publishes what `start()`,
`on_answer()` and `on_timeout()` return and calls `on_timeout()` when an
answer is overdue.

Topics: the host publishes on edgewire/<id>/ota (QoS 1); the board answers
on edgewire/<id>/ota/ack. The exchange (device/ew_ota.py has it in full):

    offer   {"ota": "offer", "v", "files": [[name, size, sha256 hex], ...]}
    need    {"ota": "need", "v", "files": [names]}     or "refused" + "error"
    chunk   {"ota": "chunk", "f", "o", "d": base64 of CHUNK_BYTES at most}
    got     {"ota": "got", "f", "o": the offset the board wants next}
    swap    {"ota": "swap", "v"}
    swapped {"ota": "swapped", "v"}  the board reboots into the new files
    done    {"ota": "done", "v"}     after the reboot, once online; or
            {"ota": "rolled_back", "v"} when the new version never came online

States: offered → sending → swapping → swapped → done, or failed (with
`error`). An offer that needs nothing ends in done at once (`needed` empty).
"""

import base64
import hashlib
import json
from typing import Any

CHUNK_BYTES = 512  # the board takes no more (ew_ota._CHUNK_MAX)


class OtaSender:
    """Sends `files` (name, contents) as version `version` to one board."""

    def __init__(self, files: list[tuple[str, bytes]], version: str) -> None:
        self.version = version
        self.files = dict(files)
        self.hashes = {name: hashlib.sha256(data).hexdigest() for name, data in files}
        self.state = "new"
        self.error: str | None = None
        self.needed: list[str] = []
        self.resends = 0  # chunks sent again: lost, or asked for by offset
        self._pending: list[str] = []  # needed files not yet complete, current first
        self._sent_at: int | None = None  # offset of the chunk awaiting its answer
        self._last: bytes | None = None  # the message awaiting an answer

    # -- what to publish --------------------------------------------------

    def start(self) -> bytes:
        """The offer: the complete new file set."""
        self.state = "offered"
        entries = [[name, len(data), self.hashes[name]] for name, data in self.files.items()]
        return self._send({"ota": "offer", "v": self.version, "files": entries})

    def on_timeout(self) -> bytes | None:
        """No answer came: the message that awaits one, again (None when
        nothing is awaited)."""
        if self.state not in ("offered", "sending", "swapping") or self._last is None:
            return None
        if self.state == "sending":
            self.resends += 1
        return self._last

    def on_answer(self, msg: bytes) -> bytes | None:
        """Take one message from the ack topic; the next one to publish, or
        None (finished, failed, or nothing to do about this answer)."""
        try:
            answer = json.loads(msg)
            kind = answer["ota"]
        except (ValueError, KeyError, TypeError):
            return None  # not ours: another tool's message on the topic
        if self.state in ("done", "failed", "new"):
            return None
        if kind == "refused":
            self._fail(f"the board refused the update: {answer.get('error')}")
            return None
        if kind == "need" and self.state == "offered" and answer.get("v") == self.version:
            return self._on_need(answer.get("files"))
        if kind == "got" and self.state == "sending":
            return self._on_got(answer.get("f"), answer.get("o"))
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

    def _send(self, message: dict[str, Any]) -> bytes:
        self._last = json.dumps(message, separators=(",", ":")).encode()
        return self._last

    def _fail(self, error: str) -> None:
        self.state = "failed"
        self.error = error
        self._last = None
