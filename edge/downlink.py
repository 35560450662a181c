"""Board commands at the edge: held until the board is online, published on
its `cmd` topic, answered on `cmd/ack`, and each step reported up.

Sans-IO: the uplink hands in what the cloud sent and what the broker and
boards said, with the time; the desk says what to publish and which updates
to send. Nothing here is durable, and need not be: the cloud keeps every
command until it is final and sends again what is still due when a stream
starts, so an edge restart loses no command (the id makes a repeat harmless:
the board answers it again, and the cloud ignores news that is not forward).
"""

from dataclasses import dataclass, field

import msgspec

from edgewire.downlink import FINAL

MAX_ANSWER_BYTES = 1024
MAX_HELD = 1000  # commands waiting here at once; past it new ones fail
MAX_UPDATES = 2000  # updates kept to send again after a reconnect
KEEP_FINAL_S = 600.0  # a final update is repeated on reconnects for this long


class Answer(msgspec.Struct, frozen=True):
    """A board's `cmd/ack` (contract §2)."""

    id: str | None
    ok: bool
    error: str | None = None


_decode_answer = msgspec.json.Decoder(Answer).decode


def parse_answer(payload: bytes) -> Answer | str:
    """The answer in a `cmd/ack` payload, or why it is not one."""
    if len(payload) > MAX_ANSWER_BYTES:
        return f"a command answer of {len(payload)} bytes (at most {MAX_ANSWER_BYTES})"
    try:
        return _decode_answer(payload)
    except msgspec.DecodeError as exc:
        return f"not a command answer: {exc}"


@dataclass
class Held:
    id: str
    device_id: str
    payload: bytes
    expires_at: float
    handed: bool = False  # given to the MQTT client to publish
    delivered: bool = False  # the broker acknowledged it


@dataclass
class Update:
    id: str
    device_id: str
    state: str
    at: float
    error: str = ""


@dataclass
class CommandDesk:
    max_held: int = MAX_HELD
    held: dict[str, Held] = field(default_factory=dict)
    online: set[str] = field(default_factory=set)
    _updates: dict[str, Update] = field(default_factory=dict)
    # Ids of updates this stream has not carried yet, oldest first: the
    # sender asks at every turn, so it must not walk every update kept.
    _unsent: dict[str, None] = field(default_factory=dict)

    def take(
        self, command_id: str, device_id: str, payload: bytes, expires_at: float, now: float
    ) -> list[Held]:
        """A command from the cloud; what to publish now."""
        if command_id in self.held:
            return []  # sent again after a reconnect: already here
        done = self._updates.get(command_id)
        if done is not None and done.state in FINAL:
            self._unsent[command_id] = None  # the cloud missed the end: say it again
            return []
        if expires_at <= now:
            self._say(command_id, device_id, "expired", now, "deadline passed before the edge")
            return []
        if len(self.held) >= self.max_held:
            self._say(command_id, device_id, "failed", now, "the edge holds too many commands")
            return []
        command = self.held[command_id] = Held(command_id, device_id, payload, expires_at)
        self._say(command_id, device_id, "at_edge", now)
        return self._hand([command]) if device_id in self.online else []

    def status(self, device_id: str, status: str) -> list[Held]:
        """A board's status changed; what to publish now (its waiting
        commands, oldest first, when it came online)."""
        if status != "online":
            self.online.discard(device_id)
            return []
        self.online.add(device_id)
        return self._hand(
            [c for c in self.held.values() if c.device_id == device_id and not c.handed]
        )

    def delivered(self, command_id: str, now: float) -> None:
        """The broker took the command (PUBACK): it is the board's to fetch
        (the board's session is persistent, so even if it just left)."""
        command = self.held.get(command_id)
        if command is not None and not command.delivered:
            command.delivered = True
            self._say(command_id, command.device_id, "delivered", now)

    def not_handed(self, command_id: str) -> None:
        """The MQTT client refused it: hand it again at the next online status."""
        command = self.held.get(command_id)
        if command is not None:
            command.handed = False

    @staticmethod
    def _hand(commands: list[Held]) -> list[Held]:
        """The caller publishes these: they count as handed over."""
        for command in commands:
            command.handed = True
        return commands

    def answer(self, device_id: str, answer: Answer, now: float) -> bool:
        """A board's answer; False when it answers no command held here."""
        command = self.held.get(answer.id or "")
        if command is None or command.device_id != device_id:
            return False
        del self.held[command.id]
        if answer.ok:
            self._say(command.id, device_id, "acked", now)
        else:
            self._say(command.id, device_id, "failed", now, answer.error or "refused by the board")
        return True

    def expire(self, now: float) -> int:
        """Drop held commands past their deadline (reported expired); how many."""
        due = [c for c in self.held.values() if c.expires_at <= now]
        for command in due:
            del self.held[command.id]
            self._say(command.id, command.device_id, "expired", now, "no answer by the deadline")
        for update in [u for u in self._updates.values() if u.state in FINAL]:
            if update.id not in self._unsent and now - update.at > KEEP_FINAL_S:
                del self._updates[update.id]
        return len(due)

    def to_send(self) -> list[Update]:
        """Updates not yet sent on this stream; they count as sent now."""
        pending = [self._updates[i] for i in self._unsent]
        self._unsent.clear()
        return pending

    def stream_lost(self) -> None:
        """A new stream may need everything again: the old one may have
        dropped the last updates it carried."""
        self._unsent = dict.fromkeys(self._updates)

    def _say(self, command_id: str, device_id: str, state: str, at: float, error: str = "") -> None:
        self._updates.pop(command_id, None)  # re-inserted last: oldest first
        self._updates[command_id] = Update(command_id, device_id, state, at, error)
        self._unsent.pop(command_id, None)
        self._unsent[command_id] = None
        while len(self._updates) > MAX_UPDATES:
            oldest = next(iter(self._updates))
            del self._updates[oldest]
            self._unsent.pop(oldest, None)
