"""`edgewire tail`: the cloud's live feed in a terminal, one line a sample.

It reads `/api/stream` (SSE), and when the connection drops it reconnects
with `Last-Event-ID`, so nothing is missed or printed twice. A token goes in
the Authorization header only, never in the URL or a message; a refused one
ends tail with the reason (exit status 1).
"""

import json
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import Any, TextIO

from edgewire.errors import EdgewireError
from edgewire.urls import redact_url

RETRY_MAX_S = 10.0
READ_TIMEOUT_S = 60.0  # the cloud pings the stream well within this


def parse_sse(lines: Iterable[str]) -> Iterator[dict[str, str]]:
    """Server-sent events from the stream's lines: {"event", "id", "data"}."""
    event: dict[str, str] = {}
    for line in lines:
        if not line:
            if "data" in event:
                yield event
            event = {}
        elif line.startswith(":"):
            continue
        else:
            name, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if name == "data" and "data" in event:
                event["data"] += "\n" + value
            elif name in ("event", "id", "data"):
                event[name] = value


def format_sample(sample: dict[str, Any]) -> str:
    when = datetime.fromtimestamp(sample["ts"], UTC).isoformat(timespec="milliseconds")
    metrics = " ".join(f"{name}={value}" for name, value in sorted(sample["m"].items()))
    stamped = " (edge time)" if sample.get("ts_from_edge") else ""
    return (
        f"{when.replace('+00:00', 'Z')} {sample['device']} "
        f"boot {sample['boot']} seq {sample['seq']}  {metrics}{stamped}"
    )


def format_status(status: dict[str, Any]) -> str:
    when = datetime.fromtimestamp(status["at"], UTC).isoformat(timespec="milliseconds")
    return f"{when.replace('+00:00', 'Z')} {status['device_id']} is {status['status']}"


def format_command(change: dict[str, Any]) -> str:
    when = datetime.fromtimestamp(change["at"], UTC).isoformat(timespec="milliseconds")
    command = json.dumps(change["command"], separators=(",", ":"))
    why = f" ({change['error']})" if change.get("error") else ""
    return (
        f"{when.replace('+00:00', 'Z')} {change['device_id']} command {change['id']} "
        f"{command} {change['state']}{why}"
    )


def refusal(url: str, status: int, body: bytes, token: str | None) -> str:
    """One line saying why the cloud refused the feed (the token never in it)."""
    try:
        said = json.loads(body).get("error")
    except (ValueError, AttributeError):
        said = None
    said = str(said) if said else body.decode(errors="replace")[:200].strip()
    if status == 401 and not token:
        return (
            f"tail: the cloud at {url} needs an API token: set EDGEWIRE_TOKEN,"
            " or pass --token (edgewire cloud add-token NAME --scope read makes one)"
        )
    if status == 401:
        return (
            f"tail: the cloud at {url} refused the token ({said}): it was mistyped,"
            " or removed (edgewire cloud list-tokens shows the names it knows)"
        )
    if status == 403:
        return f"tail: the cloud at {url} refused the token ({said})"
    return f"tail: {url}: HTTP {status} ({said})"


def tail(
    cloud: str,
    device: str | None,
    as_json: bool,
    out: TextIO = sys.stdout,
    token: str | None = None,
) -> None:
    """Print the feed until interrupted; reconnects (with backoff) on errors."""
    query = urllib.parse.urlencode({"device": device} if device else {})
    url = cloud.rstrip("/") + "/api/stream" + (f"?{query}" if query else "")
    last_id: str | None = None
    delay = 0.5
    while True:
        headers = {"Accept": "text/event-stream"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        if last_id is not None:
            headers["Last-Event-ID"] = last_id
        try:
            request = urllib.request.Request(url, headers=headers)
            with urllib.request.urlopen(request, timeout=READ_TIMEOUT_S) as response:
                delay = 0.5
                lines = (raw.decode("utf-8").rstrip("\r\n") for raw in response)
                for event in parse_sse(lines):
                    kind = event.get("event", "message")
                    if kind == "sample":
                        last_id = event.get("id", last_id)
                        sample = json.loads(event["data"])
                        print(event["data"] if as_json else format_sample(sample), file=out)
                    elif kind in ("status", "command"):
                        news = json.loads(event["data"])
                        shown = format_status(news) if kind == "status" else format_command(news)
                        print(event["data"] if as_json else shown, file=out)
                    out.flush()
            reason = "the cloud ended the stream"
        except urllib.error.HTTPError as exc:
            if 400 <= exc.code < 500:
                raise EdgewireError(refusal(redact_url(url), exc.code, exc.read(), token)) from None
            reason = f"HTTP {exc.code}"
        except (OSError, ValueError) as exc:
            reason = str(exc) or type(exc).__name__
        print(f"edgewire tail: {reason}; reconnecting in {delay:g} s", file=sys.stderr)
        time.sleep(delay)
        delay = min(RETRY_MAX_S, delay * 2)
