"""The project's certificate authority: the certificates it issues work in
real TLS (Python's ssl, Mosquitto, paho), in both directions, and a revoked,
expired or foreign certificate is told apart."""

import gc
import getpass
import queue
import socket
import ssl
import subprocess
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TypeVar

import paho.mqtt.client as mqtt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from paho.mqtt.enums import CallbackAPIVersion

from edgewire.ca import (
    CaPaths,
    IssuedPaths,
    check_certificate,
    init_ca,
    issue,
    list_issued,
    load_crl_serials,
    revoke,
)
from edgewire.errors import ConfigError
from edgewire.mosquitto import mosquitto_binary
from edgewire.procs import edgewire_argv, free_port, spawn, stop, wait_for_port

E = TypeVar("E", bound=x509.ExtensionType)


@dataclass(frozen=True)
class Pki:
    ca: CaPaths
    server: IssuedPaths
    client: IssuedPaths
    device: IssuedPaths


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    ca = init_ca(tmp_path / "ca")
    return Pki(
        ca=ca,
        server=issue(ca.folder, "broker", "server", hosts=["localhost", "127.0.0.1"]),
        client=issue(ca.folder, "pi-kitchen", "client"),
        device=issue(ca.folder, "kitchen", "device"),
    )


@pytest.fixture
def stranger(tmp_path: Path) -> Pki:
    """A second CA, unrelated to the first, with the same kinds of certificates."""
    ca = init_ca(tmp_path / "stranger", name="someone else's CA")
    return Pki(
        ca=ca,
        server=issue(ca.folder, "broker", "server", hosts=["localhost", "127.0.0.1"]),
        client=issue(ca.folder, "pi-kitchen", "client"),
        device=issue(ca.folder, "kitchen", "device"),
    )


