"""The edge's one long-lived gRPC stream to the cloud.

Samples go up oldest first in batches, a window of them in flight; the cloud
acknowledges each batch after committing it, and only then are its samples
deleted here. When the stream breaks, everything unacknowledged is resent on
the next one (see edge/window.py). Device status changes ride the same stream.
"""

import asyncio
import contextlib
import random
from dataclasses import dataclass

import grpc

from edge import metrics
from edge.pipeline import Pipeline
from edge.window import InFlight, backoff_delay
from edgewire import __version__
from edgewire.logs import get_logger
from edgewire.urls import Endpoint
from edgewire.v1 import edgewire_pb2 as pb
from edgewire.v1 import edgewire_pb2_grpc as pb_grpc
from edgewire.wire import to_proto

log = get_logger("edge.uplink")

BACKOFF_BASE_S = 0.5
BACKOFF_CAP_S = 30.0
# Seconds to wait for the last acknowledgements when stopping.
DRAIN_ON_STOP_S = 3.0
CHANNEL_OPTIONS = [
    # Notice a dead link in seconds, not minutes (see docs/architecture.md).
    ("grpc.keepalive_time_ms", 10_000),
    ("grpc.keepalive_timeout_ms", 5_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_pings_without_data", 0),
    ("grpc.max_send_message_length", 16 * 1024 * 1024),
]


_IngestCall = grpc.aio.StreamStreamCall[pb.EdgeMessage, pb.CloudMessage]


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
        batch_max_samples: int,
        window_batches: int,
    ) -> None:
        self._target = f"{endpoint.host}:{endpoint.port}"
        self._edge_id = edge_id
        self._pipeline = pipeline
        self._batch_max = batch_max_samples
        self._window = InFlight(window_batches)
        # Set whenever the sender may have something to do: new samples, a
        # status change, a window slot freed, or stop.
        self._attention = asyncio.Event()
        self._statuses: dict[str, _Status] = {}
        self._acked_any = False
        self.connected = False

    def wake(self) -> None:
        """New samples are in the buffer, or stop was asked (event loop only)."""
        self._attention.set()

    def status_changed(self, device_id: str, status: str, at: float) -> None:
        """A board's status changed (event loop only)."""
        self._statuses[device_id] = _Status(status, at)
        self._attention.set()

    async def run(self, stop: asyncio.Event) -> None:
        attempt = 0
        while not stop.is_set():
            metrics.UPLINK_RECONNECTS.inc()
            self._acked_any = False
            try:
                await self._session(stop)
            except (grpc.aio.AioRpcError, StreamClosed) as exc:
                log.warning("cloud stream down", cloud=self._target, error=_describe(exc))
            finally:
                self._set_connected(False)
                self._window.reset()
                for state in self._statuses.values():
                    state.sent = False
            attempt = 0 if self._acked_any else attempt + 1
            delay = backoff_delay(attempt, BACKOFF_BASE_S, BACKOFF_CAP_S, random.random())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)

    async def _session(self, stop: asyncio.Event) -> None:
        """One stream, until it fails or `stop` is set."""
        async with grpc.aio.insecure_channel(self._target, options=CHANNEL_OPTIONS) as channel:
            call = pb_grpc.TelemetryStub(channel).Ingest()  # type: ignore[no-untyped-call]
            hello = pb.Hello(edge_id=self._edge_id, software_version=__version__)
            await call.write(pb.EdgeMessage(hello=hello))
            await call.wait_for_connection()
            self._set_connected(True)
            receiver = asyncio.create_task(self._receive(call), name="uplink-acks")
            sender = asyncio.create_task(self._send(call, stop), name="uplink-send")
            done, _ = await asyncio.wait({receiver, sender}, return_when=asyncio.FIRST_COMPLETED)
            if sender in done and sender.exception() is None:
                # Stopping: give the last acknowledgements a moment to arrive.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._drained(receiver), DRAIN_ON_STOP_S)
            for task in (sender, receiver):
                task.cancel()
            for result in await asyncio.gather(sender, receiver, return_exceptions=True):
                if isinstance(result, grpc.aio.AioRpcError | StreamClosed):
                    raise result

    async def _drained(self, receiver: "asyncio.Task[None]") -> None:
        while self._window.batches and not receiver.done():
            self._attention.clear()
            await self._attention.wait()

    async def _send(self, call: _IngestCall, stop: asyncio.Event) -> None:
        while not stop.is_set():
            self._attention.clear()
            for device_id, state in self._statuses.items():
                if not state.sent:
                    message = pb.DeviceStatus(device_id=device_id, status=state.status, at=state.at)
                    await call.write(pb.EdgeMessage(status=message))
                    state.sent = True
            if not self._window.full:
                rows = await self._pipeline.read(self._window.resume_after, self._batch_max)
                if rows:
                    batch_id = self._window.sent([row_id for row_id, _ in rows])
                    samples = [to_proto(sample) for _, sample in rows]
                    await call.write(
                        pb.EdgeMessage(batch=pb.Batch(batch_id=batch_id, samples=samples))
                    )
                    continue
            await self._attention.wait()

    async def _receive(self, call: _IngestCall) -> None:
        async for message in call:
            if message.WhichOneof("kind") != "ack":
                continue
            ids = self._window.acked(message.ack.batch_id)
            if ids:
                await self._pipeline.delete(ids)
                metrics.SAMPLES_DELIVERED.inc(len(ids))
                self._acked_any = True
            self._attention.set()
        raise StreamClosed("the cloud closed the stream")

    def _set_connected(self, up: bool) -> None:
        if up != self.connected:
            self.connected = up
            metrics.UPLINK_CONNECTED.set(1 if up else 0)
            if up:
                log.info("cloud stream up", cloud=self._target)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, grpc.aio.AioRpcError):
        return f"{exc.code().name}: {exc.details()}"
    return str(exc)
