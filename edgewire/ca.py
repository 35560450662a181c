"""The project's own certificate authority: one EC P-256 key that signs the
certificates of the cloud (server), the edges (client) and the boards
(device), and a revocation list that the cloud checks them against.

A CA folder holds:

    ca.key            the CA's private key (0600; never leaves this folder)
    ca.crt            the CA's certificate: every peer trusts this one file
    ca.crl            the revocation list, signed by the CA
    signed/           a copy of every certificate the CA signed, by serial
    issued/           <name>.key and <name>.crt of each issue (unless --out)

`signed/` is the CA's own record: `revoke` and `list_issued` read it, so a
certificate written elsewhere with `out=`, or issued again under the same
name, can still be listed and revoked.
"""

import ipaddress
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal, get_args

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from edgewire.errors import ConfigError
from edgewire.files import write_atomically

Kind = Literal["server", "client", "device"]
KINDS: tuple[Kind, ...] = get_args(Kind)

CA_KEY = "ca.key"
CA_CERT = "ca.crt"
CA_CRL = "ca.crl"
SIGNED = "signed"
ISSUED = "issued"

CRL_LIFETIME = timedelta(days=30)
# A peer whose clock runs a little behind ours (a Pi before its first NTP
# sync) would otherwise see a certificate issued a minute ago as not yet valid.
CLOCK_SKEW = timedelta(hours=1)

_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_DNS_NAME = re.compile(rf"(?:\*\.)?{_LABEL}(?:\.{_LABEL})*")
_EKU: dict[Kind, x509.ObjectIdentifier] = {
    "server": ExtendedKeyUsageOID.SERVER_AUTH,
    "client": ExtendedKeyUsageOID.CLIENT_AUTH,
    "device": ExtendedKeyUsageOID.CLIENT_AUTH,
}


@dataclass(frozen=True)
class CaPaths:
    folder: Path
    key: Path
    cert: Path
    crl: Path


@dataclass(frozen=True)
class IssuedPaths:
    key: Path
    cert: Path


@dataclass(frozen=True)
class IssuedCert:
    """One certificate of the CA's record, as `edgewire ca list` shows it."""

    name: str
    kind: str
    serial: int
    not_after: datetime
    revoked: bool


def ca_paths(folder: Path) -> CaPaths:
    return CaPaths(folder, folder / CA_KEY, folder / CA_CERT, folder / CA_CRL)


# -- creating the CA ----------------------------------------------------------


def init_ca(
    folder: Path, name: str = "edgewire CA", days: int = 3650, force: bool = False
) -> CaPaths:
    """Create a CA in `folder` (made 0700): key, self-signed certificate and
    an empty revocation list, so the cloud can be pointed at ca.crl from day one.

    Refuses to replace an existing CA unless `force`: everything the old one
    signed stops being trusted by peers that get the new ca.crt.
    """
    paths = ca_paths(folder)
    if not force and (paths.key.exists() or paths.cert.exists()):
        raise ConfigError(
            f"a CA already exists in {folder} (replacing it with --force makes every"
            " certificate it issued untrusted)"
        )
    _require_positive_days(days)
    if not name.strip() or len(name) > 64:
        raise ConfigError(f"CA name {name!r} must be 1 to 64 characters")
    _make_private_folder(folder)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = _ca_certificate(key, name, days)
    _write_private(paths.key, _key_pem(key))
    _write_public(paths.cert, cert.public_bytes(serialization.Encoding.PEM))
    _write_crl(paths, key, cert, [], crl_number=1)
    return paths


def _ca_certificate(key: ec.EllipticCurvePrivateKey, name: str, days: int) -> x509.Certificate:
    now = _now()
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    key_id = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(now + timedelta(days=days))
        # path_length 0: this CA signs end certificates only, never another CA.
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(cert_sign=True), critical=True)
        .add_extension(key_id, critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(key_id),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )


