"""At most N open connections from one client address on an HTTP port.

uvicorn has a global `limit_concurrency` but nothing per address, so one
client (a buggy dashboard reconnecting in a loop, or a slowloris) could hold
every file descriptor the cloud has. `AddressLedger` is the bookkeeping, with
no sockets in it; `limited_protocols` wraps uvicorn's HTTP and WebSocket
protocol classes so every TCP connection passes through the ledger.

A connection over the limit is still read, so the client gets a readable
429 instead of a reset: its one request goes to `refusal_app`, and the
connection closes after that answer (or after `REFUSED_GRACE_S` if it never
sends one). A WebSocket upgrade on such a connection is answered the same way,
as plain HTTP, before any handshake.
"""

import asyncio
import json
from collections.abc import Callable
from typing import Any

from starlette.types import Receive, Scope, Send

# How long a refused connection may stay open without sending its request.
REFUSED_GRACE_S = 5.0
CLOSE_MESSAGE_TOO_BIG = 1009


class AddressLedger:
    """Which connections are within their address's limit; `most` 0 is none."""

    def __init__(self, most: int) -> None:
        self.most = most
        self._open: dict[str, int] = {}  # admitted connections still open, by address
        self._admitted: dict[object, str] = {}  # connection → its address

    def admit(self, connection: object, address: str) -> bool:
        if self.most and self._open.get(address, 0) >= self.most:
            return False
        self._open[address] = self._open.get(address, 0) + 1
        self._admitted[connection] = address
        return True

    def release(self, connection: object) -> None:
        """The connection closed; safe to call more than once."""
        address = self._admitted.pop(connection, None)
        if address is None:
            return
        left = self._open[address] - 1
        if left:
            self._open[address] = left
        else:
            del self._open[address]

    def open_from(self, address: str) -> int:
        return self._open.get(address, 0)


def refusal_app(most: int) -> Callable[[Scope, Receive, Send], Any]:
    """The ASGI app a refused connection's request meets."""
    body = json.dumps({"error": f"too many connections from this address (at most {most})"})

    async def refuse(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        await send(
            {
                "type": "http.response.start",
                "status": 429,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"connection", b"close"),
                    (b"retry-after", b"5"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body.encode()})

    return refuse


def limited_protocols(
    http_base: type[asyncio.Protocol],
    ws_base: type[asyncio.Protocol],
    ledger: AddressLedger,
    on_refused: Callable[[str, str], None],
) -> tuple[type[asyncio.Protocol], type[asyncio.Protocol]]:
    """uvicorn protocol classes (HTTP, WebSocket) that keep `ledger` current
    and tell on_refused(limit, address) of each refusal: a connection over
    the address's limit ("http_connections_per_ip"), or a WebSocket closed
    for a frame over its size limit ("ws_frame", which the app never sees:
    it is told only of an abnormal closure, 1006).

    Leans on uvicorn's protocol attributes `app` (the ASGI app a connection
    calls) and `_should_upgrade`, and on websockets' `close_sent`;
    tests/test_limits.py fails if they change.
    """
    refuse = refusal_app(ledger.most)

    class LimitedHttp(http_base):  # type: ignore[misc,valid-type]
        refused = False

        def connection_made(self, transport: asyncio.Transport) -> None:
            super().connection_made(transport)
            address = _address(transport)
            if not ledger.admit(transport, address):
                self.refused = True
                self.app = refuse
                on_refused("http_connections_per_ip", address)
                asyncio.get_running_loop().call_later(REFUSED_GRACE_S, transport.close)

        def _should_upgrade(self) -> bool:
            return not self.refused and bool(super()._should_upgrade())

        def connection_lost(self, exc: Exception | None) -> None:
            ledger.release(self.transport)
            super().connection_lost(exc)

    class LimitedWebSocket(ws_base):  # type: ignore[misc,valid-type]
        # Made by LimitedHttp at an upgrade, on a transport already admitted;
        # the HTTP protocol's connection_lost is not called after that.
        def connection_lost(self, exc: Exception | None) -> None:
            ledger.release(self.transport)
            sent = getattr(self, "close_sent", None)
            if sent is not None and sent.code == CLOSE_MESSAGE_TOO_BIG:
                on_refused("ws_frame", _address(self.transport))
            super().connection_lost(exc)

    return LimitedHttp, LimitedWebSocket


def _address(transport: asyncio.BaseTransport) -> str:
    peer = transport.get_extra_info("peername")
    if isinstance(peer, tuple) and peer:
        return str(peer[0])
    return "unix"  # a Unix socket: one local address
