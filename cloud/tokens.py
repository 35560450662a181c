"""API tokens of the cloud's HTTP API and feeds (docs/security.md).

The tokens file holds, per token, its name, its scope (`read`: the API's
GETs and the feeds; `command`: also commands to boards) and the SHA-256 of
the token, never the token itself: a copy of the file (a backup, a support
bundle) lets nobody in. `edgewire cloud add-token` prints the token once.

The running cloud looks at the file's identity on every request and reads
it again when it changed, so add-token and remove-token take effect at once.
Rule: a feed lasts no longer than its token. Open feeds (SSE, WebSocket) are
judged again when the file changed, looked at once a second for all of them
together, and those whose token is gone, or narrowed below what the feed was
let do, are ended (cloud/open_feeds.py). The gate also refuses other sites'
pages (cloud/origins.py), with or without tokens.

TokenGate is a pure ASGI middleware rather than Starlette's BaseHTTPMiddleware
because that one wraps the response body, which does not suit SSE streams,
and does not see WebSocket scopes at all.
"""

import asyncio
import collections
import contextlib
import fcntl
import hashlib
import hmac
import json
import os
import secrets
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from starlette.requests import cookie_parser
from starlette.types import ASGIApp, Receive, Scope, Send

from cloud import metrics
from cloud.open_feeds import Ending, OpenFeed
from cloud.origins import origin_allowed, parse_origin
from edgewire.errors import ConfigError
from edgewire.files import FileVersion, write_atomically
from edgewire.logs import LogThrottle, get_logger

log = get_logger("cloud.tokens")

TokenScope = Literal["read", "command"]
SCOPES: tuple[TokenScope, ...] = ("read", "command")
COOKIE = "edgewire_token"
# The scope key where the gate leaves what the caller may do; an open API
# (no tokens file) lets everyone do everything, as before tokens existed.
SCOPE_KEY = "edgewire.token_scope"
CLOSE_UNAUTHORIZED = 4401
CLOSE_FORBIDDEN = 4403
# How often open feeds are judged again, if the tokens file changed.
RECHECK_EVERY_S = 1.0
ORIGIN_LOG_EVERY_S = 60.0
_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.@-")


@dataclass(frozen=True)
class Token:
    name: str
    scope: TokenScope
    sha256: str


def digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).hexdigest()


def check_name(name: str) -> str:
    if not 1 <= len(name) <= 64 or not set(name) <= _NAME_CHARS:
        raise ConfigError(f"token name {name[:64]!r}: 1-64 letters, digits, '_', '.', '@' or '-'")
    return name


def decode_tokens(data: bytes, where: str) -> list[Token]:
    try:
        body = json.loads(data)
        tokens = [
            Token(str(t["name"]), t["scope"], str(t["sha256"]))
            for t in (body["tokens"] if isinstance(body, dict) else [])
        ]
    except (ValueError, KeyError, TypeError):
        raise ConfigError(f"{where} is not an edgewire tokens file") from None
    for token in tokens:
        if token.scope not in SCOPES or len(token.sha256) != 64:
            raise ConfigError(f"{where}: token {token.name!r} has a bad scope or hash")
    return tokens


def encode_tokens(tokens: list[Token]) -> bytes:
    rows = [{"name": t.name, "scope": t.scope, "sha256": t.sha256} for t in tokens]
    return (json.dumps({"tokens": rows}, indent=2) + "\n").encode()


