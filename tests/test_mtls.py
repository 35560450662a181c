"""gRPC between edge and cloud over mutual TLS, with real processes: a CA
made with edgewire.ca, a cloud that wants client certificates and checks
them against the CA's revocation list, edges with good, missing, foreign,
expired, revoked and misnamed certificates, and a table of the boards each
edge owns. A refused edge keeps running and trying; its samples stay in its
buffer."""

import asyncio
import json
import socket
import ssl
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest

from cloud.edge_trust import Admitted, EdgeGate, Refusal
from edgewire.ca import CaPaths, IssuedPaths, init_ca, issue, revoke
from edgewire.mosquitto import PrivateMosquitto
from tests.helpers import Service, cloud_service, edge_service, eventually, mqtt_pub, run_edgewire

WAIT_S = 20.0
# Every edge of these tests: listed in the cloud's edge_devices (so each is
# refused for the reason its test is about, not for being unlisted).
OWNED = {
    "edge-a": ["kitchen-*"],
    "edge-b": ["*"],
    "edge-c": ["*"],
    "edge-d": ["*"],
    "edge-e": ["*"],
    "edge-f": ["*"],
}


@dataclass(frozen=True)
class Pki:
    ca: CaPaths
    server: IssuedPaths
    edges: dict[str, IssuedPaths]  # by certificate name
    stranger: IssuedPaths  # "edge-c", issued by another CA


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    folder = tmp_path_factory.mktemp("pki")
    ca = init_ca(folder / "ca")
    yesterday = datetime.now(UTC) - timedelta(days=1)
    edges = {name: issue(ca.folder, name, "client") for name in ("edge-a", "edge-d", "edge-f")}
    edges["edge-e"] = issue(ca.folder, "edge-e", "client", not_after=yesterday)
    edges["edge-z"] = issue(ca.folder, "edge-z", "client")  # not in edge_devices
    other = init_ca(folder / "other", name="someone else's CA")
    return Pki(
        ca=ca,
        # The exact hosts the edges dial: verification is never switched off.
        server=issue(ca.folder, "cloud", "server", hosts=["127.0.0.1", "localhost"]),
        edges=edges,
        stranger=issue(other.folder, "edge-c", "client"),
    )


@pytest.fixture(scope="module")
def cloud(tmp_path_factory: pytest.TempPathFactory, pki: Pki) -> Iterator[Service]:
    workdir = tmp_path_factory.mktemp("cloud")
    config = workdir / "cloud.toml"
    lines = [
        f"tls_cert = {json.dumps(str(pki.server.cert))}",
        f"tls_key = {json.dumps(str(pki.server.key))}",
        f"tls_client_ca = {json.dumps(str(pki.ca.cert))}",
        # The CA's own file: `revoke` rewrites it and the cloud notices.
        f"tls_crl = {json.dumps(str(pki.ca.crl))}",
        "[edge_devices]",
        *(f"{edge} = {json.dumps(patterns)}" for edge, patterns in OWNED.items()),
    ]
    config.write_text("\n".join(lines) + "\n")
    service = cloud_service(workdir, extra=["--config", str(config)]).start()
    yield service
    assert service.stop() == 0
    assert_no_key_material(service.log(), pki)


@pytest.fixture
def edges(pki: Pki) -> Iterator[list[Service]]:
    """Edges a test started: each must still run, stop cleanly, and have
    logged no key."""
    started: list[Service] = []
    yield started
    for edge in started:
        assert edge.process is not None
        assert edge.process.poll() is None, "a refused edge keeps running"
        assert edge.stop() == 0
        assert_no_key_material(edge.log(), pki)


