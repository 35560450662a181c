"""Structured logging: one JSON object a line, or readable text on a terminal.

Libraries that log through stdlib `logging` (grpc, uvicorn, paho) go through
the same renderer, so a service's output is uniformly machine-readable.
"""

import logging
import sys
from typing import Any

import structlog

_SHARED: list[Any] = [
    structlog.stdlib.add_log_level,
    structlog.stdlib.add_logger_name,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
]


def setup_logging(service: str, level: str = "info", json: bool | None = None) -> None:
    """Configure structlog and stdlib logging for one process."""
    if json is None:
        json = not sys.stderr.isatty()

    def add_service(logger: Any, method: str, event: dict[str, Any]) -> dict[str, Any]:
        # A processor, not a context variable: paho and grpc log from their
        # own threads, which a context variable would not reach.
        event.setdefault("service", service)
        return event

    renderer: Any = (
        structlog.processors.JSONRenderer()
        if json
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    shared = [*_SHARED, add_service]
    structlog.configure(
        processors=[
            *shared,
            structlog.processors.format_exc_info,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # uvicorn's access log is a line per request: noise for a feed server.
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    logger: structlog.stdlib.BoundLogger = structlog.stdlib.get_logger(name)
    return logger
