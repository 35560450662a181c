"""The cloud's HTTP API, the SSE feed and the dashboard (contract §4)."""

import asyncio
import json
import math
from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from importlib import resources
from typing import Any
from urllib.parse import parse_qs

import msgspec
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles
from starlette.websockets import WebSocket

from cloud import metrics
from cloud.bus import Bus, SubscriberTooSlow
from cloud.downlink import Downlink, UnknownDevice
from cloud.feeds import feed_batches
from cloud.limits import REFUSALS
from cloud.shapes import sse_chunk
from cloud.storage import ReadingsQuery
from cloud.storage.threads import StorageThreads
from cloud.tokens import COOKIE, TokenFile, TokenGate, may_command
from cloud.ws import serve_websocket
from edgewire import contract
from edgewire import downlink as downlink_rules
from edgewire.durations import parse_duration

MAX_LIMIT = 100_000
MIN_EVERY_S = 0.001
SSE_PING_S = 15


MAX_COMMAND_BODY = 4096
MAX_LOGIN_BODY = 1024
MAX_COMMANDS_LISTED = 1000


class BadRequest(ValueError):
    pass


class BodyTooLarge(ValueError):
    pass


async def _small_body(request: Request, most: int) -> bytes:
    """The request body, refused once it passes `most` bytes (without
    reading the rest of a huge one)."""
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > most:
            raise BodyTooLarge(f"body over {most} bytes")
    return body


def _json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError:
        raise BadRequest("body is not JSON") from None


