"""An HTTP server (uvicorn) embedded in a service's own event loop.

uvicorn normally owns the process's signals; here the service does, so the
server's signal capture is switched off and it stops when told. The socket is
bound by us so a busy port is a clear error instead of uvicorn's sys.exit.
"""

import asyncio
import contextlib
import socket
from collections.abc import Callable, Iterator

import uvicorn
from starlette.types import ASGIApp
from uvicorn.config import HTTP_PROTOCOLS, WS_PROTOCOLS
from uvicorn.importer import import_from_string

from edgewire.connection_limit import AddressLedger, limited_protocols
from edgewire.errors import EdgewireError


class _EmbeddedServer(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def bind_tcp(host: str, port: int) -> socket.socket:
    """A listening-ready TCP socket on host:port, or an error saying why not."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise EdgewireError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    return sock


# A WebSocket client only ever sends small control messages.
WS_MAX_FRAME_BYTES = 64 * 1024


class HttpServer:
    """`async with HttpServer(app, host, port):` serves until the block ends."""

    def __init__(
        self,
        app: ASGIApp,
        host: str,
        port: int,
        graceful_s: int = 2,
        ws_deflate: bool = False,
        connections_per_ip: int = 0,
        on_refused: Callable[[str, str], None] = lambda limit, address: None,
    ) -> None:
        """connections_per_ip: open connections one client address may hold
        (0: no limit); on_refused(limit, address) is told of each connection
        refused for it, and of each WebSocket closed for a frame too big."""
        self._sock = bind_tcp(host, port)
        self.port = self._sock.getsockname()[1]
        self.connections = AddressLedger(connections_per_ip)
        http, ws = limited_protocols(
            import_from_string(HTTP_PROTOCOLS["auto"]),
            import_from_string(WS_PROTOCOLS["websockets"]),
            self.connections,
            on_refused,
        )
        config = uvicorn.Config(
            app,
            http=http,
            ws=ws,
            log_config=None,
            lifespan="off",
            access_log=False,
            timeout_graceful_shutdown=graceful_s,
            ws_max_size=WS_MAX_FRAME_BYTES,
            # Off by default: with hundreds of feed clients, compressing each
            # one's copy of the same frames was over a third of the cloud's CPU.
            ws_per_message_deflate=ws_deflate,
            ws_ping_interval=20.0,
            ws_ping_timeout=20.0,
        )
        self._server = _EmbeddedServer(config)
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> "HttpServer":
        self._task = asyncio.create_task(self._server.serve(sockets=[self._sock]), name="http")
        while not self._server.started:
            if self._task.done():
                self._task.result()
                raise EdgewireError("HTTP server stopped during start-up")
            await asyncio.sleep(0.01)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self._server.should_exit = True
        if self._task is not None:
            await self._task
        self._sock.close()