def start_edge(
    edges: list[Service],
    workdir: Path,
    mosquitto: PrivateMosquitto,
    cloud: Service,
    pki: Pki,
    edge_id: str,
    cert: IssuedPaths | None,
    host: str = "127.0.0.1",
) -> Service:
    tls = ["--cloud-ca", str(pki.ca.cert)]
    if cert is not None:
        tls += ["--cloud-cert", str(cert.cert), "--cloud-key", str(cert.key)]
    edge = edge_service(
        workdir,
        mosquitto.url,
        cloud.grpc_port,
        edge_id=edge_id,
        cloud_url=f"grpcs://{host}:{cloud.grpc_port}",
        extra=[*tls, "--reconnect-max-s", "1", "--unhealthy-after-s", "2"],
    )
    edges.append(edge)
    # Not waiting for a healthy edge: a refused one turns unhealthy soon.
    edge.start(healthy=False)
    eventually(lambda: health(edge)[1].get("mqtt") == "connected", WAIT_S)
    return edge


def health(service: Service) -> tuple[int, dict[str, Any]]:
    response = httpx.get(service.url + "/healthz", timeout=10)
    return response.status_code, response.json()


def publish_sample(mosquitto: PrivateMosquitto, device: str, seq: int) -> None:
    sample = {"seq": seq, "boot": 1, "ts": time.time(), "m": {"temp_c": 20.0 + seq}}
    mqtt_pub(mosquitto.port, f"edgewire/{device}/telemetry", json.dumps(sample))


def stored_seqs(cloud: Service, device: str) -> list[int]:
    return [row["seq"] for row in cloud.get("/api/readings", device=device)]


def metric(service: Service, name: str) -> float:
    return service.get_metric(name) or 0.0


def assert_no_key_material(log: str, pki: Pki) -> None:
    assert "PRIVATE KEY" not in log
    keys = [pki.server.key, pki.stranger.key, *(paths.key for paths in pki.edges.values())]
    for key in keys:
        body = [line for line in key.read_text().splitlines() if not line.startswith("-----")]
        assert not any(line in log for line in body), f"{key.name} is in a log"


# -- admitted --------------------------------------------------------------------


def test_an_edge_with_its_certificate_streams_the_boards_it_owns(
    tmp_path: Path, mosquitto: PrivateMosquitto, cloud: Service, pki: Pki, edges: list[Service]
) -> None:
    # localhost: the server certificate's DNS name (the others dial its IP address).
    cert = pki.edges["edge-a"]
    edge = start_edge(edges, tmp_path, mosquitto, cloud, pki, "edge-a", cert, host="localhost")
    eventually(lambda: metric(edge, "edgewire_edge_uplink_connected") == 1, WAIT_S)
    foreign = 'edgewire_cloud_foreign_device_total{edge="edge-a"}'
    foreign_before = metric(cloud, foreign)
    mqtt_pub(mosquitto.port, "edgewire/kitchen-1/status", "online")
    mqtt_pub(mosquitto.port, "edgewire/garage-1/status", "online")
    publish_sample(mosquitto, "kitchen-1", 1)
    publish_sample(mosquitto, "garage-1", 1)
    publish_sample(mosquitto, "kitchen-1", 2)

    eventually(lambda: stored_seqs(cloud, "kitchen-1") == [1, 2], WAIT_S)
    # The foreign sample is acknowledged as refused: the edge's buffer
    # drains instead of sending it forever.
    eventually(lambda: metric(edge, "edgewire_edge_samples_delivered_total") == 3, WAIT_S)
    eventually(lambda: metric(edge, "edgewire_edge_buffer_records") == 0, WAIT_S)
    eventually(lambda: metric(cloud, foreign) - foreign_before == 2, WAIT_S)  # sample, status
    assert stored_seqs(cloud, "garage-1") == []
    devices = {device["id"] for device in cloud.get("/api/devices")}
    assert "kitchen-1" in devices
    assert "garage-1" not in devices
    assert "of boards this edge does not own refused" in cloud.log()
    assert metric(edge, "edgewire_edge_uplink_connected") == 1, "the edge kept its stream"
    assert health(edge)[0] == 200


# -- refused in the TLS handshake (gRPC's own check) ----------------------------


