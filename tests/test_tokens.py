"""API tokens (issue 8) against a real cloud process: the API and feeds
refuse requests without a known token, a read token cannot send commands,
a removed token stops working without a restart, and no token is ever
written in clear, to the file or to the log."""

import json
import os
import queue
import stat
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import grpc
import httpx
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection
from websockets.sync.client import connect as ws_connect

from cloud.origins import origin_allowed, parse_origin
from edgewire.procs import edgewire_argv
from edgewire.v1 import edgewire_pb2 as pb
from tests.helpers import Service, cloud_service, eventually, run_edgewire
from tests.test_cloud import FakeEdge, s


def add_token(tokens_file: Path, name: str, scope: str) -> str:
    result = run_edgewire(
        "cloud", "add-token", name, "--scope", scope, "--tokens-file", str(tokens_file)
    )
    assert result.returncode == 0, result.stderr
    token = result.stdout.strip()
    assert len(token) >= 40, "the token, on stdout"
    assert "\n" not in token, "once, alone"
    return token


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def tokens_file(tmp_path: Path) -> Path:
    return tmp_path / "state" / "tokens.json"


@pytest.fixture
def tokens(tokens_file: Path) -> dict[str, str]:
    return {scope: add_token(tokens_file, f"{scope}-1", scope) for scope in ("read", "command")}


@pytest.fixture
def secured(tmp_path: Path, tokens_file: Path, tokens: dict[str, str]) -> Iterator[Service]:
    service = cloud_service(tmp_path, extra=["--tokens-file", str(tokens_file)]).start()
    yield service
    assert service.stop() == 0


def ws_close_code(url: str, headers: dict[str, str]) -> int | None:
    """The code the cloud closes a WebSocket with (None: it stayed open)."""
    try:
        with ws_connect(url, additional_headers=headers) as socket:
            socket.send(json.dumps({"subscribe": {"devices": None}}))
            socket.recv(timeout=10)
    except ConnectionClosed as closed:
        return closed.rcvd.code if closed.rcvd is not None else None
    return None


def test_without_a_token_the_api_and_feeds_answer_401(
    secured: Service, tokens: dict[str, str]
) -> None:
    for path in ("/api/devices", "/api/readings", "/api/stream"):
        response = httpx.get(secured.url + path, timeout=10)
        assert response.status_code == 401, path
        assert response.json() == {"error": "a token is needed"}
        wrong = httpx.get(secured.url + path, headers=bearer("not-a-token"), timeout=10)
        assert (wrong.status_code, wrong.json()) == (401, {"error": "unknown token"})
    ws_url = f"ws://127.0.0.1:{secured.http_port}/api/ws"
    assert ws_close_code(ws_url, {}) == 4401
    # A token in the URL is not taken: URLs end up in logs.
    read = tokens["read"]
    assert httpx.get(secured.url + "/api/devices?token=" + read, timeout=10).status_code == 401
    assert secured.get_metric('edgewire_cloud_http_refused_total{reason="missing"}') == 5.0
    assert secured.get_metric('edgewire_cloud_http_refused_total{reason="unknown"}') == 3.0


def test_a_read_token_reads_and_a_command_token_commands(
    secured: Service, tokens: dict[str, str]
) -> None:
    read, command = tokens["read"], tokens["command"]
    with grpc.insecure_channel(f"127.0.0.1:{secured.grpc_port}") as channel:
        edge = FakeEdge(channel)
        edge.send(pb.EdgeMessage(hello=pb.Hello(edge_id="fake-edge", software_version="t")))
        edge.batch(1, [s("a", 0), s("a", 1)])
        edge.close()
    assert [d["id"] for d in secured.get("/api/devices", token=read)] == ["a"]
    assert len(secured.get("/api/readings", token=read, device="a")) == 2
    with httpx.stream(
        "GET", secured.url + "/api/stream", headers={**bearer(read), "Last-Event-ID": "0"}
    ) as stream:
        assert stream.status_code == 200
        assert _a_sample_arrives(stream)

    cmd_url = secured.url + "/api/devices/a/cmd"
    refused = httpx.post(cmd_url, json={"reboot": True}, headers=bearer(read), timeout=10)
    assert (refused.status_code, refused.json()) == (
        403,
        {"error": "this token may not send commands"},
    )
    queued = httpx.post(cmd_url, json={"reboot": True}, headers=bearer(command), timeout=10)
    assert queued.status_code == 202, queued.text
    assert secured.get_metric('edgewire_cloud_http_refused_total{reason="scope"}') == 1.0

    # The WebSocket feed: a read token subscribes, but its command is
    # answered with an error and the socket stays open.
    ws_url = f"ws://127.0.0.1:{secured.http_port}/api/ws"
    with ws_connect(ws_url, additional_headers=bearer(read)) as socket:
        socket.send(json.dumps({"cmd": {"reboot": True}, "device": "a"}))
        assert "may not send commands" in json.loads(socket.recv(timeout=10))["error"]
        socket.send(json.dumps({"subscribe": {"devices": ["a"], "after": 0}}))
        assert "subscribed" in json.loads(socket.recv(timeout=10))
        assert len(json.loads(socket.recv(timeout=10))["samples"]) == 2
    with ws_connect(ws_url, additional_headers=bearer(command)) as socket:
        socket.send(json.dumps({"cmd": {"reboot": True}, "device": "a"}))
        assert "queued" in json.loads(socket.recv(timeout=10))


