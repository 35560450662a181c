"""From MQTT message to durable sample: validate, group-commit, then ack.

Rule: a QoS 1 message is acknowledged to the broker only after everything it
became (samples, dead letters) is committed to the buffer. Messages arriving
while a commit runs wait and go in the next one, so one fsync covers many
messages (group commit). Every buffer operation, including the uplink's reads
and deletes, runs on one thread that owns the buffer.
"""

import asyncio
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

import msgspec

from edge import metrics
from edge.buffer import Buffer, BufferStats, DeadLetter, dead_letter
from edge.stored import StoredTracker
from edge.validate import Accepted, validate_status, validate_telemetry
from edgewire import contract
from edgewire.errors import StorageError
from edgewire.logs import get_logger
from edgewire.sample import Sample

log = get_logger("edge.pipeline")

COMMIT_RETRY_S = 1.0

T = TypeVar("T")


class Broker(Protocol):
    def ack(self, mid: int, qos: int) -> None: ...

    def publish(self, topic: str, payload: bytes, qos: int = 1) -> None: ...


# (device_id, status, at) -> None; called on the MQTT thread.
StatusHandler = Callable[[str, str, float], None]


@dataclass
class _Pending:
    accepted: list[Accepted] = field(default_factory=list)
    letters: list[DeadLetter] = field(default_factory=list)
    acks: list[tuple[int, int]] = field(default_factory=list)


class Pipeline:
    def __init__(
        self,
        buffer: Buffer,
        tracker: StoredTracker,
        on_committed: Callable[[], None],
        on_status: StatusHandler,
    ) -> None:
        self._buffer = buffer
        self._tracker = tracker
        self._on_committed = on_committed
        self._on_status = on_status
        self._broker: Broker | None = None
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="buffer")
        self._lock = threading.Lock()
        self._pending = _Pending()
        self._scheduled = False

    def attach(self, broker: Broker) -> None:
        self._broker = broker

    # -- MQTT thread -------------------------------------------------------

    def handle(self, device_id: str, kind: str, payload: bytes, mid: int, qos: int) -> None:
        now = time.time()
        metrics.MESSAGES.labels(kind).inc()
        if kind == contract.TELEMETRY:
            outcome = validate_telemetry(device_id, payload, now)
            accepted = outcome.accepted
            letters = [
                dead_letter(now, r.topic, r.reason, r.detail, r.payload) for r in outcome.rejected
            ]
        elif kind == contract.STATUS:
            accepted = []
            status = validate_status(device_id, payload)
            if isinstance(status, str):
                letters = []
                self._on_status(device_id, status, now)
                if status == "online":
                    self._run(self._tracker.reannounce, device_id)
            else:
                letters = [dead_letter(now, status.topic, status.reason, status.detail, payload)]
        else:
            accepted, letters = [], []
        with self._lock:
            self._pending.accepted.extend(accepted)
            self._pending.letters.extend(letters)
            self._pending.acks.append((mid, qos))
            if self._scheduled:
                return
            self._scheduled = True
        self._thread.submit(self._commit)

    # -- buffer thread -----------------------------------------------------

    def _commit(self) -> None:
        with self._lock:
            work, self._pending = self._pending, _Pending()
            self._scheduled = False
        samples = [a.sample for a in work.accepted]
        started = time.perf_counter()
        while True:
            try:
                dropped = self._buffer.append(samples, work.letters)
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
            for mid, qos in work.acks:
                broker.ack(mid, qos)
        metrics.SAMPLES_BUFFERED.inc(len(samples))
        if dropped:
            metrics.SAMPLES_DROPPED.labels("buffer_full").inc(dropped)
        for letter in work.letters:
            metrics.DEAD_LETTERS.labels(letter.reason).inc()
            log.warning(
                "dead letter", topic=letter.topic, reason=letter.reason, detail=letter.detail
            )
        for a in work.accepted:
            self._tracker.durable(a.sample.device_id, a.sample.boot, a.sample.seq, a.lo)
        self._announce_marks()
        if samples:
            self._on_committed()

    def _announce_marks(self) -> None:
        broker = self._broker
        if broker is None:
            return
        for device_id, boot, seq in self._tracker.due(time.monotonic()):
            payload = msgspec.json.encode({"boot": boot, "seq": seq})
            broker.publish(contract.topic(device_id, contract.STORED), payload, qos=1)
            metrics.STORED_SENT.inc()

    def _run(self, fn: Callable[..., object], *args: object) -> None:
        self._thread.submit(fn, *args)

    # -- event loop --------------------------------------------------------

    async def _call(self, fn: Callable[..., T], *args: object) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._thread, fn, *args)

    async def read(self, after_id: int, limit: int) -> list[tuple[int, Sample]]:
        return await self._call(self._buffer.read, after_id, limit)

    async def delete(self, ids: Sequence[int]) -> None:
        await self._call(self._buffer.delete, ids)

    async def stats(self) -> BufferStats:
        return await self._call(self._buffer.stats)

    async def tick(self) -> None:
        """Publish watermarks held back by the per-device rate limit."""
        await self._call(self._announce_marks)

    async def flush(self) -> None:
        """Wait until everything handed in so far is committed and acked."""
        await self._call(lambda: None)

    def close(self) -> None:
        self._thread.shutdown(wait=True)
        self._buffer.close()
