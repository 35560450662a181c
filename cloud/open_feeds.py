"""An open feed (an SSE response, a WebSocket) that something outside it can
end: cloud/tokens.py ends those whose token was removed.

Rule: once a feed is ended, not one more frame of the app reaches the
client. The app is told the client left (`http.disconnect`,
`websocket.disconnect`), so it stops the way it stops then, and what it
still sends meanwhile is dropped; once the app has returned, the feed sends
the end itself (the last, empty chunk of the event stream; a WebSocket close
frame with the ending's code and reason).
"""

import asyncio
import contextlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from starlette.types import Message, Receive, Send


@dataclass(frozen=True)
class Ending:
    why: str  # for the log
    close_code: int  # for a WebSocket client
    reason: str  # for a WebSocket client


class OpenFeed:
    """One request's receive and send, wrapped. `on_open(feed)` is called
    when it turns out to be a feed: an event stream starts, a WebSocket is
    accepted. Ordinary requests pass through unchanged."""

    def __init__(
        self,
        websocket: bool,
        receive: Receive,
        send: Send,
        on_open: Callable[["OpenFeed"], None],
    ) -> None:
        self.websocket = websocket
        self.kind = "websocket" if websocket else "sse"
        self.ending: Ending | None = None
        self._receive = receive
        self._send = send
        self._on_open = on_open
        self._ended: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending: asyncio.Future[Message] | None = None
        self._open = False  # an event stream started, or a WebSocket accepted
        self._done = False  # finished, or closed by the app or the client

    def end(self, ending: Ending) -> None:
        if self.ending is None:
            self.ending = ending
            self._ended.set_result(None)

    async def send(self, message: Message) -> None:
        if self.ending is not None:
            return  # the feed is over for this client: not one more frame
        kind = message["type"]
        if kind == "websocket.accept" or (
            kind == "http.response.start" and _is_event_stream(message.get("headers", []))
        ):
            self._open = True
            self._on_open(self)
        elif kind == "websocket.close" or (
            kind == "http.response.body" and not message.get("more_body", False)
        ):
            self._done = True
        await self._send(message)

    async def receive(self) -> Message:
        if self.ending is None:
            # The app's wait for the client, cut short by end().
            if self._pending is None:
                self._pending = asyncio.ensure_future(self._receive())
                self._pending.add_done_callback(_retrieve)
            await asyncio.wait((self._pending, self._ended), return_when=asyncio.FIRST_COMPLETED)
            if self._pending.done():
                message: Message = self._pending.result()
                self._pending = None
                if message["type"] in ("http.disconnect", "websocket.disconnect"):
                    self._done = True
                return message
        assert self.ending is not None
        if self.websocket:
            return {"type": "websocket.disconnect", "code": self.ending.close_code}
        return {"type": "http.disconnect"}

    def stop_receiving(self) -> None:
        """The app has returned (or failed): no more waiting for the client."""
        if self._pending is not None and not self._pending.done():
            self._pending.cancel()

    async def finish(self) -> None:
        """After the app returned: end the stream if end() cut it short."""
        if self.ending is None or not self._open or self._done:
            return
        self._done = True
        if self.websocket:
            message: Message = {
                "type": "websocket.close",
                "code": self.ending.close_code,
                "reason": self.ending.reason,
            }
        else:
            message = {"type": "http.response.body", "body": b"", "more_body": False}
        with contextlib.suppress(OSError):  # the client left meanwhile
            await self._send(message)


def _is_event_stream(headers: Iterable[tuple[bytes, bytes]]) -> bool:
    return any(
        key.lower() == b"content-type" and value.startswith(b"text/event-stream")
        for key, value in headers
    )


def _retrieve(future: "asyncio.Future[Message]") -> None:
    # A receive cut short by the end of the request: its outcome is not
    # wanted, but must not be reported as never retrieved.
    if not future.cancelled():
        future.exception()