class _JSON(Response):
    """JSON through msgspec: fast for long reading lists."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return msgspec.json.encode(content)


def create_app(
    storage: StorageThreads,
    bus: Bus,
    downlink: Downlink,
    stopping: asyncio.Event,
    tokens: TokenFile | None = None,
    metrics_token_required: bool = False,
    allowed_origins: Sequence[str] = (),
) -> Starlette:
    """The app; with `tokens`, the API and feeds admit only known tokens
    (cloud/tokens.py), without them they are open."""

    async def devices(request: Request) -> Response:
        rows = await storage.devices()
        return _JSON(rows)

    async def send_command(request: Request) -> Response:
        """POST /api/devices/<id>/cmd?ttl=10m with the command as the body,
        e.g. {"set": {"interval_s": 30}}: 202 with the queued command."""
        try:
            ttl_s = _ttl(request.query_params.get("ttl"))
            body = await _small_body(request, MAX_COMMAND_BODY)
            row = await downlink.queue(request.path_params["device"], _json(body), ttl_s)
        except UnknownDevice as exc:
            return JSONResponse({"error": str(exc)}, status_code=404)
        except BodyTooLarge as exc:
            return _too_large(request, exc)
        except ValueError as exc:  # BadRequest is one too
            metrics.BAD_REQUESTS.labels("cmd").inc()
            return JSONResponse({"error": str(exc)}, status_code=400)
        return _JSON(row, status_code=202)

    async def list_commands(request: Request) -> Response:
        try:
            device = _device(request.path_params["device"])
            limit = min(_limit(request.query_params.get("limit")), MAX_COMMANDS_LISTED)
        except BadRequest as exc:
            metrics.BAD_REQUESTS.labels("cmd").inc()
            return JSONResponse({"error": str(exc)}, status_code=400)
        return _JSON(await storage.commands(device, limit))

    async def readings(request: Request) -> Response:
        try:
            query = ReadingsQuery(
                device=_device(request.query_params.get("device")),
                metric=_metric(request.query_params.get("metric")),
                since=_time(request.query_params.get("since"), "since"),
                until=_time(request.query_params.get("until"), "until"),
                limit=_limit(request.query_params.get("limit")),
            )
            every = _every(request.query_params.get("every"))
        except BadRequest as exc:
            metrics.BAD_REQUESTS.labels("readings").inc()
            return JSONResponse({"error": str(exc)}, status_code=400)
        if every is not None:
            return _JSON(await storage.downsample(query, every))
        return _JSON(await storage.readings(query))

    async def stream(request: Request) -> Response:
        try:
            device = _device(request.query_params.get("device"))
            after = _event_id(request.headers.get("last-event-id"))
        except BadRequest as exc:
            metrics.BAD_REQUESTS.labels("stream").inc()
            return JSONResponse({"error": str(exc)}, status_code=400)
        devices = None if device is None else frozenset([device])
        return EventSourceResponse(_sse_events(devices, after), ping=SSE_PING_S, send_timeout=30)

    async def _sse_events(
        devices: frozenset[str] | None, after: int | None
    ) -> AsyncIterator[ServerSentEvent | bytes]:
        # Tell the browser how soon to reconnect after the stream ends.
        yield ServerSentEvent(comment="edgewire live feed", retry=2000)
        try:
            async for batch in feed_batches(storage, bus, devices, after):
                yield sse_chunk(batch)  # one write for what was queued
        except SubscriberTooSlow:
            yield ServerSentEvent(data="too slow; reconnect to resume", event="overflow")

    async def ws(websocket: WebSocket) -> None:
        await serve_websocket(websocket, storage, bus, downlink, may_command(websocket.scope))

    async def login(request: Request) -> Response:
        """POST /api/login with {"token": ...} (or a form's token=...): the
        dashboard's cookie, so the browser's EventSource, WebSocket and
        fetches carry the token without the page's script holding it."""
        if tokens is None:
            return JSONResponse({"scope": "command", "open": True})
        try:
            token = _login_token(request, await _small_body(request, MAX_LOGIN_BODY))
        except BodyTooLarge as exc:
            return _too_large(request, exc)
        except BadRequest as exc:
            metrics.BAD_REQUESTS.labels("login").inc()
            return JSONResponse({"error": str(exc)}, status_code=400)
        found = tokens.find(token) if token else None
        if found is None:
            metrics.HTTP_REFUSED.labels("unknown" if token else "missing").inc()
            return JSONResponse({"error": "unknown token"}, status_code=401)
        response = JSONResponse({"name": found.name, "scope": found.scope})
        response.set_cookie(
            COOKIE,
            token,
            httponly=True,  # no script of the page, or injected into it, reads it
            samesite="strict",  # never sent by another site's page: no CSRF
            secure=request.url.scheme == "https",
            path="/",
        )
        return response

    async def logout(request: Request) -> Response:
        response = JSONResponse({"logged_out": True})
        response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")
        return response

    async def healthz(request: Request) -> Response:
        if stopping.is_set():
            return JSONResponse({"status": "stopping"}, status_code=503)
        return JSONResponse({"status": "ok"})

    async def prometheus(request: Request) -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    static = resources.files("cloud") / "static"
    # Installed without tokens too: it still refuses other sites' pages.
    gate = Middleware(TokenGate, tokens, metrics_token_required, allowed_origins)
    middleware = [gate]
    return Starlette(
        middleware=middleware,
        routes=[
            Route("/api/login", login, methods=["POST"]),
            Route("/api/logout", logout, methods=["POST"]),
            Route("/api/devices", devices),
            Route("/api/devices/{device}/cmd", send_command, methods=["POST"]),
            Route("/api/devices/{device}/cmd", list_commands, methods=["GET"]),
            Route("/api/readings", readings),
            Route("/api/stream", stream),
            WebSocketRoute("/api/ws", ws),
            Route("/healthz", healthz),
            Route("/metrics", prometheus),
            Mount("/", StaticFiles(directory=str(static), html=True)),
        ],
    )


def _too_large(request: Request, exc: BodyTooLarge) -> Response:
    REFUSALS.refused(
        "http_body", request.client.host if request.client else "", path=request.url.path
    )
    return JSONResponse({"error": str(exc)}, status_code=413)


def _login_token(request: Request, body: bytes) -> str:
    if request.headers.get("content-type", "").startswith("application/json"):
        sent = _json(body)
        token = sent.get("token") if isinstance(sent, dict) else None
    else:  # a plain form post; parsed here as python-multipart is not installed
        token = parse_qs(body.decode("utf-8", "replace")).get("token", [None])[0]
    if token is not None and not isinstance(token, str):
        raise BadRequest("token must be a string")
    return (token or "").strip()


def _device(value: str | None) -> str | None:
    if value is not None and not contract.is_device_id(value):
        raise BadRequest(f"device {value[:80]!r} is not a device id")
    return value


def _metric(value: str | None) -> str | None:
    if value is not None and contract.METRIC_NAME_RE.match(value) is None:
        raise BadRequest(f"metric {value[:80]!r} is not a metric name")
    return value


def _time(value: str | None, name: str) -> float | None:
    """Unix seconds, or an ISO 8601 time with a zone."""
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            raise BadRequest(
                f"{name} must be Unix seconds or ISO 8601, not {value[:40]!r}"
            ) from None
        if parsed.tzinfo is None:
            raise BadRequest(f"{name} needs a time zone (e.g. Z or +00:00)") from None
        return parsed.timestamp()
    if not math.isfinite(seconds):
        raise BadRequest(f"{name} must be finite")
    return seconds


def _every(value: str | None) -> float | None:
    """`every=60s`: bucket width for server-side downsampling."""
    if value is None:
        return None
    try:
        seconds = parse_duration(value)
    except ValueError as exc:
        raise BadRequest(f"every: {exc}") from None
    if seconds < MIN_EVERY_S:
        raise BadRequest(f"every must be at least {MIN_EVERY_S:g}s")
    return seconds


def _ttl(value: str | None) -> float:
    """How long a command may wait for its board (`ttl=10m`)."""
    if value is None:
        return downlink_rules.DEFAULT_TTL_S
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise BadRequest(f"ttl: {exc}") from None


def _limit(value: str | None) -> int:
    if value is None:
        return 1000
    try:
        limit = int(value)
    except ValueError:
        raise BadRequest(f"limit must be an integer, not {value[:40]!r}") from None
    if not 1 <= limit <= MAX_LIMIT:
        raise BadRequest(f"limit must be between 1 and {MAX_LIMIT}")
    return limit


def _event_id(value: str | None) -> int | None:
    if value is None or value == "":
        return None
    try:
        event_id = int(value)
    except ValueError:
        raise BadRequest(f"Last-Event-ID must be an event id, not {value[:40]!r}") from None
    if event_id < 0:
        raise BadRequest("Last-Event-ID must not be negative")
    return event_id
