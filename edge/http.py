"""The edge's small HTTP face: /healthz and /metrics, on a thread.

The cloud serves its API with uvicorn; the edge needs two read-only endpoints
and is meant to run for a year on a Pi Zero, so it uses the standard
library's WSGI server and prometheus-client's exposition, which keeps about
11 MB of uvicorn and starlette out of its memory.
"""

import json
import threading
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import make_wsgi_app

from edgewire.errors import EdgewireError

# () -> (healthy, detail); called on the HTTP thread, so it must only read.
HealthProbe = Callable[[], tuple[bool, dict[str, Any]]]
StartResponse = Callable[[str, list[tuple[str, str]]], Any]


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """A line per scrape would flood the journal."""


class HealthServer:
    def __init__(self, host: str, port: int, probe: HealthProbe) -> None:
        metrics_app = make_wsgi_app()

        def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
            if environ.get("PATH_INFO") == "/healthz":
                healthy, detail = probe()
                body = json.dumps(detail).encode()
                status = "200 OK" if healthy else "503 Service Unavailable"
                start_response(status, [("Content-Type", "application/json")])
                return [body]
            if environ.get("PATH_INFO") == "/metrics":
                return metrics_app(environ, start_response)  # type: ignore[no-any-return]
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"not found: try /healthz or /metrics\n"]

        try:
            self._server = make_server(
                host, port, app, server_class=_Server, handler_class=_QuietHandler
            )
        except OSError as exc:
            raise EdgewireError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
        self.port: int = self._server.server_port
        self._thread = threading.Thread(target=self._server.serve_forever, name="http", daemon=True)

    def __enter__(self) -> "HealthServer":
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.shutdown()
        self._server.server_close()