def _a_sample_arrives(stream: httpx.Response) -> bool:
    return any(line == "event: sample" for line in stream.iter_lines())


def test_a_removed_token_stops_working_without_a_restart(
    secured: Service, tokens_file: Path, tokens: dict[str, str]
) -> None:
    assert secured.get("/api/devices", token=tokens["read"]) == []
    listed = run_edgewire("cloud", "list-tokens", "--tokens-file", str(tokens_file))
    assert listed.stdout.split() == ["read-1", "read", "command-1", "command"]
    removed = run_edgewire("cloud", "remove-token", "read-1", "--tokens-file", str(tokens_file))
    assert removed.returncode == 0, removed.stderr
    response = httpx.get(secured.url + "/api/devices", headers=bearer(tokens["read"]), timeout=10)
    assert response.status_code == 401
    # One added now works at once too.
    fresh = add_token(tokens_file, "late", "read")
    assert secured.get("/api/devices", token=fresh) == []
    again = run_edgewire("cloud", "remove-token", "read-1", "--tokens-file", str(tokens_file))
    assert again.returncode == 1
    assert "no token named 'read-1'" in again.stderr


def test_healthz_is_open_and_metrics_open_unless_asked(
    tmp_path: Path, secured: Service, tokens_file: Path, tokens: dict[str, str]
) -> None:
    assert httpx.get(secured.url + "/healthz", timeout=10).status_code == 200
    assert httpx.get(secured.url + "/metrics", timeout=10).status_code == 200
    strict = cloud_service(
        tmp_path / "strict",
        extra=["--tokens-file", str(tokens_file), "--metrics-token-required", "true"],
    )
    (tmp_path / "strict").mkdir()
    strict.start()
    try:
        assert httpx.get(strict.url + "/metrics", timeout=10).status_code == 401
        assert strict.get_metric("edgewire_cloud_http_refused_total", tokens["read"]) is None
        assert (
            strict.get_metric('edgewire_cloud_http_refused_total{reason="missing"}', tokens["read"])
            == 1.0
        )
        assert httpx.get(strict.url + "/healthz", timeout=10).status_code == 200
    finally:
        assert strict.stop() == 0


def test_the_dashboard_login_sets_an_httponly_cookie(
    secured: Service, tokens: dict[str, str]
) -> None:
    assert httpx.get(secured.url + "/", timeout=10).status_code == 200, "the page holds no data"
    bad = httpx.post(secured.url + "/api/login", json={"token": "nope"}, timeout=10)
    assert bad.status_code == 401
    with httpx.Client(base_url=secured.url, timeout=10) as browser:
        login = browser.post("/api/login", data={"token": tokens["read"]})
        assert login.json() == {"name": "read-1", "scope": "read"}
        cookie = login.headers["set-cookie"]
        assert "HttpOnly" in cookie
        assert "SameSite=strict" in cookie
        assert "Secure" not in cookie, "plain http here"
        assert browser.get("/api/devices").status_code == 200
        browser.post("/api/logout")
        assert browser.get("/api/devices").status_code == 401


def test_no_token_in_clear_in_the_file_or_the_log(
    secured: Service, tokens_file: Path, tokens: dict[str, str]
) -> None:
    for token in tokens.values():
        secured.get("/api/devices", token=token)
    httpx.post(secured.url + "/api/login", json={"token": tokens["command"]}, timeout=10)
    assert stat.S_IMODE(tokens_file.stat().st_mode) == 0o600
    stored = tokens_file.read_text()
    secured.stop()
    log = secured.log()
    assert "tokens file read" in log
    assert "the HTTP API is unauthenticated" not in log
    for token in tokens.values():
        assert token not in stored
        assert token not in log
    secured.start()  # for the fixture's own stop


