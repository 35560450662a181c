"""The JSON shapes the feeds send (SSE and WebSocket alike).

A sample goes to every subscriber of the process, so its JSON is made once
and kept for a moment (by event id), not once per subscriber.
"""

import json
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import msgspec

from cloud.bus import CommandChange, Event, StatusChange
from edgewire.sample import StoredSample

_CACHE_SIZE = 20_000
_encoded: "OrderedDict[int, str]" = OrderedDict()


def sample_json(event: StoredSample) -> dict[str, Any]:
    s = event.sample
    return {
        "id": event.id,
        "device": s.device_id,
        "boot": s.boot,
        "seq": s.seq,
        "ts": s.ts,
        "ts_from_edge": s.ts_from_edge,
        "m": s.m,
    }


def sample_text(event: StoredSample) -> str:
    """sample_json as JSON text, made once per event id."""
    text = _encoded.get(event.id)
    if text is None:
        text = json.dumps(sample_json(event), separators=(",", ":"))
        _encoded[event.id] = text
        if len(_encoded) > _CACHE_SIZE:
            _encoded.popitem(last=False)
    return text


def event_text(event: StatusChange | CommandChange) -> str:
    return msgspec.json.encode(event).decode()


def _kind(event: StatusChange | CommandChange) -> str:
    return "status" if isinstance(event, StatusChange) else "command"


def sse_chunk(events: Sequence[Event]) -> bytes:
    """Server-sent events for a batch, in one write: `sample` events carry
    their id (for Last-Event-ID), `status` and `command` events none."""
    parts = []
    for event in events:
        if isinstance(event, StoredSample):
            parts.append(f"id: {event.id}\nevent: sample\ndata: {sample_text(event)}\n\n")
        else:
            parts.append(f"event: {_kind(event)}\ndata: {event_text(event)}\n\n")
    return "".join(parts).encode()


def ws_frames(events: Sequence[Event]) -> list[str]:
    """WebSocket messages for a batch: the samples together in one
    `{"samples": [...]}`, each status change in its own `{"status": {...}}`
    and each command's change in `{"command": {...}}`, in the order they came."""
    frames: list[str] = []
    samples: list[str] = []
    for event in events:
        if isinstance(event, StoredSample):
            samples.append(sample_text(event))
        else:
            if samples:
                frames.append('{"samples":[' + ",".join(samples) + "]}")
                samples = []
            frames.append('{"' + _kind(event) + '":' + event_text(event) + "}")
    if samples:
        frames.append('{"samples":[' + ",".join(samples) + "]}")
    return frames