def load(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


def extension(
    owner: x509.Certificate | x509.CertificateRevocationList, kind: type[E]
) -> x509.Extension[E]:
    return owner.extensions.get_extension_for_class(kind)


# -- what init and issue write ------------------------------------------------


def test_init_writes_a_private_folder_and_a_self_signed_ca(tmp_path: Path) -> None:
    ca = init_ca(tmp_path / "ca", name="test CA")
    assert mode(ca.folder) == 0o700
    assert mode(ca.key) == 0o600
    assert b"ENCRYPTED" not in ca.key.read_bytes()
    cert = load(ca.cert)
    cert.verify_directly_issued_by(cert)
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "test CA"
    public_key = cert.public_key()
    assert isinstance(public_key, ec.EllipticCurvePublicKey)
    assert public_key.curve.name == "secp256r1"
    constraints = extension(cert, x509.BasicConstraints)
    assert constraints.critical
    assert constraints.value.ca
    usage = extension(cert, x509.KeyUsage)
    assert usage.critical
    assert usage.value.key_cert_sign
    assert usage.value.crl_sign
    extension(cert, x509.SubjectKeyIdentifier)
    assert cert.not_valid_after_utc - cert.not_valid_before_utc > timedelta(days=3649)
    assert load_crl_serials(ca.crl) == set(), "an empty revocation list from the start"


@pytest.mark.parametrize(
    ("kind", "usage"),
    [
        ("server", ExtendedKeyUsageOID.SERVER_AUTH),
        ("client", ExtendedKeyUsageOID.CLIENT_AUTH),
        ("device", ExtendedKeyUsageOID.CLIENT_AUTH),
    ],
)
def test_issued_certificates_say_what_they_are_for(
    pki: Pki, kind: str, usage: x509.ObjectIdentifier
) -> None:
    paths: IssuedPaths = getattr(pki, kind)
    assert paths.key.parent == pki.ca.folder / "issued"
    assert mode(paths.key) == 0o600
    assert mode(paths.key.parent) == 0o700
    cert = load(paths.cert)
    ca_cert = load(pki.ca.cert)
    cert.verify_directly_issued_by(ca_cert)
    assert not extension(cert, x509.BasicConstraints).value.ca
    assert list(extension(cert, x509.ExtendedKeyUsage).value) == [usage]
    assert (
        extension(cert, x509.AuthorityKeyIdentifier).value.key_identifier
        == extension(ca_cert, x509.SubjectKeyIdentifier).value.digest
    )
    assert timedelta(days=824) < cert.not_valid_after_utc - datetime.now(UTC) < timedelta(days=826)
    has_names = kind == "server"
    try:
        extension(cert, x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        assert not has_names
    else:
        assert has_names


def test_a_server_certificate_names_its_hosts(pki: Pki) -> None:
    names = extension(load(pki.server.cert), x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == ["localhost"]
    assert [str(ip) for ip in names.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]


def test_every_certificate_has_its_own_random_serial(pki: Pki) -> None:
    serials = {load(p.cert).serial_number for p in (pki.server, pki.client, pki.device)}
    assert len(serials) == 3
    assert all(serial.bit_length() > 64 for serial in serials)


def test_issue_can_write_elsewhere_and_the_ca_still_knows(pki: Pki, tmp_path: Path) -> None:
    paths = issue(pki.ca.folder, "porch", "device", out=tmp_path / "porch")
    assert paths.cert == tmp_path / "porch" / "porch.crt"
    assert mode(paths.key) == 0o600
    listed = {(c.name, c.kind, c.revoked) for c in list_issued(pki.ca.folder)}
    assert listed == {
        ("broker", "server", False),
        ("pi-kitchen", "client", False),
        ("kitchen", "device", False),
        ("porch", "device", False),
    }


@pytest.mark.parametrize(
    ("name", "kind", "hosts", "days", "fragment"),
    [
        ("bad name", "device", [], 825, "letters, digits"),
        ("x" * 65, "device", [], 825, "1 to 64"),
        ("../up", "device", [], 825, "letters, digits"),
        ("cloud", "server", [], 825, "at least one host"),
        ("cloud", "server", ["not a host"], 825, "neither an IP address"),
        ("edge", "client", ["localhost"], 825, "server certificates"),
        ("edge", "router", [], 825, "one of server, client, device"),
        ("edge", "client", [], 0, "at least 1"),
        ("edge", "client", [], 4000, "outlive the CA"),
    ],
)
def test_bad_requests_are_config_errors(
    pki: Pki, name: str, kind: str, hosts: list[str], days: int, fragment: str
) -> None:
    with pytest.raises(ConfigError, match=fragment):
        issue(pki.ca.folder, name, kind, hosts=hosts, days=days)  # type: ignore[arg-type]


def test_issue_never_overwrites_the_ca_itself(pki: Pki) -> None:
    with pytest.raises(ConfigError, match="CA's own files"):
        issue(pki.ca.folder, "ca", "device", out=pki.ca.folder)
    load(pki.ca.cert).verify_directly_issued_by(load(pki.ca.cert))


def test_issue_needs_a_ca(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no CA in"):
        issue(tmp_path / "nowhere", "kitchen", "device")


def test_init_refuses_to_replace_a_ca_unless_forced(pki: Pki) -> None:
    before = pki.ca.cert.read_bytes()
    with pytest.raises(ConfigError, match="already exists"):
        init_ca(pki.ca.folder)
    assert pki.ca.cert.read_bytes() == before
    init_ca(pki.ca.folder, force=True)
    assert pki.ca.cert.read_bytes() != before
    assert list_issued(pki.ca.folder) == [], "the old CA's certificates are not the new one's"


# -- real TLS with Python's ssl -------------------------------------------------


def client_context(trust: Path, identity: IssuedPaths | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(trust))
    context.verify_flags |= ssl.VERIFY_X509_STRICT  # Python 3.13's default: be ready for it
    if identity is not None:
        context.load_cert_chain(identity.cert, identity.key)
    return context


def server_context(identity: IssuedPaths, client_trust: Path | None = None) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(identity.cert, identity.key)
    if client_trust is not None:
        context.verify_mode = ssl.CERT_REQUIRED
        context.verify_flags |= ssl.VERIFY_X509_STRICT
        context.load_verify_locations(cafile=str(client_trust))
    return context


@contextmanager
def tls_echo_server(context: ssl.SSLContext) -> Iterator[tuple[int, "queue.Queue[object]"]]:
    """Echoes one message on each TLS connection to 127.0.0.1:port; the
    queue gets the client's certificate (None when not asked for one) or the
    handshake's error."""
    outcomes: queue.Queue[object] = queue.Queue()
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.1)  # closing a socket does not wake a thread in accept()
    done = threading.Event()

    def serve() -> None:
        while not done.is_set():
            try:
                connection, _ = listener.accept()
            except TimeoutError:
                continue
            with connection:
                try:
                    with context.wrap_socket(connection, server_side=True) as tls:
                        tls.sendall(tls.recv(64))
                        outcomes.put(tls.getpeercert())
                except OSError as exc:
                    outcomes.put(exc)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1], outcomes
    finally:
        done.set()
        thread.join(10)
        listener.close()


def echo(port: int, context: ssl.SSLContext, hostname: str = "localhost") -> bytes:
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname=hostname) as tls,
    ):
        tls.sendall(b"ping")
        return tls.recv(64)