def test_an_open_cloud_warns_once_that_its_api_is_unauthenticated(cloud: Service) -> None:
    assert cloud.get("/api/devices") == []
    eventually(lambda: cloud.log().count("the HTTP API is unauthenticated") == 1)


def test_add_token_help() -> None:
    result = run_edgewire("cloud", "add-token", "--help")
    assert result.returncode == 0, result.stderr
    for word in ("NAME", "--scope", "read", "command", "--tokens-file", "shown this once"):
        assert word in result.stdout


# -- Open feeds of a removed token (issue 8) -----------------------------------


class SseWatch:
    """An SSE stream read on a thread, to see when (and how) the cloud ends it."""

    def __init__(self, url: str, token: str) -> None:
        self.url = url
        self.headers = bearer(token)
        self.opened = threading.Event()
        self.ended = threading.Event()
        self.error: Exception | None = None
        threading.Thread(target=self._read, daemon=True).start()
        assert self.opened.wait(10), "the SSE stream did not open"

    def _read(self) -> None:
        try:
            with httpx.stream("GET", self.url, headers=self.headers, timeout=60) as response:
                assert response.status_code == 200
                self.opened.set()
                for _ in response.iter_lines():
                    pass
        except Exception as exc:  # noqa: BLE001  # seen by the test
            self.error = exc
        finally:
            self.ended.set()


def closed_within(socket: ClientConnection, seconds: float) -> tuple[int, str]:
    """The (code, reason) the cloud closes an open WebSocket with; fails if it
    is still open after `seconds`, whatever it sends meanwhile."""
    deadline = time.monotonic() + seconds
    try:
        while time.monotonic() < deadline:
            socket.recv(timeout=max(0.01, deadline - time.monotonic()))
    except TimeoutError:
        pass
    except ConnectionClosed as closed:
        if closed.rcvd is None:
            raise AssertionError("the connection was cut without a close frame") from None
        return closed.rcvd.code, closed.rcvd.reason
    raise AssertionError(f"the WebSocket was still open after {seconds} s")


def subscribed(socket: ClientConnection) -> None:
    socket.send(json.dumps({"subscribe": {"devices": None}}))
    assert "subscribed" in json.loads(socket.recv(timeout=10))


def test_open_feeds_end_soon_after_their_token_is_removed_or_narrowed(
    secured: Service, tokens_file: Path, tokens: dict[str, str]
) -> None:
    read, command = tokens["read"], tokens["command"]
    ws_url = f"ws://127.0.0.1:{secured.http_port}/api/ws"
    sse = SseWatch(secured.url + "/api/stream", read)
    with (
        ws_connect(ws_url, additional_headers=bearer(read)) as read_socket,
        ws_connect(ws_url, additional_headers=bearer(command)) as command_socket,
    ):
        subscribed(read_socket)
        subscribed(command_socket)
        eventually(lambda: secured.get_metric("edgewire_cloud_subscribers") == 3.0)
        removed = run_edgewire("cloud", "remove-token", "read-1", "--tokens-file", str(tokens_file))
        assert removed.returncode == 0, removed.stderr
        started = time.monotonic()
        assert closed_within(read_socket, 5) == (4401, "token revoked")
        assert sse.ended.wait(5), "the SSE stream of the removed token is still open"
        assert sse.error is None, f"ended cleanly, not cut: {sse.error!r}"
        assert time.monotonic() - started < 5
        # The other token's feed goes on.
        command_socket.send(json.dumps({"unsubscribe": True}))
        assert json.loads(command_socket.recv(timeout=10)) == {"unsubscribed": True}
        assert secured.get_metric('edgewire_cloud_http_refused_total{reason="revoked"}') == 2.0

        # The same token, narrowed to read by hand: its socket was let send
        # commands when it opened, so it is closed too (it may reconnect).
        body = json.loads(tokens_file.read_text())
        for entry in body["tokens"]:
            entry["scope"] = "read"
        narrowed = tokens_file.with_name("narrowed.json")
        narrowed.write_text(json.dumps(body))
        os.replace(narrowed, tokens_file)
        code, reason = closed_within(command_socket, 5)
        assert (code, "no longer send commands" in reason) == (4403, True)
    assert secured.get_metric('edgewire_cloud_http_refused_total{reason="revoked"}') == 3.0
    # The narrowed token still reads.
    assert secured.get("/api/devices", token=command) == []
    eventually(lambda: secured.get_metric("edgewire_cloud_subscribers") == 0.0)
    log = secured.log()
    assert "open feeds ended" in log
    assert "read-1" in log, "the token's name says whose feeds ended"
    assert read not in log
    assert command not in log


