"""Test helpers: real edgewire processes, HTTP and SSE clients."""

import json
import os
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from edgewire.procs import (
    edgewire_argv,
    free_port,
    spawn,
    stop,
    wait_for_health,
    wait_for_port,
)
from edgewire.tail import parse_sse


def eventually(
    check: Callable[[], Any],
    timeout_s: float = 30.0,
    interval_s: float = 0.2,
    show: Callable[[], Any] | None = None,
) -> Any:
    """Call `check` until it returns something truthy; fail with its last
    value, or with what `show()` says when given."""
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval_s)
    seen = show() if show is not None else last
    raise AssertionError(f"not true within {timeout_s} s; last seen: {seen!r}")


@dataclass
class Service:
    """An `edgewire cloud` or `edgewire edge` running as a real subprocess."""

    argv: list[str]
    log_path: Path
    http_port: int
    grpc_port: int = 0
    process: subprocess.Popen[bytes] | None = None

    def start(self, healthy: bool = True) -> "Service":
        """Start and wait until /healthz answers 200 (`healthy=False`: until
        the HTTP port listens, for a service expected to report trouble)."""
        self.process = spawn(self.argv, self.log_path)
        if healthy:
            wait_for_health(self.http_port, 30, self.process)
        else:
            wait_for_port(self.http_port, 30, self.process)
        return self

    def stop(self) -> int:
        assert self.process is not None
        return stop(self.process)

    def kill(self) -> None:
        assert self.process is not None
        self.process.kill()
        self.process.wait()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def get(self, path: str, token: str | None = None, **params: Any) -> Any:
        """GET path?params as JSON; with `token`, as its bearer."""
        headers = {} if token is None else {"Authorization": f"Bearer {token}"}
        response = httpx.get(self.url + path, params=params, headers=headers, timeout=10)
        response.raise_for_status()
        return response.json()

    def get_metric(self, name: str, token: str | None = None) -> float | None:
        """The value of one series from /metrics, e.g. `x_total` or
        `x_total{reason="y"}`."""
        headers = {} if token is None else {"Authorization": f"Bearer {token}"}
        text = httpx.get(self.url + "/metrics", headers=headers, timeout=10).text
        for line in text.splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
        return None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def cloud_service(
    workdir: Path,
    grpc_port: int | None = None,
    db: str | None = None,
    extra: list[str] | None = None,
) -> Service:
    grpc_port = grpc_port or free_port()
    http_port = free_port()
    argv = edgewire_argv(
        "cloud",
        "--host", "127.0.0.1",
        "--grpc-port", str(grpc_port),
        "--http-port", str(http_port),
        "--db", db or f"sqlite:///{workdir}/cloud.db",
        *(extra or []),
    )  # fmt: skip
    return Service(argv, workdir / "cloud.log", http_port, grpc_port)


def edge_service(
    workdir: Path,
    mqtt_url: str,
    grpc_port: int,
    edge_id: str = "test-edge",
    extra: list[str] | None = None,
    cloud_url: str | None = None,
) -> Service:
    """An edge streaming to the cloud on 127.0.0.1:grpc_port, or to
    `cloud_url` (a grpcs:// one, say) when given."""
    http_port = free_port()
    argv = edgewire_argv(
        "edge",
        "--mqtt", mqtt_url,
        "--cloud", cloud_url or f"grpc://127.0.0.1:{grpc_port}",
        "--data-dir", str(workdir / "edge"),
        "--http-host", "127.0.0.1",
        "--http-port", str(http_port),
        "--edge-id", edge_id,
        *(extra or []),
    )  # fmt: skip
    return Service(argv, workdir / "edge.log", http_port)


def run_edgewire(
    *args: str, timeout: float = 60, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        edgewire_argv(*args),
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        env={**os.environ, **(env or {})},
        check=False,
    )


@dataclass
class SseClient:
    """Reads an SSE endpoint on a thread and keeps every event it saw."""

    url: str
    headers: dict[str, str] = field(default_factory=dict)
    events: list[dict[str, str]] = field(default_factory=list)
    connected: threading.Event = field(default_factory=threading.Event)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> "SseClient":
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()
        assert self.connected.wait(10), "SSE stream did not open"
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()

    def _read(self) -> None:
        with httpx.stream("GET", self.url, headers=self.headers, timeout=None) as response:
            response.raise_for_status()
            self.connected.set()
            for event in parse_sse(response.iter_lines()):
                self.events.append(event)
                if self._stop.is_set():
                    return

    def samples(self) -> list[dict[str, Any]]:
        return [json.loads(e["data"]) for e in list(self.events) if e.get("event") == "sample"]


class BlackHoleProxy:
    """A TCP proxy that can turn every open connection into a black hole:
    bytes stop flowing both ways but nothing is closed, like a Wi-Fi link
    that died without a word. New connections are forwarded normally."""

    def __init__(self, upstream_port: int) -> None:
        import socket

        self._upstream = upstream_port
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._server.getsockname()[1]
        self._connections: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        import socket

        while True:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self._upstream))
            state: dict[str, Any] = {"dead": False, "sockets": (client, upstream)}
            with self._lock:
                self._connections.append(state)
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b, state), daemon=True).start()

    @staticmethod
    def _pump(source: Any, target: Any, state: dict[str, Any]) -> None:
        while True:
            try:
                data = source.recv(65536)
            except OSError:
                return
            if not data:
                target.close()
                return
            if state["dead"]:
                continue  # swallowed: the peer never hears of it
            try:
                target.sendall(data)
            except OSError:
                return

    def blackhole(self) -> None:
        with self._lock:
            for state in self._connections:
                state["dead"] = True

    def close(self) -> None:
        self._server.close()
        with self._lock:
            for state in self._connections:
                for sock in state["sockets"]:
                    sock.close()


# -- Mosquitto's own command-line clients (a client we did not write) -------


def mqtt_sub(port: int, topic: str, *options: str) -> "subprocess.Popen[str]":
    """mosquitto_sub on `topic` (with e.g. "-C", "2", "-W", "60"), its
    messages one a line on stdout."""
    return subprocess.Popen(
        ["mosquitto_sub", "-h", "127.0.0.1", "-p", str(port), "-t", topic, *options],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip


def mqtt_pub(port: int, topic: str, message: str) -> None:
    """mosquitto_pub one QoS 1 message."""
    subprocess.run(
        ["mosquitto_pub", "-h", "127.0.0.1", "-p", str(port), "-q", "1", "-t", topic,
         "-m", message],
        check=True, timeout=10,
    )  # fmt: skip


def retained(port: int, topic: str, wait_s: int = 5) -> str:
    """The retained message on `topic`, or "" when none came within wait_s."""
    result = subprocess.run(
        ["mosquitto_sub", "-h", "127.0.0.1", "-p", str(port), "-t", topic,
         "-C", "1", "-W", str(wait_s)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    return result.stdout.strip()
