"""The gRPC side of the cloud: the edges' Ingest streams and Subscribe.

Rule: a batch is acknowledged only after storage committed it, and committed
samples reach the bus in commit order (one commit-and-publish at a time), which
is what lets the feeds resume without gaps or repeats.
"""

import asyncio
import contextlib
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import NoReturn

import grpc
import msgspec

from cloud import metrics
from cloud.bus import Bus, StatusChange
from cloud.downlink import Downlink
from cloud.edge_trust import Admitted, EdgeGate, Refusal
from cloud.feeds import feed
from cloud.limits import REFUSALS, grpc_peer_address
from cloud.storage.base import EdgeStats
from cloud.storage.threads import StorageThreads
from edgewire import contract
from edgewire.connection_limit import AddressLedger
from edgewire.errors import StorageError
from edgewire.logs import get_logger
from edgewire.sample import Sample, StoredSample, contract_problem
from edgewire.v1 import edgewire_pb2 as pb
from edgewire.v1 import edgewire_pb2_grpc as pb_grpc
from edgewire.wire import from_proto, to_proto

log = get_logger("cloud.ingest")

MAX_SUBSCRIBED_DEVICES = 100  # as on the WebSocket feed


class Committer:
    """Commit-then-publish, one batch at a time."""

    def __init__(self, storage: StorageThreads, bus: Bus) -> None:
        self._storage = storage
        self._bus = bus
        self._lock = asyncio.Lock()

    async def commit(self, samples: list[Sample]) -> tuple[int, int]:
        async with self._lock:
            started = time.perf_counter()
            result = await self._storage.insert(samples, time.time())
            metrics.COMMIT_SECONDS.observe(time.perf_counter() - started)
            await self._bus.publish(result.stored)
        metrics.SAMPLES_STORED.inc(len(result.stored))
        metrics.SAMPLES_DUPLICATE.inc(result.duplicates)
        return len(result.stored), result.duplicates

    async def status(self, change: StatusChange, edge_id: str) -> None:
        async with self._lock:
            await self._storage.set_status(change.device_id, change.status, change.at, edge_id)
            await self._bus.publish([change])