@pytest.mark.parametrize("hostname", ["localhost", "127.0.0.1"])
def test_a_client_trusting_the_ca_accepts_the_issued_server_certificate(
    pki: Pki, hostname: str
) -> None:
    with tls_echo_server(server_context(pki.server)) as (port, outcomes):
        assert echo(port, client_context(pki.ca.cert), hostname) == b"ping"
        assert outcomes.get(timeout=5) is None


def test_a_client_trusting_another_ca_refuses_the_server(pki: Pki, stranger: Pki) -> None:
    with tls_echo_server(server_context(pki.server)) as (port, outcomes):
        with pytest.raises(ssl.SSLCertVerificationError):
            echo(port, client_context(stranger.ca.cert))
        assert isinstance(outcomes.get(timeout=5), ssl.SSLError)


def test_a_client_refuses_a_host_the_certificate_does_not_name(pki: Pki) -> None:
    with (
        tls_echo_server(server_context(pki.server)) as (port, _),
        pytest.raises(ssl.SSLCertVerificationError, match="mismatch"),
    ):
        echo(port, client_context(pki.ca.cert), hostname="cloud.example.org")


def test_a_client_certificate_cannot_serve(pki: Pki) -> None:
    with (
        tls_echo_server(server_context(pki.client)) as (port, _),
        pytest.raises(ssl.SSLCertVerificationError, match="certificate purpose"),
    ):
        echo(port, client_context(pki.ca.cert))


@pytest.mark.parametrize("identity", ["client", "device"])
def test_mutual_tls_accepts_an_issued_client_or_device(pki: Pki, identity: str) -> None:
    paths: IssuedPaths = getattr(pki, identity)
    with tls_echo_server(server_context(pki.server, client_trust=pki.ca.cert)) as (port, outcomes):
        assert echo(port, client_context(pki.ca.cert, paths)) == b"ping"
        seen = outcomes.get(timeout=5)
        assert isinstance(seen, dict)
        subject = dict(pair[0] for pair in seen["subject"])
        assert subject["commonName"] == paths.cert.stem


@pytest.mark.parametrize("identity", ["none", "stranger's client", "our server"])
def test_mutual_tls_refuses_other_clients(pki: Pki, stranger: Pki, identity: str) -> None:
    paths = {"none": None, "stranger's client": stranger.client, "our server": pki.server}
    with tls_echo_server(server_context(pki.server, client_trust=pki.ca.cert)) as (port, outcomes):
        # TLS 1.3 finishes the client's side of the handshake before the
        # server has judged the client: the refusal arrives on the first read.
        with pytest.raises(ssl.SSLError):
            echo(port, client_context(pki.ca.cert, paths[identity]))
        assert isinstance(outcomes.get(timeout=5), ssl.SSLError)


# -- a real Mosquitto with a TLS listener ---------------------------------------


@contextmanager
def tls_mosquitto(
    workdir: Path, ca: CaPaths, identity: IssuedPaths, require_certificate: bool = False
) -> Iterator[int]:
    port = free_port()
    workdir.mkdir()
    config = workdir / "mosquitto.conf"
    config.write_text(
        "\n".join(
            [
                f"listener {port} 127.0.0.1",
                f"cafile {ca.cert}",
                f"certfile {identity.cert}",
                f"keyfile {identity.key}",
                f"require_certificate {str(require_certificate).lower()}",
                "allow_anonymous true",
                # Run as root, Mosquitto would become user `mosquitto`, who
                # cannot read a 0600 key.
                f"user {getpass.getuser()}",
                "log_dest stderr",
                "",
            ]
        )
    )
    process = spawn([mosquitto_binary(), "-c", str(config)], workdir / "mosquitto.log")
    try:
        wait_for_port(port, 10, process)
        yield port
    finally:
        stop(process)


@contextmanager
def mqtt_session(
    port: int, trust: Path, identity: IssuedPaths | None = None
) -> Iterator[tuple[mqtt.Client, "queue.Queue[bytes]"]]:
    """A paho client connected over TLS, and the payloads it receives.
    Raises ssl.SSLError or ConnectionError if the broker will not have it."""
    outcome: queue.Queue[str] = queue.Queue()
    payloads: queue.Queue[bytes] = queue.Queue()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="ca-test")
    client.tls_set(
        ca_certs=str(trust),
        certfile=str(identity.cert) if identity else None,
        keyfile=str(identity.key) if identity else None,
    )
    client.on_connect = lambda _c, _u, _f, reason, _p: outcome.put(
        f"refused: {reason}" if reason.is_failure else "connected"
    )
    client.on_disconnect = lambda _c, _u, _f, reason, _p: outcome.put(f"disconnected: {reason}")
    client.on_message = lambda _c, _u, message: payloads.put(bytes(message.payload))
    client.connect("127.0.0.1", port, keepalive=10)
    client.loop_start()
    try:
        seen = outcome.get(timeout=10)
        if seen != "connected":
            raise ConnectionError(seen)
        yield client, payloads
    finally:
        client.disconnect()
        client.loop_stop()


