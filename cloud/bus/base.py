"""The bus between the cloud's ingest and its feeds.

Rule: ingest publishes a sample only after storage committed it, with its
storage id, so a feed can always fill a gap from storage. Every subscription
has a bounded queue; a subscriber that falls behind is cut off (its iterator
raises SubscriberTooSlow and a counter moves) rather than slowing ingest or
anyone else. Implementations: `memory` (one process) and `amqp` (RabbitMQ,
several processes).
"""

from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol, TypeAlias

import msgspec

from edgewire.errors import EdgewireError
from edgewire.sample import StoredSample


class StatusChange(msgspec.Struct, frozen=True):
    device_id: str
    status: str
    at: float


class CommandChange(msgspec.Struct, frozen=True):
    """A board command's new state (edgewire/downlink.py): the feeds show it,
    and a `queued` one tells the process holding the board's edge stream
    to send it down."""

    device_id: str
    id: str
    state: str
    at: float
    command: dict[str, Any]
    error: str | None = None


Event: TypeAlias = StoredSample | StatusChange | CommandChange


class SubscriberTooSlow(EdgewireError):
    """The subscription's queue overflowed; reconnect and resume from storage."""


class Subscription(Protocol):
    def batches(self, most: int, every_s: float = 0.0) -> AsyncIterator[list[Event]]:
        """The events, what is queued at once as one list, at most one list
        every `every_s`; raises SubscriberTooSlow after an overflow."""


class Bus(Protocol):
    async def start(self) -> None: ...

    async def publish(self, events: Sequence[Event]) -> None: ...

    def subscribe(self, max_queued: int) -> AbstractAsyncContextManager[Subscription]: ...

    async def close(self) -> None: ...
