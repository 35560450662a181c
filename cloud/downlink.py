"""Board commands from the API down the edges' streams, and their states back.

A command is kept in storage first (`queued`), then announced on the bus; the
process that holds the board's edge stream (any of several ingest replicas)
hears it and sends every command still due to that edge. Storage, not the
announcement, is the truth: a stream that starts, or a missed announcement,
is covered by reading what is still due (at once, and every RESYNC_S). The
edge's answers move the stored state forward only (edgewire/downlink.py),
and each move is announced on the bus for the feeds.
"""

import asyncio
import contextlib
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from cloud import metrics
from cloud.bus import Bus, CommandChange, SubscriberTooSlow
from cloud.storage.base import CommandRow
from cloud.storage.threads import StorageThreads
from edgewire import contract, downlink
from edgewire.errors import EdgewireError, StorageError
from edgewire.logs import get_logger
from edgewire.v1 import edgewire_pb2 as pb

log = get_logger("cloud.downlink")

RESYNC_S = 10.0  # how often an edge stream re-reads what is due to it anyway
EXPIRE_EVERY_S = 2.0
DUE_PAGE = 100
EXPIRE_PAGE = 500


class UnknownDevice(EdgewireError):
    """No board by that id has ever reported."""


def change_of(row: CommandRow) -> CommandChange:
    return CommandChange(row.device, row.id, row.state, row.updated_at, row.command, row.error)


class Downlink:
    def __init__(self, storage: StorageThreads, bus: Bus) -> None:
        self._storage = storage
        self._bus = bus
        self._streams: set[asyncio.Event] = set()  # one wake-up per edge stream here

    async def queue(self, device_id: str, command: Any, ttl_s: float) -> CommandRow:
        """Keep a command for a board and announce it; ValueError for a
        malformed one, UnknownDevice for a board never seen."""
        if not contract.is_device_id(device_id):
            raise ValueError(f"{device_id[:80]!r} is not a device id")
        checked = downlink.check_command(command)
        downlink.check_ttl(ttl_s)
        command_id = downlink.new_command_id()
        downlink.board_payload(command_id, checked)  # refuses one too big for a board
        if device_id not in {row.id for row in await self._storage.devices()}:
            raise UnknownDevice(f"no board {device_id!r} has reported to this cloud")
        now = time.time()
        row = CommandRow(command_id, device_id, checked, "queued", now, now, now + ttl_s)
        await self._storage.add_command(row)
        metrics.COMMANDS.labels("queued").inc()
        await self._bus.publish([change_of(row)])
        return row

    async def edge_said(self, edge_id: str, update: pb.CommandUpdate) -> None:
        """An edge's news of a command: applied if it moves it forward."""
        if (
            update.state not in downlink.STATES
            or update.state == "queued"
            or not math.isfinite(update.at)
        ):
            metrics.COMMAND_UPDATES_IGNORED.inc()
            log.warning("command update refused", edge=edge_id, state=update.state[:20])
            return
        # By id and board: an edge that owns a board (cloud/edge_trust.py)
        # can move only that board's commands, whatever ids it learns.
        row = await self._storage.update_command(
            update.id, update.device_id, update.state, update.at, update.error or None
        )
        if row is None:  # old news, a repeat, a command we do not hold, or not that board's
            metrics.COMMAND_UPDATES_IGNORED.inc()
            return
        metrics.COMMANDS.labels(row.state).inc()
        await self._bus.publish([change_of(row)])

    async def serve_edge(
        self, edge_id: str, write: Callable[[pb.CloudMessage], Awaitable[None]]
    ) -> None:
        """Send an edge stream what is due to its boards, until cancelled."""
        wake = asyncio.Event()
        sent: set[str] = set()  # ids sent on this stream
        self._streams.add(wake)
        try:
            while True:
                wake.clear()
                due = await self._storage.commands_for_edge(edge_id, time.time(), DUE_PAGE)
                for row in due:
                    if row.id in sent:
                        continue
                    command = pb.Command(
                        id=row.id,
                        device_id=row.device,
                        payload=downlink.board_payload(row.id, row.command),
                        expires_at=row.expires_at,
                    )
                    await write(pb.CloudMessage(command=command))
                    sent.add(row.id)
                sent.intersection_update(row.id for row in due)  # the rest are done with
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wake.wait(), RESYNC_S)
        finally:
            self._streams.discard(wake)

    async def run(self, stopping: asyncio.Event) -> None:
        """Wake the edge streams when a command is queued (here or in another
        process), and expire what is past its deadline."""
        listener = asyncio.create_task(self._listen())
        try:
            while not stopping.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stopping.wait(), EXPIRE_EVERY_S)
                try:
                    expired = await self._storage.expire_commands(time.time(), EXPIRE_PAGE)
                except StorageError as exc:
                    log.warning("command expiry failed; retrying", error=str(exc))
                    continue
                if expired:
                    metrics.COMMANDS.labels("expired").inc(len(expired))
                    await self._bus.publish([change_of(row) for row in expired])
        finally:
            listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await listener

    async def _listen(self) -> None:
        while True:
            try:
                async with self._bus.subscribe(10_000) as subscription:
                    async for batch in _queued(subscription.batches(1000)):
                        if batch:
                            for wake in self._streams:
                                wake.set()
                return  # the bus closed
            except SubscriberTooSlow:
                for wake in self._streams:  # missed some: let every stream re-read
                    wake.set()


async def _queued(batches: AsyncIterator[list[Any]]) -> AsyncIterator[bool]:
    async for batch in batches:
        yield any(isinstance(e, CommandChange) and e.state == "queued" for e in batch)
