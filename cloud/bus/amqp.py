"""The bus between cloud processes: RabbitMQ, through aio-pika.

Several ingest processes behind a load balancer and several feed processes
share one live view. Ingest publishes to the topic exchange `edgewire`: per
committed batch one message per device and metric
(`samples.<device>.<metric>`, the first and last new event ids of that
series), one per status change (`status.<device>`) and one per
board command's change of state (`command.<device>`). Each
process consumes everything through a queue of its own (exclusive,
deleted with it) and hands events to its local subscribers through an
in-process bus.

Why the samples themselves come from storage: ids grow in commit order
(cloud/storage/base.py), but messages from two ingest processes can reach a
feed in either order, and ids have holes (a conflicting insert uses one up),
so a feed cannot tell a late message from a hole. A message is therefore a
nudge: "committed, up to id N"; the feed reads what is new since the last id
it passed on, in id order, from storage, and several nudges that arrive
together cost one read.
"""

import asyncio
import contextlib
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager

import aio_pika
import msgspec
from aio_pika.abc import AbstractIncomingMessage, AbstractRobustConnection

from cloud import metrics
from cloud.bus.base import CommandChange, Event, StatusChange, Subscription
from cloud.bus.memory import MemoryBus
from cloud.storage.threads import StorageThreads
from edgewire.errors import EdgewireError
from edgewire.logs import get_logger
from edgewire.sample import StoredSample

log = get_logger("cloud.bus.amqp")

EXCHANGE = "edgewire"
CATCH_UP_PAGE = 1000


class Nudge(msgspec.Struct, frozen=True):
    first_id: int
    last_id: int


_encode = msgspec.json.encode
_decode_nudge = msgspec.json.Decoder(Nudge).decode
_decode_status = msgspec.json.Decoder(StatusChange).decode
_decode_command = msgspec.json.Decoder(CommandChange).decode


class AmqpBus:
    def __init__(self, url: str, storage: StorageThreads) -> None:
        self._url = url
        self._storage = storage
        self._local = MemoryBus()
        self._connection: AbstractRobustConnection | None = None
        self._exchange: aio_pika.abc.AbstractExchange | None = None
        self._last_id: int | None = None  # the newest id passed to local subscribers
        self._wanted = 0  # the newest id a nudge announced
        self._wake = asyncio.Event()
        self._reader: asyncio.Task[None] | None = None

    async def start(self) -> None:
        try:
            self._connection = await aio_pika.connect_robust(self._url)
            channel = await self._connection.channel()
            self._exchange = await channel.declare_exchange(
                EXCHANGE, aio_pika.ExchangeType.TOPIC, durable=True
            )
            queue = await channel.declare_queue(exclusive=True, auto_delete=True)
            await queue.bind(self._exchange, "#")
            await queue.consume(self._on_message, no_ack=True)
        except (aio_pika.exceptions.AMQPError, OSError) as exc:
            raise EdgewireError(f"cannot reach the AMQP bus: {exc}") from exc
        self._reader = asyncio.create_task(self._catch_up_forever())

    async def publish(self, events: Sequence[Event]) -> None:
        assert self._exchange is not None, "start() first"
        # Keyed by device and metric, so that a consumer of our own or anyone
        # else's can bind to e.g. `samples.*.temp_c`; our feeds bind to `#`.
        by_series: dict[tuple[str, str], list[int]] = {}
        for event in events:
            if isinstance(event, StoredSample):
                for metric in event.sample.m:
                    by_series.setdefault((event.sample.device_id, metric), []).append(event.id)
            else:
                kind = "status" if isinstance(event, StatusChange) else "command"
                await self._exchange.publish(
                    aio_pika.Message(_encode(event), content_type="application/json"),
                    routing_key=f"{kind}.{event.device_id}",
                )
        for (device_id, metric), ids in by_series.items():
            body = _encode(Nudge(min(ids), max(ids)))
            await self._exchange.publish(
                aio_pika.Message(body, content_type="application/json"),
                routing_key=f"samples.{device_id}.{metric}",
            )

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        try:
            key = message.routing_key or ""
            if key.startswith("status."):
                await self._local.publish([_decode_status(message.body)])
                return
            if key.startswith("command."):
                await self._local.publish([_decode_command(message.body)])
                return
            nudge = _decode_nudge(message.body)
        except msgspec.DecodeError as exc:  # not JSON, or not the shape expected
            metrics.BUS_MESSAGES_IGNORED.inc()
            log.warning("bus message ignored", routing_key=message.routing_key, error=str(exc))
            return
        if self._last_id is None:  # this process's first: live from here
            self._last_id = nudge.first_id - 1
        self._wanted = max(self._wanted, nudge.last_id)
        self._wake.set()

    async def _catch_up_forever(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._last_id is not None and self._last_id < self._wanted:
                page = await self._storage.samples_after(self._last_id, None, CATCH_UP_PAGE)
                if not page:
                    break  # not visible yet to this reader: the next nudge retries
                await self._local.publish(page)
                self._last_id = page[-1].id

    def subscribe(self, max_queued: int) -> AbstractAsyncContextManager[Subscription]:
        return self._local.subscribe(max_queued)

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        await self._local.close()
        if self._connection is not None:
            await self._connection.close()