# -- WebSocket upgrades and POSTs from other sites' pages -----------------------


def ws_with_origin(service: Service, origin: str, token: str | None = None) -> int | None:
    headers = {"Origin": origin, **(bearer(token) if token else {})}
    return ws_close_code(f"ws://127.0.0.1:{service.http_port}/api/ws", headers)


def test_a_page_of_another_origin_may_not_open_the_websocket_or_send_commands(
    tmp_path: Path, tokens_file: Path, tokens: dict[str, str]
) -> None:
    config = tmp_path / "cloud.toml"
    config.write_text('allowed_origins = ["https://dash.example.org"]\n')
    cloud = cloud_service(
        tmp_path, extra=["--config", str(config), "--tokens-file", str(tokens_file)]
    ).start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{cloud.grpc_port}") as channel:
            edge = FakeEdge(channel)
            edge.send(pb.EdgeMessage(hello=pb.Hello(edge_id="fake-edge", software_version="t")))
            edge.batch(1, [s("a", 0)])
            edge.close()
        read = tokens["read"]
        own = f"http://127.0.0.1:{cloud.http_port}"
        assert ws_with_origin(cloud, "https://evil.example", read) == 4403
        assert ws_with_origin(cloud, "null", read) == 4403
        assert ws_with_origin(cloud, f"http://localhost:{cloud.http_port}", read) == 4403
        assert ws_with_origin(cloud, own, read) is None, "the cloud's own page"
        assert ws_with_origin(cloud, "https://dash.example.org", read) is None, "allowed_origins"
        assert ws_close_code(f"ws://127.0.0.1:{cloud.http_port}/api/ws", bearer(read)) is None

        # The dashboard's cookie, sent by a page of another origin.
        with httpx.Client(base_url=cloud.url, timeout=10) as browser:
            assert browser.post("/api/login", json={"token": tokens["command"]}).status_code == 200
            forged = browser.post(
                "/api/devices/a/cmd",
                json={"reboot": True},
                headers={"Origin": "https://evil.example"},
            )
            assert (forged.status_code, forged.json()) == (
                403,
                {"error": "this page's origin may not use the API"},
            )
            assert cloud.get("/api/devices/a/cmd", token=read) == [], "nothing queued"
            mine = browser.post(
                "/api/devices/a/cmd", json={"reboot": True}, headers={"Origin": own}
            )
            assert mine.status_code == 202, mine.text
        # Login too (login CSRF: the victim's browser logged in as the attacker).
        login = httpx.post(
            cloud.url + "/api/login",
            json={"token": read},
            headers={"Origin": "https://evil.example"},
            timeout=10,
        )
        assert login.status_code == 403
        assert cloud.get_metric('edgewire_cloud_http_refused_total{reason="origin"}') == 5.0
    finally:
        assert cloud.stop() == 0
    assert cloud.log().count("refused a request from another origin") == 3, "once per origin"


def test_an_open_cloud_refuses_other_origins_too(cloud: Service) -> None:
    # Without tokens any program may command the boards, but a page the
    # operator happens to visit must not, through the operator's browser.
    assert ws_with_origin(cloud, "https://evil.example") == 4403
    assert ws_with_origin(cloud, f"http://127.0.0.1:{cloud.http_port}") is None
    forged = httpx.post(
        cloud.url + "/api/devices/a/cmd",
        content=b'{"reboot": true}',
        headers={"Origin": "https://evil.example", "Content-Type": "text/plain"},
        timeout=10,
    )
    assert forged.status_code == 403
    unknown = httpx.post(cloud.url + "/api/devices/a/cmd", json={"reboot": True}, timeout=10)
    assert unknown.status_code == 404, "no Origin: a program, judged as before"


