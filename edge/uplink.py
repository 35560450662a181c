"""The edge's one long-lived gRPC stream to the cloud.

The stream carries batches chosen by edge/window.py (backlog oldest first,
live samples alongside), a window of them in flight; the cloud acknowledges
each batch after committing it, and only then are its records deleted here.
When the stream breaks, everything unacknowledged is sent again on the next
one. Device status changes ride the same stream, and so do board commands:
down from the cloud, held by the desk (edge/downlink.py) until the board is
online, published on its `cmd` topic, and their states back up. Samples travel as the
serialized bytes the buffer holds; only the framing is added here.

With grpcs:// the stream runs over TLS, with this edge's client certificate
when it has one (mTLS). The cloud may refuse the edge (a revoked
certificate, an edge id that is not the certificate's name): that is logged
with the cloud's reason and tried again with backoff like any other failure,
and the stream counts as up only once the cloud admitted the edge, so
/healthz turns unhealthy when refusals go on.
"""

import asyncio
import contextlib
import random
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import grpc

from edge import metrics
from edge.downlink import Answer, CommandDesk, Held
from edge.pipeline import Pipeline
from edge.window import Lane, Limits, Outgoing, RateMeter, SendPlan, backoff_delay
from edgewire import __version__, contract
from edgewire.aio import first_of
from edgewire.logs import get_logger
from edgewire.urls import Endpoint
from edgewire.v1 import edgewire_pb2 as pb
from edgewire.wire import batch_message

log = get_logger("edge.uplink")