# -- issuing ------------------------------------------------------------------


def issue(
    folder: Path,
    name: str,
    kind: Kind,
    hosts: Iterable[str] = (),
    days: int = 825,
    out: Path | None = None,
    *,
    not_after: datetime | None = None,
) -> IssuedPaths:
    """Sign a new key for `name`: a "server" (the cloud, a broker; `hosts` are
    the DNS names and IP addresses its clients dial), a "client" (an edge, by
    its edge id) or a "device" (a board, by its device id).

    Writes <name>.key (0600) and <name>.crt into `out`, by default the CA
    folder's issued/. `not_after` overrides `days` (tests use it to make
    expired certificates).
    """
    _require_valid_name(name)
    if kind not in KINDS:
        raise ConfigError(f"kind {kind!r} must be one of {', '.join(KINDS)}")
    alt_names = _alt_names(kind, list(hosts))
    ca_key, ca_cert = _load_ca(folder)
    target = out if out is not None else folder / ISSUED
    paths = IssuedPaths(target / f"{name}.key", target / f"{name}.crt")
    _refuse_to_clobber_the_ca(folder, name, paths)
    not_after = _expiry(ca_cert, days, not_after)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = _leaf_certificate(ca_key, ca_cert, key.public_key(), name, kind, alt_names, not_after)
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    # The record first: a certificate out in the world must be revocable.
    _make_private_folder(folder / SIGNED)
    _write_public(folder / SIGNED / f"{cert.serial_number:x}.crt", cert_pem)
    if out is None:
        _make_private_folder(target)  # it holds private keys
    else:
        target.mkdir(parents=True, exist_ok=True)
    _write_private(paths.key, _key_pem(key))
    _write_public(paths.cert, cert_pem)
    return paths


def _expiry(ca_cert: x509.Certificate, days: int, not_after: datetime | None) -> datetime:
    if not_after is None:
        _require_positive_days(days)
        not_after = _now() + timedelta(days=days)
    elif not_after.tzinfo is None:
        raise ConfigError("not_after needs a time zone")
    # Peers reject a certificate whose CA has expired, so a later date would mislead.
    if not_after > ca_cert.not_valid_after_utc:
        raise ConfigError(
            f"the certificate would outlive the CA (which expires"
            f" {ca_cert.not_valid_after_utc:%Y-%m-%d}): ask for fewer days"
        )
    return not_after


def _leaf_certificate(
    ca_key: ec.EllipticCurvePrivateKey,
    ca_cert: x509.Certificate,
    public_key: ec.EllipticCurvePublicKey,
    name: str,
    kind: Kind,
    alt_names: list[x509.GeneralName],
    not_after: datetime,
) -> x509.Certificate:
    builder = (
        x509.CertificateBuilder()
        .subject_name(_subject(name, kind))
        .issuer_name(ca_cert.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(min(_now(), not_after) - CLOCK_SKEW)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(cert_sign=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([_EKU[kind]]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(_authority_key_id(ca_cert), critical=False)
    )
    if alt_names:
        builder = builder.add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
    return builder.sign(ca_key, hashes.SHA256())


def _subject(name: str, kind: Kind) -> x509.Name:
    # The kind rides in the subject so `list` can tell an edge from a board:
    # both are TLS clients, so their extended key usage is the same.
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, kind),
            x509.NameAttribute(NameOID.COMMON_NAME, name),
        ]
    )


def _alt_names(kind: Kind, hosts: list[str]) -> list[x509.GeneralName]:
    if kind != "server":
        if hosts:
            raise ConfigError(f"hosts are for server certificates, not {kind} ones")
        return []
    if not hosts:
        raise ConfigError(
            "a server certificate needs at least one host its clients dial,"
            " e.g. localhost or 127.0.0.1"
        )
    return [_alt_name(host) for host in hosts]


