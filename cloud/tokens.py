"""API tokens of the cloud's HTTP API and feeds (docs/security.md).

The tokens file holds, per token, its name, its scope (`read`: the API's
GETs and the feeds; `command`: also commands to boards) and the SHA-256 of
the token, never the token itself: a copy of the file (a backup, a support
bundle) lets nobody in. `edgewire cloud add-token` prints the token once.

The running cloud looks at the file's identity on every request and reads
it again when it changed, so add-token and remove-token take effect at once.

TokenGate is a pure ASGI middleware rather than Starlette's BaseHTTPMiddleware
because that one wraps the response body, which does not suit SSE streams,
and does not see WebSocket scopes at all.
"""

import contextlib
import fcntl
import hashlib
import hmac
import json
import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from starlette.requests import cookie_parser
from starlette.types import ASGIApp, Receive, Scope, Send

from cloud import metrics
from edgewire.errors import ConfigError
from edgewire.files import FileVersion, write_atomically
from edgewire.logs import get_logger

log = get_logger("cloud.tokens")

TokenScope = Literal["read", "command"]
SCOPES: tuple[TokenScope, ...] = ("read", "command")
COOKIE = "edgewire_token"
# The scope key where the gate leaves what the caller may do; an open API
# (no tokens file) lets everyone do everything, as before tokens existed.
SCOPE_KEY = "edgewire.token_scope"
CLOSE_UNAUTHORIZED = 4401
CLOSE_FORBIDDEN = 4403
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
        self._read_version: int | None = None
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

    def find(self, token: str) -> Token | None:
        self._refresh()
        wanted = digest(token)
        found = None
        for candidate in self._tokens:
            # Every entry is compared, in constant time, so the answer's
            # timing says nothing about how close a guess came.
            if hmac.compare_digest(candidate.sha256, wanted):
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


class TokenGate:
    """Admits requests to the API, the feeds (and /metrics when asked) only
    with a known token of the right scope."""

    def __init__(self, app: ASGIApp, tokens: TokenFile, metrics_token_required: bool) -> None:
        self.app = app
        self.tokens = tokens
        self.metrics_token_required = metrics_token_required

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
        needed = self.needed(scope)
        if needed is None:
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
            await self.app({**scope, SCOPE_KEY: token.scope}, receive, send)


async def _refuse(scope: Scope, receive: Receive, send: Send, reason: str, message: str) -> None:
    metrics.HTTP_REFUSED.labels(reason).inc()
    forbidden = reason == "scope"
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
