"""The edge's small HTTP face: /healthz and /metrics."""

from collections.abc import Awaitable, Callable
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

HealthProbe = Callable[[], Awaitable[tuple[bool, dict[str, Any]]]]


def create_app(probe: HealthProbe) -> Starlette:
    async def healthz(request: Request) -> Response:
        healthy, detail = await probe()
        return JSONResponse(detail, status_code=200 if healthy else 503)

    async def prometheus(request: Request) -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return Starlette(routes=[Route("/healthz", healthz), Route("/metrics", prometheus)])
