"""The cloud bus: the interface (base.py) and the one place that picks."""

from urllib.parse import urlsplit

from cloud.bus.base import Bus, CommandChange, Event, StatusChange, SubscriberTooSlow, Subscription
from cloud.bus.memory import MemoryBus
from cloud.storage.threads import StorageThreads
from edgewire.errors import ConfigError

__all__ = [
    "Bus",
    "CommandChange",
    "Event",
    "MemoryBus",
    "StatusChange",
    "SubscriberTooSlow",
    "Subscription",
    "open_bus",
]


def open_bus(url: str, storage: StorageThreads) -> Bus:
    """`memory://` (one process) or `amqp://user:password@host/vhost`."""
    scheme = urlsplit(url).scheme
    if scheme == "memory":
        return MemoryBus()
    if scheme in ("amqp", "amqps"):
        from cloud.bus.amqp import AmqpBus  # aio-pika only when asked for

        return AmqpBus(url, storage)
    raise ConfigError(f"bus URL {url!r}: scheme must be memory:// or amqp://")