@pytest.mark.parametrize(
    ("origin", "host", "allowed"),
    [
        ("http://127.0.0.1:8080", "127.0.0.1:8080", True),
        ("http://127.0.0.1:8081", "127.0.0.1:8080", False),  # another port: same site, not ours
        ("https://Cloud.Example.org", "cloud.example.org", True),  # the default port, any case
        ("https://cloud.example.org:8443", "cloud.example.org", False),
        ("https://app.example.org", "cloud.example.org", False),  # a sibling subdomain
        ("http://[::1]:8080", "[::1]:8080", True),
        ("https://dash.example.org", "cloud.example.org", True),  # listed
        ("https://dash.example.org:444", "cloud.example.org", False),
        ("null", "cloud.example.org", False),  # a sandboxed frame, a file
        ("http://cloud:x", "cloud", False),
        ("http://cloud", None, False),
    ],
)
def test_origin_rules(origin: str, host: str | None, allowed: bool) -> None:
    listed = frozenset([parse_origin("https://dash.example.org")])
    assert origin_allowed(origin, host, listed) is allowed


def test_allowed_origins_must_be_origins(tmp_path: Path) -> None:
    config = tmp_path / "cloud.toml"
    config.write_text('allowed_origins = ["https://dash.example.org/page"]\n')
    result = run_edgewire("cloud", "--config", str(config), "--http-port", "0")
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1
    assert "allowed_origins" in result.stderr
    assert "no path" in result.stderr


# -- edgewire tail --token -------------------------------------------------------


def _lines_to(stream: IO[str], lines: "queue.Queue[str]") -> None:
    for line in stream:
        lines.put(line)


def tail_env(token: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "EDGEWIRE_TOKEN"}
    return env if token is None else {**env, "EDGEWIRE_TOKEN": token}


def test_tail_with_a_read_token_prints_live_samples_until_the_token_is_removed(
    tmp_path: Path, secured: Service, tokens_file: Path, tokens: dict[str, str]
) -> None:
    read = tokens["read"]
    errors = tmp_path / "tail.stderr"
    lines: queue.Queue[str] = queue.Queue()
    with (
        errors.open("w") as stderr,
        subprocess.Popen(
            edgewire_argv("tail", "--cloud", secured.url),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            env=tail_env(read),
        ) as tail,
    ):
        assert tail.stdout is not None
        threading.Thread(target=_lines_to, args=(tail.stdout, lines), daemon=True).start()
        try:
            eventually(lambda: secured.get_metric("edgewire_cloud_subscribers") == 1.0)
            with grpc.insecure_channel(f"127.0.0.1:{secured.grpc_port}") as channel:
                edge = FakeEdge(channel)
                edge.send(pb.EdgeMessage(hello=pb.Hello(edge_id="fake-edge", software_version="t")))
                edge.batch(1, [s("kitchen", 0, temp_c=21.5), s("kitchen", 1, temp_c=21.75)])
                edge.close()
            first, second = lines.get(timeout=10), lines.get(timeout=10)
            assert "kitchen boot 1 seq 0  temp_c=21.5" in first
            assert "kitchen boot 1 seq 1  temp_c=21.75" in second

            removed = run_edgewire(
                "cloud", "remove-token", "read-1", "--tokens-file", str(tokens_file)
            )
            assert removed.returncode == 0, removed.stderr
            assert tail.wait(timeout=15) == 1, "tail stops once its token is removed"
        finally:
            if tail.poll() is None:
                tail.kill()
    said = errors.read_text()
    assert "refused the token (unknown token)" in said
    assert "removed" in said
    assert read not in said
    assert read not in secured.log()


def test_tail_without_or_with_a_wrong_token_exits_with_a_clear_message(
    secured: Service,
) -> None:
    argv = edgewire_argv("tail", "--cloud", secured.url, "--device", "kitchen")

    def run(token: str | None, *extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*argv, *extra],
            capture_output=True,
            text=True,
            timeout=60,
            stdin=subprocess.DEVNULL,
            env=tail_env(token),
            check=False,
        )

    missing = run(None)
    assert missing.returncode == 1
    assert missing.stderr.count("\n") == 1, missing.stderr
    assert "needs an API token: set EDGEWIRE_TOKEN, or pass --token" in missing.stderr
    wrong = "wrong-" + "x" * 40
    for refused in (run(wrong), run(None, "--token", wrong)):
        assert refused.returncode == 1
        assert "refused the token (unknown token)" in refused.stderr
        assert wrong not in refused.stderr + refused.stdout
    assert secured.get_metric('edgewire_cloud_http_refused_total{reason="unknown"}') == 2.0

    shown = run_edgewire("tail", "--help", env={"EDGEWIRE_TOKEN": wrong})
    assert shown.returncode == 0
    assert "EDGEWIRE_TOKEN" in shown.stdout
    assert wrong not in shown.stdout