@pytest.mark.parametrize(
    ("edge_id", "certificate", "cloud_says"),
    [
        ("edge-b", None, "PEER_DID_NOT_RETURN_A_CERTIFICATE"),
        ("edge-c", "stranger", "unable to get local issuer certificate"),
        ("edge-e", "edge-e", "certificate has expired"),
    ],
    ids=["no-certificate", "another-ca", "expired"],
)
def test_an_edge_the_handshake_refuses_keeps_its_samples_and_trying(
    tmp_path: Path,
    mosquitto: PrivateMosquitto,
    cloud: Service,
    pki: Pki,
    edges: list[Service],
    edge_id: str,
    certificate: str | None,
    cloud_says: str,
) -> None:
    cert = pki.stranger if certificate == "stranger" else pki.edges.get(certificate or "")
    edge = start_edge(edges, tmp_path, mosquitto, cloud, pki, edge_id, cert)
    device = f"bench-{edge_id}"
    publish_sample(mosquitto, device, 1)
    eventually(lambda: metric(edge, "edgewire_edge_buffer_records") == 1, WAIT_S)
    attempts = metric(edge, "edgewire_edge_uplink_reconnects_total")
    eventually(lambda: metric(edge, "edgewire_edge_uplink_reconnects_total") >= attempts + 2)

    assert stored_seqs(cloud, device) == []
    assert metric(edge, "edgewire_edge_buffer_records") == 1, "kept for when it is let in"
    assert metric(edge, "edgewire_edge_uplink_connected") == 0
    assert "the cloud closed the connection during TLS" in edge.log()
    # gRPC refuses these before any of our code runs; its log line says why.
    assert cloud_says in cloud.log()
    _, detail = eventually(lambda: (h := health(edge))[0] == 503 and h, WAIT_S)
    assert detail["status"] == "cloud unreachable"


# -- refused by the cloud after the handshake -----------------------------------


@pytest.mark.parametrize(
    ("edge_id", "certificate", "reason", "status", "says"),
    [
        (
            "edge-a",
            "edge-f",
            "edge_id_mismatch",
            "permission_denied",
            "edge id 'edge-a' is not the name on its certificate ('edge-f')",
        ),
        (
            "edge-z",
            "edge-z",
            "unlisted_edge",
            "permission_denied",
            "edge 'edge-z' is not listed in the cloud's edge_devices",
        ),
    ],
    ids=["edge-id-is-not-its-name", "unlisted"],
)
def test_an_edge_the_cloud_refuses_is_told_why(
    tmp_path: Path,
    mosquitto: PrivateMosquitto,
    cloud: Service,
    pki: Pki,
    edges: list[Service],
    edge_id: str,
    certificate: str,
    reason: str,
    status: str,
    says: str,
) -> None:
    refused = f'edgewire_cloud_edges_refused_total{{reason="{reason}"}}'
    before = metric(cloud, refused)
    edge = start_edge(edges, tmp_path, mosquitto, cloud, pki, edge_id, pki.edges[certificate])
    publish_sample(mosquitto, "kitchen-9", 1)
    eventually(lambda: metric(edge, "edgewire_edge_buffer_records") == 1, WAIT_S)
    told = f'edgewire_edge_uplink_refused_total{{status="{status}"}}'
    now_told = metric(edge, told)
    eventually(lambda: metric(edge, told) >= now_told + 2, WAIT_S)  # it keeps trying

    assert metric(cloud, refused) - before >= 2
    assert "the cloud refused this edge" in edge.log()
    assert says in edge.log()
    assert stored_seqs(cloud, "kitchen-9") == []
    assert metric(edge, "edgewire_edge_buffer_records") == 1, "kept for when it is let in"
    eventually(lambda: health(edge)[0] == 503, WAIT_S)