def _alt_name(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        pass  # not an address: a DNS name then
    if len(host) > 253 or not _DNS_NAME.fullmatch(host):
        raise ConfigError(f"host {host!r} is neither an IP address nor a DNS name")
    return x509.DNSName(host)


def _key_usage(cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=not cert_sign,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _authority_key_id(ca_cert: x509.Certificate) -> x509.AuthorityKeyIdentifier:
    ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)


def _refuse_to_clobber_the_ca(folder: Path, name: str, paths: IssuedPaths) -> None:
    own = {p.resolve() for p in (folder / CA_KEY, folder / CA_CERT, folder / CA_CRL)}
    if {paths.key.resolve(), paths.cert.resolve()} & own:
        raise ConfigError(f"name {name!r} would overwrite the CA's own files there: pick another")


# -- revoking and listing -------------------------------------------------------


def revoke(folder: Path, name: str) -> Path:
    """Revoke every certificate issued to `name` so far (a renewed one too)
    and re-sign ca.crl; its path. A later `issue` of `name` is valid again."""
    _require_valid_name(name)
    ca_key, ca_cert = _load_ca(folder)
    paths = ca_paths(folder)
    crl = _load_crl(paths.crl, ca_cert)
    revoked = _serials(crl)
    wanted = [cert for cert in _signed(folder, ca_cert) if _common_name(cert) == name]
    if not wanted:
        raise ConfigError(f"this CA ({folder}) never issued a certificate to {name!r}")
    fresh = [cert.serial_number for cert in wanted if cert.serial_number not in revoked]
    if not fresh:
        raise ConfigError(f"{name!r} is already revoked")
    now = _now()
    entries = [(entry.serial_number, entry.revocation_date_utc) for entry in crl]
    entries += [(serial, now) for serial in fresh]
    _write_crl(paths, ca_key, ca_cert, entries, crl_number=_crl_number(crl) + 1)
    return paths.crl


def list_issued(folder: Path) -> list[IssuedCert]:
    """Every certificate the CA in `folder` signed, by name, oldest first."""
    _, ca_cert = _load_ca(folder)
    revoked = _serials(_load_crl(ca_paths(folder).crl, ca_cert))
    found = [
        IssuedCert(
            name=_common_name(cert),
            kind=_kind(cert),
            serial=cert.serial_number,
            not_after=cert.not_valid_after_utc,
            revoked=cert.serial_number in revoked,
        )
        for cert in _signed(folder, ca_cert)
    ]
    return sorted(found, key=lambda c: (c.name, c.not_after))


def _signed(folder: Path, ca_cert: x509.Certificate) -> Iterator[x509.Certificate]:
    # A CA replaced with init --force leaves its predecessor's record behind:
    # those certificates are nothing to this CA, so they are skipped.
    for path in sorted((folder / SIGNED).glob("*.crt")):
        cert = x509.load_pem_x509_certificate(path.read_bytes())
        if _issued_by(cert, ca_cert):
            yield cert


def _common_name(cert: x509.Certificate) -> str:
    values = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(values[0].value) if values else ""


def _kind(cert: x509.Certificate) -> str:
    values = cert.subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)
    return str(values[0].value) if values else "?"


# -- checking a peer's certificate --------------------------------------------


def load_crl_serials(path: Path) -> set[int]:
    """The serial numbers a CRL file revokes."""
    return _serials(_parse_crl(path))


def load_revocation_list(ca_crt_path: Path, crl_path: Path) -> set[int]:
    """The serial numbers the CRL at `crl_path` revokes, once it is shown to
    be signed by the CA of `ca_crt_path`; ConfigError names what is wrong."""
    try:
        ca_cert = x509.load_pem_x509_certificate(_read(ca_crt_path))
    except ValueError as exc:
        raise ConfigError(f"{ca_crt_path} is not a PEM certificate") from exc
    return _serials(_load_crl(crl_path, ca_cert))


