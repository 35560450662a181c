"""Storage from the event loop: writes on one thread, reads on another.

SQLite (and psycopg's sync API) block; running writes on a single dedicated
thread keeps commits in order, and reads on their own thread keep dashboard
queries from waiting behind a commit.
"""

import asyncio
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from cloud.storage.base import (
    Bucket,
    CommandRow,
    DeviceRow,
    EdgeStats,
    InsertResult,
    Reading,
    ReadingsQuery,
    Storage,
)
from edgewire.sample import Sample, StoredSample


class StorageThreads:
    def __init__(self, storage: Storage) -> None:
        self._storage = storage
        self._writes = ThreadPoolExecutor(1, thread_name_prefix="storage-write")
        self._reads = ThreadPoolExecutor(1, thread_name_prefix="storage-read")

    async def insert(self, samples: Sequence[Sample], received_at: float) -> InsertResult:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._writes, self._storage.insert, samples, received_at)

    async def set_status(
        self, device_id: str, status: str, at: float, edge_id: str | None = None
    ) -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(
            self._writes, self._storage.set_status, device_id, status, at, edge_id
        )

    async def set_edge_stats(self, stats: EdgeStats) -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._writes, self._storage.set_edge_stats, stats)

    async def devices(self) -> list[DeviceRow]:
        return await asyncio.get_running_loop().run_in_executor(self._reads, self._storage.devices)

    async def readings(self, query: ReadingsQuery) -> list[Reading]:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._reads, self._storage.readings, query)

    async def downsample(self, query: ReadingsQuery, every_s: float) -> list[Bucket]:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._reads, self._storage.downsample, query, every_s)

    async def delete_before(self, ts: float, limit: int) -> int:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._writes, self._storage.delete_before, ts, limit)

    async def samples_after(
        self, after_id: int, devices: frozenset[str] | None, limit: int
    ) -> list[StoredSample]:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._reads, self._storage.samples_after, after_id, devices, limit
        )

    async def add_command(self, row: CommandRow) -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._writes, self._storage.add_command, row)

    async def update_command(
        self, command_id: str, device_id: str, state: str, at: float, error: str | None = None
    ) -> CommandRow | None:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._writes, self._storage.update_command, command_id, device_id, state, at, error
        )

    async def commands_for_edge(self, edge_id: str, now: float, limit: int) -> list[CommandRow]:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._reads, self._storage.commands_for_edge, edge_id, now, limit
        )

    async def commands(self, device: str | None, limit: int) -> list[CommandRow]:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._reads, self._storage.commands, device, limit)

    async def expire_commands(self, now: float, limit: int) -> list[CommandRow]:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._writes, self._storage.expire_commands, now, limit)

    def close(self) -> None:
        self._reads.shutdown(wait=True)
        self._writes.shutdown(wait=True)
        self._storage.close()