def test_revoking_an_edge_cuts_its_open_stream_and_keeps_it_out(
    tmp_path: Path, mosquitto: PrivateMosquitto, cloud: Service, pki: Pki, edges: list[Service]
) -> None:
    edge = start_edge(edges, tmp_path, mosquitto, cloud, pki, "edge-d", pki.edges["edge-d"])
    publish_sample(mosquitto, "bench-d", 1)
    eventually(lambda: stored_seqs(cloud, "bench-d") == [1], WAIT_S)
    refused = 'edgewire_cloud_edges_refused_total{reason="revoked"}'
    before = metric(cloud, refused)

    revoke(pki.ca.folder, "edge-d")  # a new ca.crl, which the cloud reads again
    # The open stream is cut at its next message (figures every 5 s).
    eventually(lambda: metric(cloud, refused) > before, WAIT_S)
    eventually(lambda: metric(edge, "edgewire_edge_uplink_connected") == 0, WAIT_S)
    publish_sample(mosquitto, "bench-d", 2)
    eventually(lambda: metric(edge, "edgewire_edge_buffer_records") == 1, WAIT_S)
    now_refused = metric(cloud, refused)
    eventually(lambda: metric(cloud, refused) > now_refused, WAIT_S)  # a new stream: refused too

    told = 'edgewire_edge_uplink_refused_total{status="unauthenticated"}'
    eventually(lambda: metric(edge, told) >= 2, WAIT_S)
    assert stored_seqs(cloud, "bench-d") == [1]
    assert metric(edge, "edgewire_edge_buffer_records") == 1
    assert "client certificate refused: revoked" in edge.log()


# -- the gate's reasons, without the handshake in front of it -------------------


def test_the_gate_names_each_reason(pki: Pki) -> None:
    gate = EdgeGate(pki.ca.cert, pki.ca.crl, OWNED | {"edge-z": []})

    def admit(claimed: str, cert: IssuedPaths | None, name: str) -> Admitted | Refusal:
        auth = {} if cert is None else {
            "x509_pem_cert": [cert.cert.read_bytes()], "x509_common_name": [name.encode()],
        }  # fmt: skip
        return asyncio.run(gate.admit(claimed, auth))

    def reason(verdict: Admitted | Refusal) -> tuple[grpc.StatusCode, str] | None:
        return (verdict.code, verdict.reason) if isinstance(verdict, Refusal) else None

    unauthenticated, denied = grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED
    assert reason(admit("edge-a", pki.edges["edge-a"], "edge-a")) is None
    # Expired and foreign certificates get here only if gRPC let them through.
    assert reason(admit("edge-e", pki.edges["edge-e"], "edge-e")) == (unauthenticated, "expired")
    assert reason(admit("edge-c", pki.stranger, "edge-c")) == (unauthenticated, "unknown_ca")
    assert reason(admit("edge-a", None, "")) == (unauthenticated, "no_certificate")
    assert reason(admit("edge-a", pki.edges["edge-f"], "edge-f")) == (denied, "edge_id_mismatch")
    assert reason(admit("edge-z", pki.edges["edge-z"], "edge-z")) is None  # listed, owns nothing
    assert not gate.owns("edge-z", "kitchen-1")
    assert gate.owns("edge-a", "kitchen-12")
    assert not gate.owns("edge-a", "garage-1")
    assert not gate.owns("edge-q", "kitchen-1")

    open_gate = EdgeGate()  # no TLS: every edge by the id it claims, every board
    assert isinstance(asyncio.run(open_gate.admit("anyone", {})), Admitted)
    assert open_gate.owns("anyone", "garage-1")


def test_a_certificate_that_expires_mid_stream_is_cut_at_the_next_message(
    pki: Pki, tmp_path: Path
) -> None:
    soon = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=2)
    edge = issue(pki.ca.folder, "edge-a", "client", out=tmp_path, not_after=soon)
    gate = EdgeGate(pki.ca.cert, pki.ca.crl, OWNED)
    auth = {"x509_pem_cert": [edge.cert.read_bytes()], "x509_common_name": [b"edge-a"]}
    admitted = asyncio.run(gate.admit("edge-a", auth))
    assert isinstance(admitted, Admitted)
    assert asyncio.run(gate.recheck(admitted)) is None
    time.sleep(max(0.0, soon.timestamp() - time.time()) + 1.1)
    refusal = asyncio.run(gate.recheck(admitted))
    assert isinstance(refusal, Refusal)
    assert (refusal.code, refusal.reason) == (grpc.StatusCode.UNAUTHENTICATED, "expired")


