"""The TLS files of the cloud's gRPC port, read and checked before start.

With tls_cert, tls_key and tls_client_ca the port speaks mTLS: every client
(edges, backend consumers, health checks) must show a certificate signed by
the client CA. gRPC checks the chain and the dates in the handshake;
cloud/edge_trust.py adds revocation and the edge id. A file's contents never
reach a log line or an error: messages name the setting and what is wrong.
"""

from dataclasses import dataclass
from pathlib import Path

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes

from edgewire.ca import load_revocation_list
from edgewire.errors import ConfigError
from edgewire.files import FileVersion
from edgewire.logs import get_logger

log = get_logger("cloud.tls")

# Set together or not at all: a server certificate without client
# certificates would encrypt the link but still let anyone claim any edge id.
TOGETHER = ("tls_cert", "tls_key", "tls_client_ca")
RELOAD_POLL_S = 1.0  # how often, at most, a handshake looks at the files


@dataclass(frozen=True)
class ServerTls:
    cert_pem: bytes
    key_pem: bytes
    client_ca_pem: bytes
    cert: Path
    key: Path
    client_ca: Path
    crl: Path | None


def read_server_tls(
    cert: str | None, key: str | None, client_ca: str | None, crl: str | None
) -> ServerTls | None:
    """The checked files, or None when TLS is off; ValueError("<setting>:
    problem") otherwise, which the settings loader turns into one line."""
    if crl is not None and client_ca is None:
        raise ValueError("tls_crl: needs tls_client_ca, the CA whose revocations it lists")
    if cert is None or key is None or client_ca is None:
        paths = zip(TOGETHER, (cert, key, client_ca), strict=True)
        given = [name for name, path in paths if path is not None]
        if not given:
            return None
        missing = next(name for name in TOGETHER if name not in given)
        raise ValueError(f"{missing}: needed with {', '.join(given)} (mTLS needs all three)")
    cert_pem, key_pem = _read("tls_cert", cert), _read("tls_key", key)
    _check_key_pair(cert_pem, key_pem)
    client_ca_pem = _read("tls_client_ca", client_ca)
    _check_certificate_pem("tls_client_ca", client_ca_pem)
    if crl is not None:
        _check_crl(Path(client_ca), Path(crl))
    return ServerTls(
        cert_pem,
        key_pem,
        client_ca_pem,
        Path(cert),
        Path(key),
        Path(client_ca),
        None if crl is None else Path(crl),
    )


def server_credentials(tls: ServerTls) -> grpc.ServerCredentials:
    """Credentials that take a renewed certificate, key or client CA at the
    next handshake: open streams keep theirs, a restart is not needed."""
    return grpc.dynamic_ssl_server_credentials(
        _configuration(tls),
        CertificateReloader(tls),  # type: ignore[arg-type]  # the stubs omit None: "no change"
        require_client_authentication=True,
    )


class CertificateReloader:
    """gRPC's certificate_configuration_fetcher: called before each
    handshake; a new configuration when one of the three files changed and
    the set still checks out, else None (keep the current one)."""

    def __init__(self, tls: ServerTls) -> None:
        self._tls = tls
        self._versions = [
            FileVersion(p, every_s=RELOAD_POLL_S) for p in (tls.cert, tls.key, tls.client_ca)
        ]
        self._seen = self._current()

    def __call__(self) -> grpc.ServerCertificateConfiguration | None:
        now = self._current()
        if now == self._seen:
            return None
        self._seen = now
        tls = self._tls
        try:
            renewed = read_server_tls(str(tls.cert), str(tls.key), str(tls.client_ca), None)
        except ValueError as exc:  # half-copied, or a key of another certificate
            log.error("the gRPC port's new TLS files are unusable; keeping the old", error=str(exc))
            return None
        assert renewed is not None
        log.info("the gRPC port's TLS files changed; new handshakes use them")
        return _configuration(renewed)

    def _current(self) -> list[int]:
        return [version.current() for version in self._versions]


def _configuration(tls: ServerTls) -> grpc.ServerCertificateConfiguration:
    return grpc.ssl_server_certificate_configuration(
        [(tls.key_pem, tls.cert_pem)], root_certificates=tls.client_ca_pem
    )


def _read(setting: str, path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ValueError(f"{setting}: cannot read it: {exc.strerror}") from None


def _check_certificate_pem(setting: str, pem: bytes) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(pem)
    except ValueError:
        raise ValueError(f"{setting}: not a PEM certificate") from None


def _check_key_pair(cert_pem: bytes, key_pem: bytes) -> None:
    cert = _check_certificate_pem("tls_cert", cert_pem)
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except TypeError:
        raise ValueError("tls_key: the key is encrypted; gRPC needs it unencrypted") from None
    except ValueError:
        raise ValueError("tls_key: not a PEM private key") from None
    if _public_der(key.public_key()) != _public_der(cert.public_key()):
        raise ValueError("tls_key: not the key of tls_cert")


def _public_der(public_key: PublicKeyTypes) -> bytes:
    return public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _check_crl(client_ca: Path, crl: Path) -> None:
    try:
        load_revocation_list(client_ca, crl)
    except ConfigError as exc:
        raise ValueError(f"tls_crl: {exc}") from None