class TelemetryService(pb_grpc.TelemetryServicer):
    def __init__(
        self,
        committer: Committer,
        storage: StorageThreads,
        bus: Bus,
        downlink: Downlink,
        gate: EdgeGate | None = None,
        subscriptions_per_ip: int = 0,
    ) -> None:
        self._committer = committer
        self._subscriptions = AddressLedger(subscriptions_per_ip)
        self._storage = storage
        self._bus = bus
        self._downlink = downlink
        self._gate = gate or EdgeGate()

    async def Ingest(
        self,
        request_iterator: AsyncIterator[pb.EdgeMessage],
        context: grpc.aio.ServicerContext[pb.EdgeMessage, pb.CloudMessage],
    ) -> None:
        admitted: Admitted | None = None
        commands: asyncio.Task[None] | None = None
        # Acks and commands share the stream: one write at a time.
        writing = asyncio.Lock()

        async def write(message: pb.CloudMessage) -> None:
            async with writing:
                await context.write(message)

        metrics.EDGE_STREAMS.inc()
        try:
            async for message in request_iterator:
                kind = message.WhichOneof("kind")
                if kind == "hello":
                    if admitted is None:
                        admitted = await self._admit(message.hello.edge_id, context)
                        log.info("edge connected", edge=admitted.edge_id, peer=context.peer())
                        commands = asyncio.create_task(
                            self._downlink.serve_edge(admitted.edge_id, write)
                        )
                    continue
                if admitted is None:
                    await context.abort(grpc.StatusCode.FAILED_PRECONDITION, "send Hello first")
                refusal = await self._gate.recheck(admitted)
                if refusal is not None:  # revoked while streaming
                    await self._refuse(refusal, admitted.edge_id, context)
                await self._handle(admitted.edge_id, message, write, context)
        finally:
            metrics.EDGE_STREAMS.dec()
            if commands is not None:
                commands.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await commands
            if admitted is not None:
                log.info("edge stream ended", edge=admitted.edge_id)

    async def _handle(
        self,
        edge_id: str,
        message: pb.EdgeMessage,
        write: Callable[[pb.CloudMessage], Awaitable[None]],
        context: grpc.aio.ServicerContext[pb.EdgeMessage, pb.CloudMessage],
    ) -> None:
        kind = message.WhichOneof("kind")
        if kind == "batch":
            ack = await self._batch(edge_id, message.batch, context)
            await write(pb.CloudMessage(ack=ack))
        elif kind == "status":
            await self._status(edge_id, message.status)
        elif kind == "stats":
            await self._stats(edge_id, message.stats)
        elif kind == "command_update":
            await self._command_update(edge_id, message.command_update)

    async def _admit(
        self, claimed: str, context: grpc.aio.ServicerContext[pb.EdgeMessage, pb.CloudMessage]
    ) -> Admitted:
        verdict = await self._gate.admit(claimed, context.auth_context())
        if isinstance(verdict, Refusal):
            await self._refuse(verdict, claimed, context)
        # The edge counts its stream as up once it has the response headers:
        # sent now, they say it was admitted (a refusal ends the call instead).
        await context.send_initial_metadata(())
        return verdict

    async def _refuse(
        self,
        refusal: Refusal,
        claimed: str,
        context: grpc.aio.ServicerContext[pb.EdgeMessage, pb.CloudMessage],
    ) -> NoReturn:
        metrics.EDGES_REFUSED.labels(refusal.reason).inc()
        log.warning(
            "edge refused",
            edge=claimed[:64],
            reason=refusal.reason,
            detail=refusal.detail,
            peer=context.peer(),
        )
        await context.abort(refusal.code, refusal.detail)

    async def _batch(
        self,
        edge_id: str,
        batch: pb.Batch,
        context: grpc.aio.ServicerContext[pb.EdgeMessage, pb.CloudMessage],
    ) -> pb.Ack:
        good: list[Sample] = []
        refused = 0
        foreign: list[str] = []
        for message in batch.samples:
            sample = from_proto(message)
            problem = contract_problem(sample)
            if problem is not None:
                refused += 1
                log.warning("sample refused", edge=edge_id, problem=problem)
            elif not self._gate.owns(edge_id, sample.device_id):
                foreign.append(sample.device_id)
            else:
                good.append(sample)
        metrics.SAMPLES_REFUSED.inc(refused)
        # Samples of boards the edge does not own are refused like those that
        # break the contract: not stored, counted, and acknowledged, so the
        # edge deletes them instead of sending them forever. A batch of
        # nothing else is acknowledged all refused the same way: which
        # samples share a batch is chance, so the verdict must not depend on
        # it (and an unacknowledged batch would stall the edge's window).
        if foreign:
            self._foreign(edge_id, "samples", foreign)
            refused += len(foreign)
        try:
            stored, duplicates = await self._committer.commit(good)
        except StorageError as exc:
            # Not acknowledged: the edge keeps the batch and sends it again.
            metrics.BATCH_ERRORS.inc()
            log.error("batch not committed", edge=edge_id, error=str(exc))
            await context.abort(grpc.StatusCode.UNAVAILABLE, "storage unavailable, retry")
        metrics.BATCHES.inc()
        return pb.Ack(
            batch_id=batch.batch_id, stored=stored, duplicates=duplicates, refused=refused
        )

    async def _command_update(self, edge_id: str, update: pb.CommandUpdate) -> None:
        if not self._gate.owns(edge_id, update.device_id):
            self._foreign(edge_id, "command answers", [update.device_id])
            return
        await self._downlink.edge_said(edge_id, update)

    async def _stats(self, edge_id: str, stats: pb.EdgeStats) -> None:
        figures = (stats.at, stats.oldest_age_s, stats.delivery_rate)
        if not all(math.isfinite(x) and x >= 0 for x in figures):
            metrics.EDGE_STATS_REFUSED.inc()
            log.warning("edge stats refused", edge=edge_id)
            return
        try:
            await self._storage.set_edge_stats(
                EdgeStats(edge_id, stats.at, stats.buffered, stats.oldest_age_s,
                          stats.delivery_rate)
            )  # fmt: skip
        except StorageError as exc:  # figures for a dashboard: the next ones will do
            log.warning("edge stats not stored", edge=edge_id, error=str(exc))

    def _foreign(self, edge_id: str, what: str, device_ids: list[str]) -> None:
        metrics.FOREIGN_DEVICE.labels(edge_id).inc(len(device_ids))
        log.warning(
            f"{what} of boards this edge does not own refused",
            edge=edge_id,
            count=len(device_ids),
            devices=sorted({d[:64] for d in device_ids})[:10],
        )

    async def _status(self, edge_id: str, status: pb.DeviceStatus) -> None:
        if not contract.is_device_id(status.device_id) or status.status not in contract.STATUSES:
            log.warning("status refused", edge=edge_id, device=status.device_id[:80])
            return
        if not self._gate.owns(edge_id, status.device_id):
            self._foreign(edge_id, "status", [status.device_id])
            return
        await self._committer.status(
            StatusChange(status.device_id, status.status, status.at), edge_id
        )

    async def Subscribe(
        self,
        request: pb.SubscribeRequest,
        context: grpc.aio.ServicerContext[pb.SubscribeRequest, pb.SampleEvent],
    ) -> AsyncIterator[pb.SampleEvent]:
        if len(request.devices) > MAX_SUBSCRIBED_DEVICES:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"at most {MAX_SUBSCRIBED_DEVICES} devices in one subscription",
            )
        devices = frozenset(request.devices) or None
        wanted = frozenset(request.metrics) or None
        after = request.after_id if request.HasField("after_id") else None
        stream = object()
        address = grpc_peer_address(context.peer())
        if not self._subscriptions.admit(stream, address):
            REFUSALS.refused("grpc_subscriptions_per_ip", address)
            await context.abort(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"too many subscriptions from this address (at most {self._subscriptions.most})",
            )
        try:
            async for event in feed(self._storage, self._bus, devices, after):
                if not isinstance(event, StoredSample):
                    continue
                sample = event.sample
                if wanted is not None:
                    if not wanted.intersection(sample.m):
                        continue
                    sample = msgspec.structs.replace(
                        sample, m={k: v for k, v in sample.m.items() if k in wanted}
                    )
                yield pb.SampleEvent(id=event.id, sample=to_proto(sample))
        finally:
            self._subscriptions.release(stream)
