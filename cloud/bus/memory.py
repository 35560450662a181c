"""The in-process bus: fan-out to bounded per-subscriber queues."""

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

from cloud.bus.base import Event, SubscriberTooSlow
from cloud.metrics import SUBSCRIBERS, SUBSCRIBERS_DROPPED


class _MemorySubscription:
    def __init__(self, max_queued: int) -> None:
        # One slot more than asked, kept for the end-of-stream marker.
        self._queue: asyncio.Queue[Event | None] = asyncio.Queue(max_queued + 1)
        self._max_queued = max_queued
        self.overflowed = False

    def offer(self, event: Event) -> bool:
        if self.overflowed or self._queue.qsize() >= self._max_queued:
            # The reader is busy, not blocked: it sees this before its next get.
            self.overflowed = True
            return False
        self._queue.put_nowait(event)
        return True

    def end(self) -> None:
        self._queue.put_nowait(None)

    async def __aiter__(self) -> AsyncIterator[Event]:
        while True:
            if self.overflowed:
                raise SubscriberTooSlow("subscriber fell behind the live feed")
            event = await self._queue.get()
            if event is None:
                return
            yield event


class MemoryBus:
    def __init__(self) -> None:
        self._subscribers: set[_MemorySubscription] = set()

    async def start(self) -> None:
        """Nothing to connect to."""

    async def publish(self, events: Sequence[Event]) -> None:
        for subscriber in list(self._subscribers):
            for event in events:
                if not subscriber.offer(event):
                    SUBSCRIBERS_DROPPED.inc()
                    self._subscribers.discard(subscriber)
                    break

    @asynccontextmanager
    async def subscribe(self, max_queued: int) -> AsyncIterator[_MemorySubscription]:
        subscription = _MemorySubscription(max_queued)
        self._subscribers.add(subscription)
        SUBSCRIBERS.inc()
        try:
            yield subscription
        finally:
            self._subscribers.discard(subscription)
            SUBSCRIBERS.dec()

    async def close(self) -> None:
        """End every subscription: their iterators finish after what is queued."""
        for subscriber in self._subscribers:
            subscriber.end()
        self._subscribers.clear()
