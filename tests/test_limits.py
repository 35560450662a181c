"""Size and count limits at the cloud's doors (issue 8), against a real cloud
process: connections per client address on the HTTP port, gRPC Subscribe
streams per address, devices in one subscription, request bodies, WebSocket
frames and gRPC messages. Each is refused with a clear error and leaves the
cloud serving; all but the gRPC message size (refused inside gRPC's core) are
counted in edgewire_cloud_limit_refused_total{limit}."""

import json
import socket
import time
from collections.abc import Iterator

import grpc
import httpx
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect as ws_connect

from edgewire.connection_limit import AddressLedger
from edgewire.v1 import edgewire_pb2 as pb
from edgewire.v1 import edgewire_pb2_grpc as pb_grpc
from tests.helpers import Service, cloud_service, eventually

MOST = 3


def refused(cloud: Service, limit: str) -> float:
    return cloud.get_metric(f'edgewire_cloud_limit_refused_total{{limit="{limit}"}}') or 0.0


@pytest.fixture(scope="module")
def cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    workdir = tmp_path_factory.mktemp("limits")
    service = cloud_service(
        workdir,
        extra=[
            "--http-connections-per-ip", str(MOST),
            "--grpc-subscriptions-per-ip", "2",
        ],
    ).start()  # fmt: skip
    yield service
    assert service.stop() == 0


def wait_until_released(cloud: Service) -> None:
    """Connections closed by a test are released once the cloud sees them go."""
    eventually(lambda: httpx.get(cloud.url + "/api/devices", timeout=10).status_code == 200)


def test_the_ledger_admits_most_per_address_and_releases_once() -> None:
    ledger = AddressLedger(2)
    a, b, c, d = object(), object(), object(), object()
    assert ledger.admit(a, "10.0.0.1")
    assert ledger.admit(b, "10.0.0.1")
    assert not ledger.admit(c, "10.0.0.1"), "a third from the same address"
    assert ledger.admit(d, "10.0.0.2"), "another address has its own allowance"
    ledger.release(a)
    ledger.release(a)  # twice: counted once
    ledger.release(c)  # never admitted: nothing to give back
    assert ledger.open_from("10.0.0.1") == 1
    assert ledger.admit(c, "10.0.0.1")
    unlimited = AddressLedger(0)
    assert all(unlimited.admit(object(), "10.0.0.1") for _ in range(1000))


def test_an_address_over_its_connections_gets_429_then_its_allowance_back(
    cloud: Service,
) -> None:
    before = refused(cloud, "http_connections_per_ip")
    # Idle connections that never send a request hold their slot: the
    # slowloris case the limit is for.
    idle = [socket.create_connection(("127.0.0.1", cloud.http_port)) for _ in range(MOST)]
    try:
        time.sleep(0.2)  # accepted by the server
        response = httpx.get(cloud.url + "/api/devices", timeout=10)
        assert response.status_code == 429
        assert response.json() == {
            "error": f"too many connections from this address (at most {MOST})"
        }
        assert response.headers["connection"] == "close"
        with pytest.raises(InvalidStatus) as upgrade:
            ws_connect(f"ws://127.0.0.1:{cloud.http_port}/api/ws", open_timeout=10)
        assert upgrade.value.response.status_code == 429, "refused before any handshake"
    finally:
        for sock in idle:
            sock.close()
    wait_until_released(cloud)
    assert refused(cloud, "http_connections_per_ip") == before + 2


def test_open_feeds_count_against_the_address_and_websocket_release_their_slot(
    cloud: Service,
) -> None:
    stream = cloud.url + "/api/stream"
    with (
        httpx.Client(timeout=10) as sse,
        httpx.Client(timeout=10) as sse2,
        sse.stream("GET", stream),
        sse2.stream("GET", stream),
    ):
        with ws_connect(f"ws://127.0.0.1:{cloud.http_port}/api/ws") as feed:
            feed.send(json.dumps({"subscribe": {"devices": None}}))
            assert "subscribed" in json.loads(feed.recv(timeout=10))
            assert httpx.get(cloud.url + "/healthz", timeout=10).status_code == 429
        # The WebSocket's slot comes back when it closes (uvicorn hands the
        # connection to another protocol object at the upgrade).
        eventually(lambda: httpx.get(cloud.url + "/healthz", timeout=10).status_code == 200)
    wait_until_released(cloud)


