"""From MQTT message to durable sample: validate, group-commit, then ack.

Rule: a QoS 1 message is acknowledged to the broker only after everything it
became (samples, dead letters) is committed to the buffer. Messages arriving
while a commit runs wait and go in the next one, so one fsync covers many
messages (group commit). When the buffer is full, the `drop_oldest` policy
makes room by dropping its oldest samples (counted); `backpressure` commits
only whole messages that fit and holds the rest unacknowledged, so the broker
keeps them, until deliveries to the cloud free room. Every buffer operation,
including the uplink's reads and deletes, runs on one thread that owns the
buffer.
"""

import asyncio
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol, TypeVar

import msgspec
from prometheus_client import Counter

from edge import metrics
from edge.buffer import Buffer, BufferStats, DeadLetter, dead_letter
from edge.downlink import Answer, parse_answer
from edge.rules import RuleChain
from edge.stored import StoredTracker
from edge.validate import Accepted, Reason, validate_status, validate_telemetry
from edgewire import contract
from edgewire.errors import StorageError
from edgewire.logs import get_logger
from edgewire.wire import decode_sample, encode_sample

log = get_logger("edge.pipeline")

COMMIT_RETRY_S = 1.0
# Messages received and not yet committed. Past this the MQTT thread stops
# reading (see `room`), so the broker and the boards hold the rest: with
# MQTT 3.1.1 the broker does not bound what it sends us unacknowledged.
MAX_PENDING_MESSAGES = 5_000
# Boards given a last-seen series in /metrics.
MAX_DEVICES_SEEN = 10_000

T = TypeVar("T")


class FullPolicy(StrEnum):
    DROP_OLDEST = "drop_oldest"
    BACKPRESSURE = "backpressure"


class Broker(Protocol):
    def ack_many(self, mids: Sequence[int]) -> None: ...

    def publish(self, topic: str, payload: bytes, qos: int = 1) -> int | None: ...


# (device_id, status, at); called on the MQTT thread.
StatusHandler = Callable[[str, str, float], None]
# (device_id, answer) of a board's cmd/ack; called on the MQTT thread.
AnswerHandler = Callable[[str, Answer], None]
# (first_id, records); called on the buffer thread after each commit.
CommitHandler = Callable[[int, list[bytes]], None]


@dataclass
class _Message:
    """What one MQTT message became, waiting for its commit."""

    mid: int
    qos: int
    records: list[bytes] = field(default_factory=list)
    # (device_id, boot, seq, lo) of each record, for the `stored` watermark.
    keys: list[tuple[str, int, int, int | None]] = field(default_factory=list)
    letters: list[DeadLetter] = field(default_factory=list)
    # The rules' state after this message, committed with it.
    rule_state: dict[str, bytes | None] = field(default_factory=dict)

    @property
    def size(self) -> int:
        return sum(map(len, self.records))


def admit(messages: Sequence[_Message], room_records: int, room_bytes: int) -> int:
    """How many whole messages, from the front, fit in the room left."""
    count = 0
    for message in messages:
        room_records -= len(message.records)
        room_bytes -= message.size
        if room_records < 0 or room_bytes < 0:
            break
        count += 1
    return count