def check_certificate(
    ca_crt_path: Path, crl_path: Path | None, cert_pem: bytes, now: datetime | None = None
) -> str | None:
    """None when `cert_pem` was signed by the CA of `ca_crt_path`, is valid at
    `now` and is not on the CRL; otherwise why not, in a few words."""
    ca_cert = x509.load_pem_x509_certificate(_read(ca_crt_path))
    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
    except ValueError:
        return "not a PEM certificate"
    if not _issued_by(cert, ca_cert):
        return "not issued by this CA"
    if crl_path is not None and cert.serial_number in _serials(_load_crl(crl_path, ca_cert)):
        return "revoked"
    moment = now or _now()
    if moment < cert.not_valid_before_utc:
        return "not yet valid"
    if moment > cert.not_valid_after_utc:
        return "expired"
    return None


def _issued_by(cert: x509.Certificate, ca_cert: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(ca_cert)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


# -- the revocation list --------------------------------------------------------


def _write_crl(
    paths: CaPaths,
    ca_key: ec.EllipticCurvePrivateKey,
    ca_cert: x509.Certificate,
    entries: list[tuple[int, datetime]],
    crl_number: int,
) -> None:
    now = _now()
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca_cert.subject)
        .last_update(now)
        .next_update(now + CRL_LIFETIME)
        .add_extension(x509.CRLNumber(crl_number), critical=False)
        .add_extension(_authority_key_id(ca_cert), critical=False)
    )
    for serial, when in entries:
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(when).build()
        )
    crl = builder.sign(ca_key, hashes.SHA256())
    _write_public(paths.crl, crl.public_bytes(serialization.Encoding.PEM))


def _load_crl(path: Path, ca_cert: x509.Certificate) -> x509.CertificateRevocationList:
    crl = _parse_crl(path)
    # Someone else's list could quietly drop our revocations.
    ca_public_key = ca_cert.public_key()
    if not isinstance(ca_public_key, ec.EllipticCurvePublicKey):
        raise ConfigError("the CA's certificate does not hold an EC key")
    if not crl.is_signature_valid(ca_public_key):
        raise ConfigError(f"{path} is not signed by this CA")
    return crl


def _parse_crl(path: Path) -> x509.CertificateRevocationList:
    try:
        return x509.load_pem_x509_crl(_read(path))
    except ValueError as exc:
        raise ConfigError(f"{path} is not a PEM revocation list") from exc


def _serials(crl: x509.CertificateRevocationList) -> set[int]:
    return {entry.serial_number for entry in crl}


def _crl_number(crl: x509.CertificateRevocationList) -> int:
    try:
        return crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    except x509.ExtensionNotFound:
        return 0


# -- files ----------------------------------------------------------------------


def _load_ca(folder: Path) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    paths = ca_paths(folder)
    if not paths.key.exists() or not paths.cert.exists():
        raise ConfigError(f"no CA in {folder} (create one with `edgewire ca init --dir {folder}`)")
    key = serialization.load_pem_private_key(_read(paths.key), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ConfigError(f"{paths.key} is not an EC private key")
    return key, x509.load_pem_x509_certificate(_read(paths.cert))


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from exc


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _make_private_folder(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    folder.chmod(0o700)  # mkdir's mode is cut by the umask and ignored if it existed


def _write_private(path: Path, data: bytes) -> None:
    write_atomically(path, data, 0o600)  # a key is never readable by others


def _write_public(path: Path, data: bytes) -> None:
    write_atomically(path, data, 0o644)


# -- checks ---------------------------------------------------------------------


def _require_valid_name(name: str) -> None:
    if not _NAME.fullmatch(name):
        raise ConfigError(f"name {name!r} must be 1 to 64 letters, digits, '-', '_' or '.'")


def _require_positive_days(days: int) -> None:
    if days < 1:
        raise ConfigError(f"days must be at least 1, not {days}")


def _now() -> datetime:
    return datetime.now(UTC)