def read_tokens(path: Path) -> list[Token]:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
    return decode_tokens(data, str(path))


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    # Two add-token runs at once would each save what they read: the first
    # one's token would vanish.
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(
            path.with_name(f".{path.name}.lock"), os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600
        )
    except OSError as exc:
        raise ConfigError(f"cannot lock {path}: {exc.strerror}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _write_atomically(path: Path, data: bytes) -> None:
    """Replace the tokens file (mode 0600) so the running cloud reads the
    old one or the new one, never half of one."""
    try:
        write_atomically(path, data, 0o600)
    except OSError as exc:
        raise ConfigError(f"cannot write {path}: {exc.strerror}") from None


def add_token(path: Path, name: str, scope: TokenScope) -> str:
    """A new random token under `name` (replacing one of that name); the
    token itself is returned, only its digest stored."""
    check_name(name)
    token = secrets.token_urlsafe(32)
    with _locked(path):
        kept = [t for t in read_tokens(path) if t.name != name]
        _write_atomically(path, encode_tokens([*kept, Token(name, scope, digest(token))]))
    return token


def remove_token(path: Path, name: str) -> bool:
    with _locked(path):
        tokens = read_tokens(path)
        kept = [t for t in tokens if t.name != name]
        if len(kept) == len(tokens):
            return False
        _write_atomically(path, encode_tokens(kept))
    return True


class TokenFile:
    """The tokens file as the running cloud sees it: read again whenever
    the file changes (add-token replaces it, so its inode changes too)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._version = FileVersion(path)
        self._read_version = -1
        self._tokens: list[Token] = []
        self._refresh()

    def __len__(self) -> int:
        self._refresh()
        return len(self._tokens)

    def _refresh(self) -> None:
        version = self._version.current()
        if version == self._read_version:
            return
        self._read_version = version
        try:
            self._tokens = read_tokens(self.path)
        except ConfigError as exc:
            # Fail closed: a file we cannot read admits nobody, rather than
            # leaving removed tokens working.
            self._tokens = []
            log.error("tokens file unusable; every token refused until it is fixed", error=str(exc))
        else:
            log.info("tokens file read", path=str(self.path), tokens=len(self._tokens))

    @property
    def version(self) -> int:
        """Which reading of the file find() answered from; it changes each
        time the file is read again."""
        return self._read_version

    def current_version(self) -> int:
        """The version after reading the file again if it changed."""
        self._refresh()
        return self._read_version

    def find(self, token: str) -> Token | None:
        self._refresh()
        return self.find_digest(digest(token))

    def find_digest(self, sha256: str) -> Token | None:
        """The token of that digest in the file as last read (no new read)."""
        found = None
        for candidate in self._tokens:
            # Every entry is compared, in constant time, so the answer's
            # timing says nothing about how close a guess came.
            if hmac.compare_digest(candidate.sha256, sha256):
                found = candidate
        return found


def presented_token(scope: Scope) -> str | None:
    """The bearer token of a request, else its login cookie (never a query
    parameter: URLs end up in logs and browser history)."""
    cookies: dict[str, str] = {}
    headers: list[tuple[bytes, bytes]] = scope.get("headers", [])
    for key, value in headers:
        if key == b"authorization":
            kind, _, token = value.decode("latin-1").partition(" ")
            if kind.lower() == "bearer" and token.strip():
                return token.strip()
        elif key == b"cookie":
            cookies.update(cookie_parser(value.decode("latin-1")))
    return cookies.get(COOKIE) or None


def may_command(scope: Scope) -> bool:
    granted: str = scope.get(SCOPE_KEY, "command")
    return granted == "command"


REVOKED = Ending("removed", CLOSE_UNAUTHORIZED, "token revoked")
NARROWED = Ending(
    "scope narrowed to read", CLOSE_FORBIDDEN, "this token may no longer send commands; reconnect"
)


@dataclass
class _Grant:
    """What an open feed was let in with."""

    token: Token
    version: int  # of the tokens file it was last judged by


class TokenGate:
    """Admits requests to the API, the feeds (and /metrics when asked) only
    with a known token of the right scope, and ends an open feed once its
    token no longer allows it. Without a tokens file (`tokens` None) the API
    is open, and the gate only refuses pages of other origins."""

    def __init__(
        self,
        app: ASGIApp,
        tokens: TokenFile | None,
        metrics_token_required: bool = False,
        allowed_origins: Iterable[str] = (),
    ) -> None:
        self.app = app
        self.tokens = tokens
        self.metrics_token_required = metrics_token_required
        self.allowed_origins = frozenset(parse_origin(o) for o in allowed_origins)
        self._feeds: dict[OpenFeed, _Grant] = {}
        self._watcher: asyncio.Task[None] | None = None
        self._origin_logged = LogThrottle(ORIGIN_LOG_EVERY_S)

    def needed(self, scope: Scope) -> TokenScope | None:
        """The scope a request needs, or None for an open one."""
        path: str = scope["path"]
        if path in ("/api/login", "/api/logout"):
            return None  # login checks the token it is given itself
        if path == "/metrics":
            return "read" if self.metrics_token_required else None
        if not path.startswith("/api/"):
            return None  # /healthz and the page's own files: they hold no data
        if scope["type"] == "http" and scope["method"] not in ("GET", "HEAD"):
            return "command"  # whatever changes something
        return "read"  # WebSocket commands are checked per message (cloud/ws.py)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        if not self._origin_ok(scope):
            await _refuse(scope, receive, send, "origin", "this page's origin may not use the API")
            return
        needed = None if self.tokens is None else self.needed(scope)
        if self.tokens is None or needed is None:
            await self.app(scope, receive, send)
            return
        presented = presented_token(scope)
        token = None if presented is None else self.tokens.find(presented)
        if presented is None:
            await _refuse(scope, receive, send, "missing", "a token is needed")
        elif token is None:
            await _refuse(scope, receive, send, "unknown", "unknown token")
        elif needed == "command" and token.scope != "command":
            await _refuse(scope, receive, send, "scope", "this token may not send commands")
        else:
            grant = _Grant(token, self.tokens.version)
            websocket = scope["type"] == "websocket"
            feed = OpenFeed(websocket, receive, send, lambda feed: self._track(feed, grant))
            try:
                await self.app({**scope, SCOPE_KEY: token.scope}, feed.receive, feed.send)
            finally:
                self._untrack(feed)
                feed.stop_receiving()
            await feed.finish()

    def _origin_ok(self, scope: Scope) -> bool:
        """A browser's WebSocket or state-changing request from another
        site's page is refused (cloud/origins.py); GETs are left alone, as
        a page cannot read another origin's answers."""
        if scope["type"] == "http" and scope["method"] in ("GET", "HEAD"):
            return True
        origin = host = None
        for key, value in scope.get("headers", []):
            if key == b"origin":
                origin = value.decode("latin-1")
            elif key == b"host":
                host = value.decode("latin-1")
        if origin is None or origin_allowed(origin, host, self.allowed_origins):
            return True
        if self._origin_logged.due(origin):
            log.warning(
                "refused a request from another origin's page (allowed_origins lists more)",
                origin=origin[:200],
                path=scope["path"][:200],
                websocket=scope["type"] == "websocket",
            )
        return False

    def _track(self, feed: OpenFeed, grant: _Grant) -> None:
        self._feeds[feed] = grant
        if self._watcher is None:
            self._watcher = asyncio.get_running_loop().create_task(
                self._watch(), name="token-watch"
            )

    def _untrack(self, feed: OpenFeed) -> None:
        self._feeds.pop(feed, None)
        if not self._feeds and self._watcher is not None:
            self._watcher.cancel()
            self._watcher = None

    async def _watch(self) -> None:
        # One task, and one look at the file, per interval for every open
        # feed together: nothing per frame or per feed until the file changes.
        while True:
            await asyncio.sleep(RECHECK_EVERY_S)
            self.recheck()

    def recheck(self) -> None:
        """End the open feeds whose token the tokens file no longer allows."""
        assert self.tokens is not None
        version = self.tokens.current_version()
        ended: collections.Counter[tuple[str, str, str]] = collections.Counter()
        for feed, grant in self._feeds.items():
            if grant.version == version or feed.ending is not None:
                continue
            grant.version = version
            now = self.tokens.find_digest(grant.token.sha256)
            if now is None:
                ending = REVOKED
            elif feed.websocket and grant.token.scope == "command" and now.scope != "command":
                ending = NARROWED  # its socket was let send commands when it opened
            else:
                continue
            feed.end(ending)
            ended[grant.token.name, ending.why, feed.kind] += 1
        for (name, why, kind), count in sorted(ended.items()):
            metrics.HTTP_REFUSED.labels("revoked").inc(count)
            log.warning(
                "open feeds ended: their token was removed or no longer allows them",
                token_name=name,
                why=why,
                feed=kind,
                feeds=count,
            )


async def _refuse(scope: Scope, receive: Receive, send: Send, reason: str, message: str) -> None:
    metrics.HTTP_REFUSED.labels(reason).inc()
    forbidden = reason in ("scope", "origin")
    if scope["type"] == "websocket":
        # Accepted, then closed with a code the page can read: a refused
        # handshake reaches a browser's script as a bare error.
        await receive()  # websocket.connect
        await send({"type": "websocket.accept"})
        code = CLOSE_FORBIDDEN if forbidden else CLOSE_UNAUTHORIZED
        await send({"type": "websocket.close", "code": code, "reason": message})
        return
    body = json.dumps({"error": message}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if not forbidden:
        headers.append((b"www-authenticate", b'Bearer realm="edgewire"'))
    await send(
        {"type": "http.response.start", "status": 403 if forbidden else 401, "headers": headers}
    )
    await send({"type": "http.response.body", "body": body})