class Pipeline:
    def __init__(
        self,
        buffer: Buffer,
        policy: FullPolicy,
        tracker: StoredTracker,
        on_committed: CommitHandler,
        on_status: StatusHandler,
        on_answer: AnswerHandler | None = None,
        rules: RuleChain | None = None,
    ) -> None:
        self._buffer = buffer
        self._on_answer = on_answer
        # Applied on the MQTT thread, and the Pi's own samples arrive from
        # the event loop: one at a time, under this lock.
        self._rules = rules if rules is not None and len(rules) else None
        self._rules_lock = threading.Lock()
        self._state_carry: dict[str, bytes | None] = {}  # committed with the next work
        self._policy = policy
        self._tracker = tracker
        self._on_committed = on_committed
        self._on_status = on_status
        self._broker: Broker | None = None
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="buffer")
        self._lock = threading.Lock()
        self._pending: list[_Message] = []
        self._message_counters: dict[str, Counter] = {}
        # When each board was last heard from (exported at scrape time: a
        # gauge set per message took a lock in the hot path).
        self.last_seen: dict[str, float] = {}
        self._scheduled = False
        self._held = False  # backpressure: messages wait for room
        # Set while the pipeline takes more messages; the MQTT client waits
        # on it before reading more.
        self.room = threading.Event()
        self.room.set()

    def attach(self, broker: Broker) -> None:
        self._broker = broker

    # -- MQTT thread -------------------------------------------------------

    def handle(self, device_id: str, kind: str, payload: bytes, mid: int, qos: int) -> None:
        now = time.time()
        counter = self._message_counters.get(kind)
        if counter is None:
            counter = self._message_counters[kind] = metrics.MESSAGES.labels(kind)
        counter.inc()
        self._seen(device_id, now)
        message = _Message(mid, qos)
        try:
            self._sort(message, device_id, kind, payload, now)
        except Exception as exc:
            # A bug of ours must not end the MQTT client's thread (the edge
            # would go deaf while /healthz says ok): the message becomes a
            # dead letter, to replay once the bug is fixed.
            log.exception("message not handled", device=device_id, kind=kind)
            topic = contract.topic(device_id, kind)
            message.records, message.keys, message.rule_state = [], [], {}
            message.letters = [dead_letter(now, topic, Reason.INTERNAL, repr(exc)[:200], payload)]
        with self._lock:
            self._pending.append(message)
            if len(self._pending) >= MAX_PENDING_MESSAGES:
                self.room.clear()
            if self._scheduled:
                return
            self._scheduled = True
        self._thread.submit(self._commit)

    def _sort(
        self, message: "_Message", device_id: str, kind: str, payload: bytes, now: float
    ) -> None:
        """What one message becomes: records and rules' state, a status, a
        command answer, or dead letters."""
        if kind == contract.TELEMETRY:
            outcome = validate_telemetry(device_id, payload, now)
            rules = self._rules
            if rules is None:
                for accepted in outcome.accepted:
                    s = accepted.sample
                    message.records.append(encode_sample(s))
                    message.keys.append((s.device_id, s.boot, s.seq, accepted.lo))
            else:
                self._apply_rules(rules, outcome.accepted, message)
            message.letters = [
                dead_letter(now, r.topic, r.reason, r.detail, r.payload) for r in outcome.rejected
            ]
        elif kind == contract.STATUS:
            status = validate_status(device_id, payload)
            if isinstance(status, str):
                self._on_status(device_id, status, now)
                if status == "online":
                    self._thread.submit(self._tracker.reannounce, device_id)
            else:
                message.letters = [
                    dead_letter(now, status.topic, status.reason, status.detail, payload)
                ]
        elif kind == contract.CMD_ACK:
            answer = parse_answer(payload)
            if isinstance(answer, Answer):
                if self._on_answer is not None:
                    self._on_answer(device_id, answer)
            else:
                topic = contract.topic(device_id, kind)
                message.letters = [dead_letter(now, topic, Reason.BAD_ANSWER, answer, payload)]

    def _apply_rules(
        self, rules: RuleChain, accepted: Sequence[Accepted], message: _Message
    ) -> None:
        """The rules' output becomes records; a sample they reduce to nothing
        is still covered by `stored` (the edge took responsibility for it),
        and the rules' state is committed with the message."""
        filtered = 0
        with self._rules_lock:
            for item in accepted:
                s = item.sample
                message.keys.append((s.device_id, s.boot, s.seq, item.lo))
                kept = rules.apply(s)
                if kept is None:
                    filtered += 1
                else:
                    message.records.append(encode_sample(kept))
            message.rule_state = rules.take_changed_state()
        if filtered:
            metrics.SAMPLES_FILTERED.inc(filtered)

    def set_rules(self, rules: RuleChain) -> None:
        """New rules (a reload): unchanged ones keep their state; the state
        of the others is deleted with the next commit."""
        with self._rules_lock:
            old = self._rules
            if old is not None:
                rules.carry_over(old)
            self._rules = rules if len(rules) else None
            leftover = rules.take_changed_state()
        with self._lock:
            self._state_carry.update(leftover)

    @property
    def rules(self) -> RuleChain | None:
        return self._rules

    def _seen(self, device_id: str, now: float) -> None:
        seen = self.last_seen
        if device_id in seen or (
            # A label per device id is a series each: keep them bounded.
            len(seen) < MAX_DEVICES_SEEN and contract.is_device_id(device_id)
        ):
            seen[device_id] = now

    # -- buffer thread -----------------------------------------------------

    def _commit(self) -> None:
        with self._lock:
            work = self._pending
            self._pending = []
            self._scheduled = False
            self.room.set()
        if self._policy is FullPolicy.BACKPRESSURE:
            fits = admit(work, *self._buffer.room())
            if fits < len(work):
                with self._lock:
                    self._pending[:0] = work[fits:]
                    if len(self._pending) >= MAX_PENDING_MESSAGES:
                        self.room.clear()
                self._hold(True)
                work = work[:fits]
            else:
                self._hold(False)
        if not work:
            return
        records = [r for m in work for r in m.records]
        letters = [d for m in work for d in m.letters]
        with self._lock:
            rule_state, self._state_carry = self._state_carry, {}
        for message in work:
            rule_state.update(message.rule_state)
        # The watermarks move now and are committed with the samples; they are
        # only announced after the commit (below), never before.
        for message in work:
            for device_id, boot, seq, lo in message.keys:
                self._tracker.durable(device_id, boot, seq, lo)
        marks = self._tracker.take_changed()
        started = time.perf_counter()
        while True:
            try:
                appended = self._buffer.append(records, letters, marks, rule_state)
                break
            except StorageError as exc:
                # Nothing is acknowledged, so nothing is lost: the broker
                # keeps the messages. Retry until the disk comes back.
                metrics.COMMIT_ERRORS.inc()
                log.error("buffer commit failed, retrying", error=str(exc))
                time.sleep(COMMIT_RETRY_S)
        metrics.COMMIT_SECONDS.observe(time.perf_counter() - started)
        broker = self._broker
        if broker is not None:
            broker.ack_many([message.mid for message in work if message.qos])
        metrics.SAMPLES_BUFFERED.inc(len(records))
        if appended.dropped:
            metrics.SAMPLES_DROPPED.labels("buffer_full").inc(appended.dropped)
        for letter in letters:
            metrics.DEAD_LETTERS.labels(letter.reason).inc()
            log.warning(
                "dead letter", topic=letter.topic, reason=letter.reason, detail=letter.detail
            )
        self._announce_marks()
        if records:
            self._on_committed(appended.first_id, records)

    def _hold(self, held: bool) -> None:
        if held != self._held:
            self._held = held
            metrics.BACKPRESSURE.set(1 if held else 0)
            if held:
                metrics.BACKPRESSURE_EPISODES.inc()
                log.warning("buffer full: holding MQTT messages unacknowledged")
            else:
                log.info("buffer has room again")

    def _delete(self, ids: Sequence[int]) -> int:
        deleted = self._buffer.delete(ids)
        if self._held:
            self._commit()
        return deleted

    def _housekeeping(self) -> None:
        try:
            self._buffer.flush()
        except StorageError as exc:
            # Only deletes wait for this commit: the next one takes them.
            metrics.COMMIT_ERRORS.inc()
            log.warning("buffer flush failed", error=str(exc))
        self._announce_marks()

    def _announce_marks(self) -> None:
        broker = self._broker
        if broker is None:
            return
        for device_id, boot, seq in self._tracker.due(time.monotonic()):
            payload = msgspec.json.encode({"boot": boot, "seq": seq})
            broker.publish(contract.topic(device_id, contract.STORED), payload, qos=1)
            metrics.STORED_SENT.inc()

    def _oldest_ts(self) -> float | None:
        record = self._buffer.oldest()
        return None if record is None else decode_sample(record).ts

    # -- event loop --------------------------------------------------------

    async def _call(self, fn: Callable[..., T], *args: object) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._thread, fn, *args)

    async def read(self, after_id: int, below_id: int, limit: int) -> list[tuple[int, bytes]]:
        return await self._call(self._buffer.read, after_id, below_id, limit)

    async def delete(self, ids: Sequence[int]) -> int:
        return await self._call(self._delete, ids)

    async def stats(self) -> BufferStats:
        return await self._call(self._buffer.stats)

    async def oldest_ts(self) -> float | None:
        return await self._call(self._oldest_ts)

    @property
    def held(self) -> bool:
        return self._held

    async def tick(self) -> None:
        """Make waiting deletes durable; publish watermarks held back by the
        per-device rate limit."""
        await self._call(self._housekeeping)

    async def flush(self) -> None:
        """Wait until everything handed in so far is committed (or held)."""
        await self._call(lambda: None)

    def close(self) -> None:
        self._thread.shutdown(wait=True)
        self._buffer.close()
