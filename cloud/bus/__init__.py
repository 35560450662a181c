"""The cloud bus: the interface (base.py) and the one place that picks."""

from urllib.parse import urlsplit

from cloud.bus.base import Bus, Event, StatusChange, SubscriberTooSlow, Subscription
from cloud.bus.memory import MemoryBus
from edgewire.errors import ConfigError

__all__ = [
    "Bus",
    "Event",
    "MemoryBus",
    "StatusChange",
    "SubscriberTooSlow",
    "Subscription",
    "open_bus",
]


def open_bus(url: str) -> Bus:
    scheme = urlsplit(url).scheme
    if scheme == "memory":
        return MemoryBus()
    raise ConfigError(f"bus URL {url!r}: only memory:// is available in this version")
