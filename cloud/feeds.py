"""The live feed every subscriber kind shares (SSE, WebSocket, gRPC Subscribe).

Rule: a subscriber resuming after event id N gets every stored sample with an
id above N exactly once and in id order: it subscribes to the bus *before*
replaying from storage, then skips live events the replay already covered.
This relies on the bus carrying samples in commit order (see cloud/ingest.py).

Events come in batches (a replay page, or what was queued for this
subscriber at once), so a subscriber that fell a little behind catches up in
a few large writes rather than many small ones.
"""

from collections.abc import AsyncIterator

from cloud import metrics
from cloud.bus import Bus, Event
from cloud.storage.threads import StorageThreads
from edgewire.sample import StoredSample

REPLAY_PAGE = 500
# Events queued for one live subscriber before it is cut off as too slow.
MAX_QUEUED = 10_000
MAX_BATCH = 500
# A live subscriber gets at most one write this often: a write costs about as
# much as the samples in it, and a dashboard cannot tell 50 ms.
FLUSH_EVERY_S = 0.05


async def feed_batches(
    storage: StorageThreads,
    bus: Bus,
    devices: frozenset[str] | None,
    after_id: int | None,
) -> AsyncIterator[list[Event]]:
    """Stored samples after `after_id` (None: live only), then live events."""
    metrics.SUBSCRIBERS.inc()
    try:
        async for batch in _feed_batches(storage, bus, devices, after_id):
            yield batch
    finally:
        metrics.SUBSCRIBERS.dec()


async def _feed_batches(
    storage: StorageThreads,
    bus: Bus,
    devices: frozenset[str] | None,
    after_id: int | None,
) -> AsyncIterator[list[Event]]:
    async with bus.subscribe(MAX_QUEUED) as live:
        last = 0
        if after_id is not None:
            last = after_id
            while True:
                page = await storage.samples_after(last, devices, REPLAY_PAGE)
                if page:
                    yield list(page)
                    last = page[-1].id
                if len(page) < REPLAY_PAGE:
                    break
        async for batch in live.batches(MAX_BATCH, FLUSH_EVERY_S):
            wanted: list[Event] = []
            for event in batch:
                if isinstance(event, StoredSample):
                    if event.id <= last:
                        continue
                    last = event.id
                    if devices is not None and event.sample.device_id not in devices:
                        continue
                elif devices is not None and event.device_id not in devices:
                    continue
                wanted.append(event)
            if wanted:
                yield wanted


async def feed(
    storage: StorageThreads,
    bus: Bus,
    devices: frozenset[str] | None,
    after_id: int | None,
) -> AsyncIterator[Event]:
    """The same events one at a time."""
    async for batch in feed_batches(storage, bus, devices, after_id):
        for event in batch:
            yield event