def test_mosquitto_serves_mqtt_over_tls_with_an_issued_certificate(
    pki: Pki, tmp_path: Path
) -> None:
    with (
        tls_mosquitto(tmp_path / "broker", pki.ca, pki.server) as port,
        mqtt_session(port, pki.ca.cert) as (client, payloads),
    ):
        client.subscribe("ca/test", qos=1)
        client.publish("ca/test", b"over TLS", qos=1)
        assert payloads.get(timeout=10) == b"over TLS"


def test_paho_refuses_a_broker_of_another_ca(pki: Pki, stranger: Pki, tmp_path: Path) -> None:
    with tls_mosquitto(tmp_path / "broker", pki.ca, pki.server) as port, warnings.catch_warnings():
        # paho 2.2 leaves the socket of a failed handshake to the collector.
        warnings.simplefilter("ignore", ResourceWarning)
        with pytest.raises(ssl.SSLCertVerificationError), mqtt_session(port, stranger.ca.cert):
            pass
        gc.collect()


def test_mosquitto_requiring_certificates_admits_an_issued_device_only(
    pki: Pki, tmp_path: Path
) -> None:
    with tls_mosquitto(tmp_path / "broker", pki.ca, pki.server, require_certificate=True) as port:
        with mqtt_session(port, pki.ca.cert, pki.device) as (client, payloads):
            client.subscribe("ca/test", qos=1)
            client.publish("ca/test", b"from a board", qos=1)
            assert payloads.get(timeout=10) == b"from a board"
        # Refused during the handshake or just after it, depending on timing.
        with pytest.raises((ssl.SSLError, ConnectionError)), mqtt_session(port, pki.ca.cert):
            pass


# -- revocation and check_certificate -------------------------------------------


def test_a_valid_certificate_passes_the_check(pki: Pki) -> None:
    for paths in (pki.server, pki.client, pki.device):
        assert check_certificate(pki.ca.cert, pki.ca.crl, paths.cert.read_bytes()) is None
    assert check_certificate(pki.ca.cert, None, pki.device.cert.read_bytes()) is None


def test_a_revoked_certificate_is_refused_and_stays_revoked(pki: Pki) -> None:
    crl = revoke(pki.ca.folder, "kitchen")
    assert crl == pki.ca.crl
    assert check_certificate(pki.ca.cert, crl, pki.device.cert.read_bytes()) == "revoked"
    revoke(pki.ca.folder, "pi-kitchen")
    assert load_crl_serials(crl) == {
        load(pki.device.cert).serial_number,
        load(pki.client.cert).serial_number,
    }, "a later revocation keeps the earlier ones"
    assert check_certificate(pki.ca.cert, crl, pki.server.cert.read_bytes()) is None
    parsed = x509.load_pem_x509_crl(crl.read_bytes())
    assert parsed.is_signature_valid(load(pki.ca.cert).public_key())  # type: ignore[arg-type]
    assert parsed.next_update_utc is not None
    assert timedelta(days=29) < parsed.next_update_utc - datetime.now(UTC) <= timedelta(days=30)
    assert extension(parsed, x509.CRLNumber).value.crl_number == 3  # init, then two revokes


def test_revoke_covers_every_certificate_of_the_name(pki: Pki, tmp_path: Path) -> None:
    renewed = issue(pki.ca.folder, "kitchen", "device", out=tmp_path / "renewed")
    revoke(pki.ca.folder, "kitchen")
    for paths in (pki.device, renewed):
        assert check_certificate(pki.ca.cert, pki.ca.crl, paths.cert.read_bytes()) == "revoked"
    with pytest.raises(ConfigError, match="already revoked"):
        revoke(pki.ca.folder, "kitchen")
    fresh = issue(pki.ca.folder, "kitchen", "device")
    assert check_certificate(pki.ca.cert, pki.ca.crl, fresh.cert.read_bytes()) is None
    statuses = sorted(c.revoked for c in list_issued(pki.ca.folder) if c.name == "kitchen")
    assert statuses == [False, True, True]


