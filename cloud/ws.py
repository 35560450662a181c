"""The WebSocket feed, `/api/ws`: the live feed of /api/stream, with the
subscription chosen, and changed, by the client.

Client → cloud, one JSON object a message:

    {"subscribe": {"devices": ["greenhouse-1"], "after": 1234}}
        devices: null (or absent) for every board; after: an event id to
        resume after (null: live only). A new subscribe replaces the last.
    {"unsubscribe": true}
    {"cmd": {"set": {"interval_s": 5}}, "device": "greenhouse-1", "ttl": "10m"}
        a command for a board (ttl optional, default 1h), as with
        POST /api/devices/<id>/cmd; answered with {"queued": {...}}, and its
        later states arrive as `command` events to subscribers of that board

Cloud → client:

    {"subscribed": {"devices": [...] | null, "after": ... | null}}
    {"samples": [{"id", "device", "boot", "seq", "ts", "ts_from_edge", "m"}, ...]}
        in id order: what was ready at once (a replay page, or the
        samples that arrived while the last message was being sent)
    {"status": {"device_id", "status", "at"}}
    {"command": {"device_id", "id", "state", "at", "command", "error"}}
    {"queued": {"id", "device", "command", "state", "created_at", ...}}
    {"unsubscribed": true}
    {"error": "..."}         a message it could not take (or a command sent
                             with a read token); the socket stays open
    {"overflow": "..."}      the client fell behind; the socket is closed
                             (1013), reconnect and resume after the last id
"""

import asyncio
import contextlib
import json
from typing import Any

import msgspec
from starlette.websockets import WebSocket, WebSocketDisconnect

from cloud import metrics
from cloud.bus import Bus, SubscriberTooSlow
from cloud.downlink import Downlink, UnknownDevice
from cloud.feeds import feed_batches
from cloud.shapes import ws_frames
from cloud.storage.threads import StorageThreads
from edgewire import contract
from edgewire.durations import parse_duration

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
    def __init__(
        self,
        websocket: WebSocket,
        storage: StorageThreads,
        bus: Bus,
        downlink: Downlink,
        may_command: bool = True,
    ) -> None:
        self.websocket = websocket
        self.may_command = may_command
        self.storage = storage
        self.bus = bus
        self.downlink = downlink
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

    async def command(self, message: dict[str, Any]) -> None:
        if not self.may_command:
            # Refused, but the socket stays: the read token's feed is fine.
            metrics.HTTP_REFUSED.labels("scope").inc()
            await self.send({"error": "this token may not send commands (read scope)"})
            return
        device, ttl = message.get("device"), message.get("ttl", "1h")
        if not isinstance(device, str):
            raise BadMessage("cmd needs the board's id in `device`")
        try:
            ttl_s = parse_duration(ttl) if isinstance(ttl, str) else float("nan")
            row = await self.downlink.queue(device, message["cmd"], ttl_s)
        except (ValueError, UnknownDevice) as exc:
            raise BadMessage(str(exc)) from None
        await self.websocket.send_text('{"queued":' + msgspec.json.encode(row).decode() + "}")

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
            await self.command(message)
        else:
            raise BadMessage("expected subscribe, unsubscribe or cmd")


async def serve_websocket(
    websocket: WebSocket,
    storage: StorageThreads,
    bus: Bus,
    downlink: Downlink,
    may_command: bool = True,
) -> None:
    await websocket.accept()
    session = _Session(websocket, storage, bus, downlink, may_command)
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
