"""The WebSocket feed, `/api/ws`: the live feed of /api/stream, with the
subscription chosen, and changed, by the client.

Client → cloud, one JSON object a message:

    {"subscribe": {"devices": ["greenhouse-1"], "after": 1234}}
        devices: null (or absent) for every board; after: an event id to
        resume after (null: live only). A new subscribe replaces the last.
    {"unsubscribe": true}

Cloud → client:

    {"subscribed": {"devices": [...] | null, "after": ... | null}}
    {"samples": [{"id", "device", "boot", "seq", "ts", "ts_from_edge", "m"}, ...]}
        in id order: what was ready at once (a replay page, or the
        samples that arrived while the last message was being sent)
    {"status": {"device_id", "status", "at"}}
    {"unsubscribed": true}
    {"error": "..."}         a message it could not take; the socket stays open
    {"overflow": "..."}      the client fell behind; the socket is closed
                             (1013), reconnect and resume after the last id

Board commands over this socket come with the edge's downlink; until then a
`cmd` message is answered with an error.
"""

import asyncio
import contextlib
import json
from typing import Any

from starlette.websockets import WebSocket, WebSocketDisconnect

from cloud import metrics
from cloud.bus import Bus, SubscriberTooSlow
from cloud.feeds import feed_batches
from cloud.shapes import ws_frames
from cloud.storage.threads import StorageThreads
from edgewire import contract

MAX_DEVICES = 100  # in one subscription
CLOSE_TRY_AGAIN_LATER = 1013
CLOSE_GOING_AWAY = 1001


class BadMessage(ValueError):
    pass


def parse_subscription(message: Any) -> tuple[frozenset[str] | None, int | None]:
    """The (devices, after) of a subscribe message; BadMessage says why not."""
    body = message.get("subscribe")
    if not isinstance(body, dict):
        raise BadMessage("subscribe takes an object: {devices, after}")
    devices = body.get("devices")
    if devices is not None:
        if not isinstance(devices, list) or not all(isinstance(d, str) for d in devices):
            raise BadMessage("devices must be a list of device ids, or null")
        if len(devices) > MAX_DEVICES:
            raise BadMessage(f"at most {MAX_DEVICES} devices in one subscription")
        bad = [d for d in devices if not contract.is_device_id(d)]
        if bad:
            raise BadMessage(f"not a device id: {bad[0][:80]!r}")
    after = body.get("after")
    if after is not None and (isinstance(after, bool) or not isinstance(after, int) or after < 0):
        raise BadMessage("after must be an event id (an integer >= 0), or null")
    return (None if devices is None else frozenset(devices)), after


class _Session:
    def __init__(self, websocket: WebSocket, storage: StorageThreads, bus: Bus) -> None:
        self.websocket = websocket
        self.storage = storage
        self.bus = bus
        self.pump: asyncio.Task[None] | None = None

    async def send(self, message: dict[str, Any]) -> None:
        await self.websocket.send_text(json.dumps(message, separators=(",", ":")))

    async def stop_pump(self) -> None:
        if self.pump is not None:
            self.pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.pump
            self.pump = None

    async def run_pump(self, devices: frozenset[str] | None, after: int | None) -> None:
        try:
            async for batch in feed_batches(self.storage, self.bus, devices, after):
                for frame in ws_frames(batch):
                    await self.websocket.send_text(frame)
        except SubscriberTooSlow:
            await self.send({"overflow": "too slow; reconnect and resume after the last id"})
            await self.websocket.close(CLOSE_TRY_AGAIN_LATER)
            return
        # The feed ended: the cloud is stopping.
        await self.websocket.close(CLOSE_GOING_AWAY)

    async def handle(self, raw: str) -> None:
        try:
            message = json.loads(raw)
        except ValueError:
            raise BadMessage("not JSON") from None
        if not isinstance(message, dict):
            raise BadMessage("a message is a JSON object")
        if "subscribe" in message:
            devices, after = parse_subscription(message)
            await self.stop_pump()
            await self.send(
                {"subscribed": {"devices": None if devices is None else sorted(devices),
                                "after": after}}
            )  # fmt: skip
            self.pump = asyncio.create_task(self.run_pump(devices, after))
        elif message.get("unsubscribe") is True:
            await self.stop_pump()
            await self.send({"unsubscribed": True})
        elif "cmd" in message:
            raise BadMessage("commands to boards are not available on this cloud yet")
        else:
            raise BadMessage("expected subscribe or unsubscribe")


async def serve_websocket(websocket: WebSocket, storage: StorageThreads, bus: Bus) -> None:
    await websocket.accept()
    session = _Session(websocket, storage, bus)
    metrics.WS_CLIENTS.inc()
    try:
        while True:
            raw = await websocket.receive_text()
            try:
                await session.handle(raw)
            except BadMessage as exc:
                metrics.BAD_REQUESTS.labels("ws").inc()
                await session.send({"error": str(exc)})
    except WebSocketDisconnect:
        pass  # the client left, or answered the close the pump sent
    finally:
        metrics.WS_CLIENTS.dec()
        await session.stop_pump()
