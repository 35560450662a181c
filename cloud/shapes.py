"""The JSON shapes the feeds send (SSE and WebSocket alike)."""

from typing import Any

from edgewire.sample import StoredSample


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
