"""The live feed every subscriber kind shares (SSE, gRPC Subscribe, later WS).

Rule: a subscriber resuming after event id N gets every stored sample with an
id above N exactly once and in id order: it subscribes to the bus *before*
replaying from storage, then skips live events the replay already covered.
This relies on the bus carrying samples in commit order (see cloud/ingest.py).
"""

from collections.abc import AsyncIterator

from cloud.bus import Bus, Event, StatusChange
from cloud.storage.threads import StorageThreads
from edgewire.sample import StoredSample

REPLAY_PAGE = 500
# Events queued for one live subscriber before it is cut off as too slow.
MAX_QUEUED = 10_000


async def feed(
    storage: StorageThreads,
    bus: Bus,
    devices: frozenset[str] | None,
    after_id: int | None,
) -> AsyncIterator[Event]:
    """Stored samples after `after_id` (None: live only), then live events."""
    async with bus.subscribe(MAX_QUEUED) as live:
        last = 0
        if after_id is not None:
            last = after_id
            while True:
                page = await storage.samples_after(last, devices, REPLAY_PAGE)
                for stored in page:
                    yield stored
                    last = stored.id
                if len(page) < REPLAY_PAGE:
                    break
        async for event in live:
            if isinstance(event, StoredSample):
                if event.id <= last:
                    continue
                last = event.id
                if devices is not None and event.sample.device_id not in devices:
                    continue
            elif (
                isinstance(event, StatusChange)
                and devices is not None
                and event.device_id not in devices
            ):
                continue
            yield event