def served_certificate(port: int, client: IssuedPaths, ca: Path) -> bytes:
    """The certificate the cloud's gRPC port shows in a new handshake (DER)."""
    context = ssl.create_default_context(cafile=str(ca))
    context.load_cert_chain(str(client.cert), str(client.key))
    context.set_alpn_protocols(["h2"])
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return der


def pem_to_der(path: Path) -> bytes:
    return ssl.PEM_cert_to_DER_cert(path.read_text())


def test_a_renewed_cloud_certificate_is_served_without_a_restart(pki: Pki, tmp_path: Path) -> None:
    live = tmp_path / "live"
    live.mkdir()
    cert, key = live / "cloud.crt", live / "cloud.key"
    cert.write_bytes(pki.server.cert.read_bytes())
    key.write_bytes(pki.server.key.read_bytes())
    config = tmp_path / "cloud.toml"
    config.write_text(
        f"tls_cert = {json.dumps(str(cert))}\n"
        f"tls_key = {json.dumps(str(key))}\n"
        f"tls_client_ca = {json.dumps(str(pki.ca.cert))}\n"
    )
    cloud = cloud_service(tmp_path, extra=["--config", str(config)]).start()
    try:
        edge = pki.edges["edge-a"]
        assert served_certificate(cloud.grpc_port, edge, pki.ca.cert) == pem_to_der(cert)
        # A broken renewal (a certificate without its key) is refused; the
        # old pair stays in use.
        renewed = issue(pki.ca.folder, "cloud", "server", hosts=["127.0.0.1"], out=tmp_path)
        cert.write_bytes(renewed.cert.read_bytes())
        # gRPC asks for changes before each handshake: handshakes until it did.
        old = pem_to_der(pki.server.cert)
        eventually(
            lambda: (
                served_certificate(cloud.grpc_port, edge, pki.ca.cert) == old
                and "new TLS files are unusable" in cloud.log()
            )
        )
        key.write_bytes(renewed.key.read_bytes())
        eventually(
            lambda: (
                served_certificate(cloud.grpc_port, edge, pki.ca.cert) == pem_to_der(renewed.cert)
            )
        )
        assert "TLS files changed; new handshakes use them" in cloud.log()
    finally:
        assert cloud.stop() == 0
    assert_no_key_material(cloud.log(), pki)


# -- the command line --------------------------------------------------------------


def test_the_tls_options_are_listed_and_checked_without_showing_a_key(pki: Pki) -> None:
    cloud_help = run_edgewire("cloud", "--help").stdout
    for option in ("--tls-cert", "--tls-key", "--tls-client-ca", "--tls-crl"):
        assert option in cloud_help
    edge_help = run_edgewire("edge", "--help").stdout
    for option in ("--cloud-ca", "--cloud-cert", "--cloud-key", "grpcs://"):
        assert option in edge_help

    # Someone else's key for the cloud's certificate: refused, by name only.
    wrong_key = run_edgewire(
        "cloud", "--tls-cert", str(pki.server.cert), "--tls-key", str(pki.stranger.key),
        "--tls-client-ca", str(pki.ca.cert),
    )  # fmt: skip
    assert wrong_key.returncode == 2
    assert "tls_key" in wrong_key.stderr
    assert "not the key of tls_cert" in wrong_key.stderr
    assert_no_key_material(wrong_key.stdout + wrong_key.stderr, pki)
    half = run_edgewire("cloud", "--tls-cert", str(pki.server.cert))
    assert half.returncode == 2
    assert "tls_key: needed with tls_cert" in half.stderr
    plain = run_edgewire(
        "edge", "--cloud", "grpc://127.0.0.1:1", "--cloud-cert", str(pki.edges["edge-a"].cert)
    )
    assert plain.returncode == 2
    assert "needs a grpcs:// cloud URL" in plain.stderr
