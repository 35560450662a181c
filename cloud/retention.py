"""Retention: samples older than `--retain` are deleted in the background.

In chunks, each its own short transaction on the write thread, so ingest
commits interleave with a large first clean-up instead of waiting for it.
"""

import asyncio
import contextlib
import time

from cloud import metrics
from cloud.storage.threads import StorageThreads
from edgewire.errors import StorageError
from edgewire.logs import get_logger

log = get_logger("cloud.retention")

CHUNK = 5000  # samples a transaction


def interval_s(retain_s: float) -> float:
    """How often to look: often enough that little more than the limit is
    ever kept, rarely enough to cost nothing (between 1 s and 1 h)."""
    return min(3600.0, max(1.0, retain_s / 100))


async def keep_only(storage: StorageThreads, retain_s: float, stop: asyncio.Event) -> None:
    """Until `stop`: delete what is older than `retain_s`."""
    while not stop.is_set():
        deleted = 0
        try:
            while not stop.is_set():
                n = await storage.delete_before(time.time() - retain_s, CHUNK)
                deleted += n
                metrics.RETENTION_DELETED.inc(n)
                if n < CHUNK:
                    break
        except StorageError as exc:
            log.error("retention failed; trying again later", error=str(exc))
        if deleted:
            log.info("retention", deleted=deleted, retain_s=retain_s)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval_s(retain_s))
