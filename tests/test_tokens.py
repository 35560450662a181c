"""API tokens (issue 8) against a real cloud process: the API and feeds
refuse requests without a known token, a read token cannot send commands,
a removed token stops working without a restart, and no token is ever
written in clear, to the file or to the log."""

import json
import stat
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect as ws_connect

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