def test_grpc_subscriptions_per_address_are_limited(cloud: Service) -> None:
    before = refused(cloud, "grpc_subscriptions_per_ip")
    with grpc.insecure_channel(f"127.0.0.1:{cloud.grpc_port}") as channel:
        stub = pb_grpc.TelemetryStub(channel)  # type: ignore[no-untyped-call]
        held = [stub.Subscribe(pb.SubscribeRequest()) for _ in range(2)]
        eventually(lambda: cloud.get_metric("edgewire_cloud_subscribers") == 2.0)
        third = stub.Subscribe(pb.SubscribeRequest())
        with pytest.raises(grpc.RpcError) as error:
            next(third)
        assert error.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert error.value.details() == "too many subscriptions from this address (at most 2)"
        assert refused(cloud, "grpc_subscriptions_per_ip") == before + 1
        held[0].cancel()
        eventually(lambda: cloud.get_metric("edgewire_cloud_subscribers") == 1.0)
        again = stub.Subscribe(pb.SubscribeRequest())
        eventually(lambda: cloud.get_metric("edgewire_cloud_subscribers") == 2.0)
        again.cancel()
        held[1].cancel()

        too_wide = stub.Subscribe(pb.SubscribeRequest(devices=[f"d{i}" for i in range(101)]))
        with pytest.raises(grpc.RpcError) as error:
            next(too_wide)
        assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert error.value.details() == "at most 100 devices in one subscription"


def test_a_body_over_the_limit_is_413_and_counted(cloud: Service) -> None:
    before = refused(cloud, "http_body")
    response = httpx.post(
        cloud.url + "/api/devices/board-1/cmd", content=b"{" + b" " * 5000 + b"}", timeout=10
    )
    assert response.status_code == 413
    assert response.json() == {"error": "body over 4096 bytes"}
    assert refused(cloud, "http_body") == before + 1


def test_a_websocket_frame_over_the_limit_closes_that_socket_only(cloud: Service) -> None:
    before = refused(cloud, "ws_frame")
    url = f"ws://127.0.0.1:{cloud.http_port}/api/ws"
    with ws_connect(url) as other, ws_connect(url, max_size=None) as big:
        big.send("x" * (64 * 1024 + 1))
        with pytest.raises(ConnectionClosed) as closed:
            big.recv(timeout=10)
        assert closed.value.rcvd is not None
        assert closed.value.rcvd.code == 1009
        other.send(json.dumps({"subscribe": {"devices": ["board-1"]}}))
        assert "subscribed" in json.loads(other.recv(timeout=10))
    eventually(lambda: refused(cloud, "ws_frame") == before + 1)


def test_a_grpc_message_over_the_limit_is_refused(cloud: Service) -> None:
    # Refused by gRPC's core before our handler sees the stream end, which it
    # cannot tell from a clean one: this limit is not in our counter.
    huge = pb.EdgeMessage(hello=pb.Hello(edge_id="e", software_version="x" * (16 * 1024 * 1024)))
    with grpc.insecure_channel(
        f"127.0.0.1:{cloud.grpc_port}", options=[("grpc.max_send_message_length", -1)]
    ) as channel:
        stub = pb_grpc.TelemetryStub(channel)  # type: ignore[no-untyped-call]
        call = stub.Ingest(iter([huge]))
        with pytest.raises(grpc.RpcError) as error:
            next(call)
        assert error.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "larger than max" in (error.value.details() or "")
    assert httpx.get(cloud.url + "/healthz", timeout=10).status_code == 200