def test_revoking_an_unknown_name_is_an_error(pki: Pki) -> None:
    with pytest.raises(ConfigError, match="never issued"):
        revoke(pki.ca.folder, "garage")


def test_an_expired_or_early_certificate_is_refused(pki: Pki) -> None:
    yesterday = datetime.now(UTC) - timedelta(days=1)
    expired = issue(pki.ca.folder, "old", "device", not_after=yesterday)
    assert check_certificate(pki.ca.cert, pki.ca.crl, expired.cert.read_bytes()) == "expired"
    pem = pki.device.cert.read_bytes()
    before = load(pki.device.cert).not_valid_before_utc - timedelta(seconds=1)
    assert check_certificate(pki.ca.cert, pki.ca.crl, pem, now=before) == "not yet valid"


def test_a_certificate_of_another_ca_is_refused(pki: Pki, stranger: Pki) -> None:
    pem = stranger.device.cert.read_bytes()
    assert check_certificate(pki.ca.cert, pki.ca.crl, pem) == "not issued by this CA"
    assert check_certificate(pki.ca.cert, None, b"junk") == "not a PEM certificate"


def test_a_revocation_list_of_another_ca_is_not_believed(pki: Pki, stranger: Pki) -> None:
    with pytest.raises(ConfigError, match="not signed by this CA"):
        check_certificate(pki.ca.cert, stranger.ca.crl, pki.device.cert.read_bytes())


# -- the command line -------------------------------------------------------------


def run_ca(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        edgewire_argv("ca", *args),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
        check=False,
    )


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        ([], ["init", "issue", "revoke", "list", "edgewire ca issue cloud --server"]),
        (["init"], ["--dir", "--name", "--days", "--force", "edgewire-ca"]),
        (["issue"], ["NAME", "--kind", "server|client|device", "--server", "--days", "--out"]),
        (["revoke"], ["NAME", "--dir"]),
        (["list"], ["--dir"]),
    ],
)
def test_every_ca_command_has_help(tmp_path: Path, command: list[str], expected: list[str]) -> None:
    result = run_ca(*command, "--help", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    for word in expected:
        assert word in result.stdout


def test_the_ca_commands_from_init_to_revoke(tmp_path: Path) -> None:
    init = run_ca("init", cwd=tmp_path)
    assert init.returncode == 0, init.stderr
    assert "edgewire-ca/ca.key" in init.stdout, "./edgewire-ca by default"
    assert "edgewire-ca/ca.crt" in init.stdout

    # The contract's form: --server HOST makes a server certificate.
    issued = run_ca("issue", "cloud", "--server", "localhost", cwd=tmp_path)
    assert issued.returncode == 0, issued.stderr
    assert "edgewire-ca/issued/cloud.key" in issued.stdout
    assert "edgewire-ca/issued/cloud.crt" in issued.stdout
    out = tmp_path / "board"
    board = run_ca("issue", "kitchen", "--kind", "device", "--out", str(out), cwd=tmp_path)
    assert board.returncode == 0, board.stderr
    assert (out / "kitchen.key").exists()
    edge = run_ca("issue", "pi-1", cwd=tmp_path)  # no --server: a client (an edge)
    assert edge.returncode == 0, edge.stderr

    revoked = run_ca("revoke", "kitchen", cwd=tmp_path)
    assert revoked.returncode == 0, revoked.stderr
    assert "edgewire-ca/ca.crl" in revoked.stdout

    listed = run_ca("list", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    rows = {line.split()[0]: line.split() for line in listed.stdout.splitlines()[1:]}
    assert rows["cloud"][1:2] == ["server"]
    assert "valid" in rows["cloud"]
    assert rows["kitchen"][1:2] == ["device"]
    assert rows["pi-1"][1:2] == ["client"]
    assert "revoked" in rows["kitchen"]

    printed = init.stdout + issued.stdout + board.stdout + revoked.stdout + listed.stdout
    assert "PRIVATE KEY" not in printed


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["issue", "bad/name", "--kind", "device"], "'bad/name'"),
        (["issue", "cloud", "--kind", "server"], "at least one host"),
        (["issue", "cloud", "--kind", "printer"], "--kind"),
        (["init"], "already exists"),
        (["revoke", "garage"], "never issued"),
    ],
)
def test_ca_mistakes_exit_2_with_one_line(tmp_path: Path, args: list[str], fragment: str) -> None:
    init_ca(tmp_path / "ca")
    result = run_ca(*args, "--dir", str(tmp_path / "ca"), cwd=tmp_path)
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert fragment in lines[0]
