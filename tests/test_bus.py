"""The in-process bus: every subscriber gets every event in order, batched;
a subscriber that falls behind is cut off and counted, and nobody else
notices."""

import asyncio

import pytest
from prometheus_client import REGISTRY

from cloud.bus import MemoryBus, StatusChange, SubscriberTooSlow
from edgewire.sample import Sample, StoredSample


def events(first: int, n: int) -> list[StoredSample]:
    return [StoredSample(i, Sample("a", 1, i, 1.0, {"t": 1.0})) for i in range(first, first + n)]


def dropped() -> float:
    return REGISTRY.get_sample_value("edgewire_cloud_subscribers_dropped_total") or 0.0


def test_a_slow_subscriber_is_cut_off_and_the_others_get_everything() -> None:
    async def scenario() -> tuple[list[int], bool]:
        bus = MemoryBus()
        got: list[int] = []
        async with bus.subscribe(max_queued=5) as slow, bus.subscribe(max_queued=1000) as fast:

            async def read_fast() -> None:
                async for batch in fast.batches(most=100):
                    got.extend(e.id for e in batch if isinstance(e, StoredSample))

            reader = asyncio.create_task(read_fast())
            for first in range(0, 12, 3):  # the slow one never reads: 12 > 5
                await bus.publish(events(first, 3))
                await asyncio.sleep(0)
            await bus.publish([StatusChange("a", "offline", 2.0)])
            await asyncio.sleep(0.05)
            told = False
            try:
                async for _ in slow.batches(most=100):
                    pass
            except SubscriberTooSlow:
                told = True
            await bus.close()
            await reader
        return got, told

    before = dropped()
    got, told = asyncio.run(scenario())
    assert told, "the slow subscriber is told, not silently starved"
    assert got == list(range(12)), "the others get every event, in order"
    assert dropped() == before + 1


def test_batches_wait_for_the_flush_interval_and_join_what_came() -> None:
    async def scenario() -> list[list[int]]:
        bus = MemoryBus()
        seen: list[list[int]] = []
        async with bus.subscribe(max_queued=1000) as sub:

            async def read() -> None:
                async for batch in sub.batches(most=100, every_s=0.2):
                    seen.append([e.id for e in batch if isinstance(e, StoredSample)])

            reader = asyncio.create_task(read())
            await bus.publish(events(0, 1))
            await asyncio.sleep(0.05)
            for first in range(1, 10, 3):  # three publishes within the interval
                await bus.publish(events(first, 3))
                await asyncio.sleep(0.02)
            await asyncio.sleep(0.4)
            await bus.close()
            await reader
        return seen

    seen = asyncio.run(scenario())
    assert [i for batch in seen for i in batch] == list(range(10))
    assert seen[0] == [0], "the first goes at once"
    assert seen[1] == list(range(1, 10)), "what came within the interval goes in one write"


@pytest.mark.parametrize("most", [1, 2])
def test_batches_respect_their_size(most: int) -> None:
    async def scenario() -> list[int]:
        bus = MemoryBus()
        sizes: list[int] = []
        async with bus.subscribe(max_queued=1000) as sub:
            await bus.publish(events(0, 1))
            await bus.publish(events(1, 1))
            await bus.publish(events(2, 1))
            await bus.close()
            async for batch in sub.batches(most=most):
                sizes.append(len(batch))
        return sizes

    assert sum(asyncio.run(scenario())) == 3
    assert max(asyncio.run(scenario())) <= max(most, 1)
