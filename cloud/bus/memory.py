"""The in-process bus: fan-out to bounded per-subscriber queues.

A published batch goes into each subscriber's queue as one item (not one
per event): with hundreds of subscribers and a thousand samples a second,
per-event queueing was most of the cloud's CPU.
"""

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

from cloud.bus.base import Event, SubscriberTooSlow
from cloud.metrics import SUBSCRIBERS_DROPPED


class _MemorySubscription:
    def __init__(self, max_queued: int) -> None:
        self._queue: asyncio.Queue[Sequence[Event] | None] = asyncio.Queue()
        self._max_queued = max_queued
        self._queued = 0  # events in the queue
        self.overflowed = False

    def offer(self, events: Sequence[Event]) -> bool:
        if self.overflowed or self._queued + len(events) > self._max_queued:
            # The reader is busy, not blocked: it sees this before its next get.
            self.overflowed = True
            return False
        self._queue.put_nowait(events)
        self._queued += len(events)
        return True

    def end(self) -> None:
        self._queue.put_nowait(None)

    async def batches(self, most: int, every_s: float = 0.0) -> AsyncIterator[list[Event]]:
        """What is queued, about `most` at a time, waiting only when nothing
        is, and at most one batch every `every_s`: each write to a client
        costs about as much as the events in it, so a few hundred clients
        are served by fewer, larger writes (at up to `every_s` of delay)."""
        loop = asyncio.get_running_loop()
        last = 0.0
        while True:
            if self.overflowed:
                raise SubscriberTooSlow("subscriber fell behind the live feed")
            item = await self._queue.get()
            wait = last + every_s - loop.time()
            if wait > 0 and item is not None:
                await asyncio.sleep(wait)  # let more arrive: one write for all
            last = loop.time()
            batch: list[Event] = []
            while item is not None:
                batch.extend(item)
                self._queued -= len(item)
                if len(batch) >= most or self._queue.empty():
                    break
                item = self._queue.get_nowait()
            if batch:
                yield batch
            if item is None:
                return


class MemoryBus:
    def __init__(self) -> None:
        self._subscribers: set[_MemorySubscription] = set()

    async def start(self) -> None:
        """Nothing to connect to."""

    async def publish(self, events: Sequence[Event]) -> None:
        if not events:
            return
        shared = tuple(events)  # one immutable batch for every subscriber
        for subscriber in list(self._subscribers):
            if not subscriber.offer(shared):
                SUBSCRIBERS_DROPPED.inc()
                self._subscribers.discard(subscriber)

    @asynccontextmanager
    async def subscribe(self, max_queued: int) -> AsyncIterator[_MemorySubscription]:
        subscription = _MemorySubscription(max_queued)
        self._subscribers.add(subscription)
        try:
            yield subscription
        finally:
            self._subscribers.discard(subscription)

    async def close(self) -> None:
        """End every subscription: their iterators finish after what is queued."""
        for subscriber in self._subscribers:
            subscriber.end()
        self._subscribers.clear()