INGEST_METHOD = "/edgewire.v1.Telemetry/Ingest"
BACKOFF_BASE_S = 0.5
# Seconds to wait for the last acknowledgements when stopping.
DRAIN_ON_STOP_S = 3.0
STATS_EVERY_S = 5.0  # how often the cloud hears how the buffer stands
# A cloud from before admission headers sends none until its first answer:
# a stream still open this long after the Hello was not refused.
ADMISSION_WAIT_S = 5.0
# How the cloud says no to this edge; anything else is a link failure.
REFUSED = frozenset({grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNAUTHENTICATED})
# What grpc says when the cloud ended the TLS handshake: it does not say why
# (the cloud's log does), so the edge's log line says where to look.
TLS_REFUSAL_HINT = (
    "the cloud closed the connection during TLS: it may refuse this edge's certificate"
    " (none, another CA's, or expired: the cloud's log says which); see cloud_cert, cloud_key"
)
# Committed records waiting for the event loop to take them into the live
# lane. Past this the oldest are left to the backlog (they are on disk), so a
# busy loop never makes the edge hold an unbounded pile of records in memory.
HANDOFF_MAX_RECORDS = 20_000
CHANNEL_OPTIONS = [
    # Notice a dead link in seconds, not minutes: without keepalive a cut
    # link goes unnoticed until the next write times out.
    ("grpc.keepalive_time_ms", 10_000),
    ("grpc.keepalive_timeout_ms", 5_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_pings_without_data", 0),
    ("grpc.max_send_message_length", 16 * 1024 * 1024),
]


class StreamClosed(Exception):
    """The cloud ended the stream; reconnect."""


@dataclass
class _Status:
    status: str
    at: float
    sent: bool = False


class Uplink:
    def __init__(
        self,
        endpoint: Endpoint,
        edge_id: str,
        pipeline: Pipeline,
        limits: Limits,
        gzip: bool = False,
        reconnect_max_s: float = 30.0,
        credentials: grpc.ChannelCredentials | None = None,
    ) -> None:
        self._reconnect_max_s = reconnect_max_s
        self._target = f"{endpoint.host}:{endpoint.port}"
        self._credentials = credentials  # None: plain grpc://
        self._edge_id = edge_id
        self._pipeline = pipeline
        self._compression = grpc.Compression.Gzip if gzip else grpc.Compression.NoCompression
        self.plan = SendPlan(limits)
        self.delivery_rate = RateMeter()
        # Set whenever the sender may have something to do: new records, a
        # status change, an acknowledgement, or stop.
        self._attention = asyncio.Event()
        self._kicked = asyncio.Event()  # cuts a reconnect backoff short
        self._statuses: dict[str, _Status] = {}
        self._stats: pb.EdgeStats | None = None
        self._stats_sent_at = float("-inf")  # a new stream sends them at once
        self._acked_any = False
        self._outbox: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.connected = False
        # Monotonic time the stream went down (or the uplink started), None while up.
        self.down_since: float | None = time.monotonic()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._handoff_lock = threading.Lock()
        self._handoff: list[tuple[int, list[bytes]]] = []
        self._handoff_records = 0
        self._handoff_skip_to = 0
        self._handoff_scheduled = False
        self._lingering = False  # the sender waits out a live batch's linger
        # Board commands: the desk decides, this publishes through `publish`.
        self.desk = CommandDesk()
        self.publish: Callable[[str, bytes, int], int | None] | None = None
        self._command_mids: dict[int, str] = {}  # MQTT message id -> command id

    # -- called on the event loop by the rest of the agent -------------------

    def wake(self) -> None:
        self._attention.set()

    def kick(self) -> None:
        """Send now: end a wait between reconnection attempts, and let the
        sender look again (the status button)."""
        self._kicked.set()
        self._attention.set()

    def offer(self, first_id: int, records: list[bytes]) -> None:
        """Records just committed (called on the buffer thread). They reach
        the live lane at the loop's next turn; one wake-up serves many commits."""
        with self._handoff_lock:
            self._handoff.append((first_id, records))
            self._handoff_records += len(records)
            while self._handoff_records > HANDOFF_MAX_RECORDS and len(self._handoff) > 1:
                old_first, old = self._handoff.pop(0)
                self._handoff_records -= len(old)
                self._handoff_skip_to = old_first + len(old)
            if self._handoff_scheduled or self._loop is None:
                return
            if self._lingering and self._handoff_records < self.plan.limits.max_samples:
                # The sender is waiting out a live batch's linger and takes
                # these when it ends: waking it for each commit of a trickle
                # was a large share of a quiet edge's CPU.
                return
            self._handoff_scheduled = True
        self._loop.call_soon_threadsafe(self._take_offers)

    def _take_offers(self, wake: bool = True) -> None:
        with self._handoff_lock:
            offers, self._handoff = self._handoff, []
            skip_to, self._handoff_skip_to = self._handoff_skip_to, 0
            self._handoff_records = 0
            self._handoff_scheduled = False
        if skip_to:
            self.plan.skip_to(skip_to)
        now = time.monotonic()
        for first_id, records in offers:
            self.plan.committed(first_id, records, now)
        if wake:
            self._attention.set()

    def status_changed(self, device_id: str, status: str, at: float) -> None:
        self._statuses[device_id] = _Status(status, at)
        self._publish_commands(self.desk.status(device_id, status))
        self._attention.set()

    def command_answered(self, device_id: str, answer: Answer) -> None:
        if self.desk.answer(device_id, answer, time.time()):
            metrics.COMMANDS.labels("answered").inc()
            self._attention.set()
        else:
            metrics.COMMAND_ANSWERS_UNKNOWN.inc()
            log.warning("answer to no command held here", device=device_id)

    def command_published(self, mid: int) -> None:
        command_id = self._command_mids.pop(mid, None)
        if command_id is not None:
            self.desk.delivered(command_id, time.time())
            metrics.COMMANDS.labels("delivered").inc()
            self._attention.set()

    def expire_commands(self, now: float) -> None:
        expired = self.desk.expire(now)
        if expired:
            metrics.COMMANDS.labels("expired").inc(expired)
            self._attention.set()
        for mid, command_id in list(self._command_mids.items()):
            if command_id not in self.desk.held:
                del self._command_mids[mid]

    def _take_command(self, command: pb.Command) -> None:
        metrics.COMMANDS.labels("received").inc()
        self._publish_commands(
            self.desk.take(
                command.id, command.device_id, command.payload, command.expires_at, time.time()
            )
        )
        self._attention.set()

    def _publish_commands(self, commands: list[Held]) -> None:
        for command in commands:
            topic = contract.topic(command.device_id, contract.CMD)
            mid = None if self.publish is None else self.publish(topic, command.payload, 1)
            if mid is None:
                self.desk.not_handed(command.id)
            else:
                self._command_mids[mid] = command.id

    def stats_changed(self, buffered: int, oldest_age_s: float, delivery_rate: float) -> None:
        """The latest buffer figures; the cloud gets them every STATS_EVERY_S."""
        self._stats = pb.EdgeStats(
            at=time.time(), buffered=buffered, oldest_age_s=oldest_age_s,
            delivery_rate=delivery_rate,
        )  # fmt: skip
        if time.monotonic() - self._stats_sent_at >= STATS_EVERY_S:
            self._attention.set()

    # -- the stream ----------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        self._loop = asyncio.get_running_loop()
        attempt = 0
        while not stop.is_set():
            metrics.UPLINK_RECONNECTS.inc()
            self._acked_any = False
            try:
                await self._session(stop)
            except (grpc.aio.AioRpcError, StreamClosed) as exc:
                self._report_down(exc)
            finally:
                self._set_connected(False)
                self._stats_sent_at = float("-inf")
                for state in self._statuses.values():
                    state.sent = False
                self.desk.stream_lost()
            attempt = 0 if self._acked_any else attempt + 1
            delay = backoff_delay(attempt, BACKOFF_BASE_S, self._reconnect_max_s, random.random())
            self._kicked.clear()
            await first_of(stop, self._kicked, timeout=delay)

    def _report_down(self, exc: grpc.aio.AioRpcError | StreamClosed) -> None:
        if isinstance(exc, grpc.aio.AioRpcError) and exc.code() in REFUSED:
            metrics.UPLINK_REFUSED.labels(exc.code().name.lower()).inc()
            log.error(
                "the cloud refused this edge; trying again later",
                cloud=self._target,
                edge=self._edge_id,
                status=exc.code().name,
                reason=exc.details(),
            )
            return
        hint = {"hint": TLS_REFUSAL_HINT} if self._tls_refused(exc) else {}
        log.warning("cloud stream down", cloud=self._target, error=_describe(exc), **hint)

    def _tls_refused(self, exc: grpc.aio.AioRpcError | StreamClosed) -> bool:
        if self._credentials is None or not isinstance(exc, grpc.aio.AioRpcError):
            return False
        details = exc.details() or ""
        return "failed to connect" in details and "Socket closed" in details

    def _channel(self) -> grpc.aio.Channel:
        if self._credentials is None:
            return grpc.aio.insecure_channel(
                self._target, options=CHANNEL_OPTIONS, compression=self._compression
            )
        return grpc.aio.secure_channel(
            self._target, self._credentials, options=CHANNEL_OPTIONS,
            compression=self._compression,
        )  # fmt: skip

    async def _session(self, stop: asyncio.Event) -> None:
        """One stream, until it fails or `stop` is set."""
        async with self._channel() as channel:
            # Requests are bytes already (see edgewire/wire.py): no serializer.
            ingest = channel.stream_stream(
                INGEST_METHOD,
                request_serializer=None,
                response_deserializer=pb.CloudMessage.FromString,
            )
            self._outbox = asyncio.Queue()
            hello = pb.Hello(edge_id=self._edge_id, software_version=__version__)
            self._outbox.put_nowait(pb.EdgeMessage(hello=hello).SerializeToString())
            call = ingest(self._requests())
            await call.wait_for_connection()
            self.plan.restart((await self._pipeline.stats()).newest_id)
            # Batches go out at once: one sent before the cloud admitted
            # this edge is acknowledged after it, or sent again if refused.
            admission = asyncio.create_task(self._await_admission(call), name="uplink-admission")
            receiver = asyncio.create_task(self._receive(call), name="uplink-acks")
            sender = asyncio.create_task(self._send(stop), name="uplink-send")
            done, _ = await asyncio.wait({receiver, sender}, return_when=asyncio.FIRST_COMPLETED)
            if sender in done and sender.exception() is None:
                # Stopping: give the last acknowledgements a moment to arrive.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._drained(receiver), DRAIN_ON_STOP_S)
            self._outbox.put_nowait(None)
            for task in (sender, receiver, admission):
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await admission
            for result in await asyncio.gather(sender, receiver, return_exceptions=True):
                if isinstance(result, grpc.aio.AioRpcError | StreamClosed):
                    raise result

    async def _await_admission(
        self, call: "grpc.aio.StreamStreamCall[bytes, pb.CloudMessage]"
    ) -> None:
        """Up once the cloud admitted this edge: it answers the Hello with
        its response headers then, while a refusal ends the call instead."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(call.initial_metadata(), ADMISSION_WAIT_S)
        if not call.done():
            self._set_connected(True)

    async def _requests(self) -> AsyncIterator[bytes]:
        while (message := await self._outbox.get()) is not None:
            yield message

    async def _drained(self, receiver: "asyncio.Task[None]") -> None:
        while self.plan.inflight_batches and not receiver.done():
            self._attention.clear()
            await self._attention.wait()

    async def _send(self, stop: asyncio.Event) -> None:
        plan = self.plan
        while not stop.is_set():
            self._attention.clear()
            self._take_offers(wake=False)  # what a lingering wait left in the hand-off
            if self._stats is not None and time.monotonic() - self._stats_sent_at >= STATS_EVERY_S:
                self._outbox.put_nowait(pb.EdgeMessage(stats=self._stats).SerializeToString())
                self._stats_sent_at = time.monotonic()
            for device_id, state in self._statuses.items():
                if not state.sent:
                    status = pb.DeviceStatus(device_id=device_id, status=state.status, at=state.at)
                    self._outbox.put_nowait(pb.EdgeMessage(status=status).SerializeToString())
                    state.sent = True
            for update in self.desk.to_send():
                said = pb.CommandUpdate(
                    id=update.id, device_id=update.device_id, state=update.state,
                    error=update.error, at=update.at,
                )  # fmt: skip
                self._outbox.put_nowait(pb.EdgeMessage(command_update=said).SerializeToString())
            now = time.monotonic()
            lane = plan.next_lane(now)
            batch: Outgoing | None = None
            if lane is Lane.LIVE:
                batch = plan.take_live()
            elif lane is Lane.BACKLOG:
                rows = await self._pipeline.read(*plan.backlog_range())
                batch = plan.backlog_read(rows)
            if batch is not None:
                self._outbox.put_nowait(batch_message(batch.batch_id, batch.records))
                metrics.BATCHES_SENT.labels(batch.lane.value).inc()
                continue
            if lane is Lane.BACKLOG:
                continue  # the backlog turned out empty: choose again
            wait_s = plan.wait_s(now)
            self._lingering = wait_s is not None  # a live batch fills until then
            try:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._attention.wait(), wait_s)
            finally:
                self._lingering = False

    async def _receive(self, call: "grpc.aio.StreamStreamCall[bytes, pb.CloudMessage]") -> None:
        async for message in call:
            kind = message.WhichOneof("kind")
            if kind == "command":
                self._take_command(message.command)
                continue
            if kind != "ack":
                continue
            ids = self.plan.acked(message.ack.batch_id)
            if ids:
                await self._pipeline.delete(ids)
                metrics.SAMPLES_DELIVERED.inc(len(ids))
                self.delivery_rate.add(len(ids), time.monotonic())
                self._acked_any = True
            self._attention.set()
        raise StreamClosed("the cloud closed the stream")

    def _set_connected(self, up: bool) -> None:
        if up != self.connected:
            self.connected = up
            self.down_since = None if up else time.monotonic()
            metrics.UPLINK_CONNECTED.set(1 if up else 0)
            if up:
                log.info("cloud stream up", cloud=self._target)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, grpc.aio.AioRpcError):
        return f"{exc.code().name}: {exc.details()}"
    return str(exc)


def channel_credentials(
    ca: str | None, cert: str | None, key: str | None
) -> grpc.ChannelCredentials:
    """TLS to the cloud: its certificate checked against `ca` (None: the
    system's CAs) for the host name dialled, and with `cert` and `key` this
    edge's own certificate (mTLS). The files were checked when the settings
    loaded."""
    return grpc.ssl_channel_credentials(
        root_certificates=_read(ca), private_key=_read(key), certificate_chain=_read(cert)
    )


def _read(path: str | None) -> bytes | None:
    return None if path is None else Path(path).read_bytes()
