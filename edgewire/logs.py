"""Structured logging: one JSON object a line, or readable text on a terminal.

Call sites log an event and its fields, `log.info("cloud stream up",
cloud=target)`; the fields travel as a record attribute through the standard
`logging` machinery, so libraries that log through it (grpc, uvicorn, paho)
come out in the same format. Standard library only: the edge is meant for a
Pi Zero, and a logging framework would cost it 2.4 MB.
"""

import json
import logging
import sys
import time
from typing import Any

_FIELDS = "edgewire_fields"


class KeyValueLogger:
    """`logging.Logger` with an event and keyword fields per line."""

    def __init__(self, logger: logging.Logger) -> None:
        self._logger = logger

    def debug(self, event: str, **fields: Any) -> None:
        self._log(logging.DEBUG, event, fields)

    def info(self, event: str, **fields: Any) -> None:
        self._log(logging.INFO, event, fields)

    def warning(self, event: str, **fields: Any) -> None:
        self._log(logging.WARNING, event, fields)

    def error(self, event: str, **fields: Any) -> None:
        self._log(logging.ERROR, event, fields)

    def exception(self, event: str, **fields: Any) -> None:
        """An error with the traceback of the exception being handled."""
        if self._logger.isEnabledFor(logging.ERROR):
            self._logger.error(event, exc_info=True, extra={_FIELDS: fields}, stacklevel=2)

    def _log(self, level: int, event: str, fields: dict[str, Any]) -> None:
        if self._logger.isEnabledFor(level):
            self._logger.log(level, event, extra={_FIELDS: fields}, stacklevel=3)


class JsonFormatter(logging.Formatter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self._service = service

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "timestamp": _iso(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "service": self._service,
            "event": record.getMessage(),
        }
        entry.update(getattr(record, _FIELDS, {}))
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class ConsoleFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        fields = getattr(record, _FIELDS, {})
        text = " ".join(f"{key}={value}" for key, value in fields.items())
        line = (
            f"{time.strftime('%H:%M:%S', time.localtime(record.created))} "
            f"{record.levelname.lower():7s} {record.name}: {record.getMessage()}"
            + (f"  {text}" if text else "")
        )
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def _iso(created: float) -> str:
    whole = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created))
    return f"{whole}.{int(created % 1 * 1_000_000):06d}Z"


def setup_logging(service: str, level: str = "info", json_lines: bool | None = None) -> None:
    """Configure logging for one process: JSON lines unless on a terminal."""
    if json_lines is None:
        json_lines = not sys.stderr.isatty()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(service) if json_lines else ConsoleFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # uvicorn's access log is a line per request: noise for a feed server.
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)


def set_level(level: str) -> None:
    """Change the level of a running process (a reload)."""
    logging.getLogger().setLevel(level.upper())


def get_logger(name: str) -> KeyValueLogger:
    return KeyValueLogger(logging.getLogger(name))


class LogThrottle:
    """Whether to log about `key` now: once every `every_s` per key, for
    clients that keep repeating what was refused. Remembers at most `most`
    keys (then starts afresh), so a flood of new keys costs no memory."""

    def __init__(self, every_s: float = 60.0, most: int = 1000) -> None:
        self._every_s = every_s
        self._most = most
        self._last: dict[object, float] = {}

    def due(self, key: object) -> bool:
        now = time.monotonic()
        if now - self._last.get(key, -self._every_s) < self._every_s:
            return False
        if len(self._last) >= self._most:
            self._last.clear()
        self._last[key] = now
        return True
