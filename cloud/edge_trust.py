"""Which edges may stream, and for which boards: the cloud's half of mTLS.

gRPC has checked an edge's certificate chain and dates in the TLS handshake:
a certificate that fails there (none at all, another CA's, an expired one)
never reaches this code, and only grpc's own log line on the cloud names
why. For each Ingest stream that got through, this module decides:

- the certificate, checked again with edgewire.ca: the revocation list,
  which gRPC does not know, and a reason worth counting;
- the Hello's edge id must be the certificate's common name, so an edge
  cannot speak as another;
- with `edge_devices`, the edge must be listed there, and a sample, status
  or command answer counts only for a board the edge owns.

Revocation and expiry reach open streams too: when the revocation list file
changes, each stream's certificate is checked against the new one at its
next message (edges send figures every few seconds, so within seconds), and
a stream whose certificate expired is cut at its next message.
"""

import asyncio
import fnmatch
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import grpc
from cryptography import x509

from edgewire.ca import check_certificate
from edgewire.errors import ConfigError
from edgewire.files import FileVersion
from edgewire.logs import get_logger

log = get_logger("cloud.edge_trust")

# edgewire.ca.check_certificate's reasons -> the label of the refusal counter.
_REASON_LABELS = {
    "revoked": "revoked",
    "expired": "expired",
    "not yet valid": "not_yet_valid",
    "not issued by this CA": "unknown_ca",
    "not a PEM certificate": "bad_certificate",
}
CRL_POLL_S = 1.0  # how often, at most, the revocation list's file is looked at


@dataclass(frozen=True)
class Refusal:
    code: grpc.StatusCode
    reason: str  # a few fixed words: the label of edgewire_cloud_edges_refused_total
    detail: str  # what the edge is told and the log line says


@dataclass
class Admitted:
    """An edge stream that passed: who, with which certificate, checked
    against which version of the revocation list."""

    edge_id: str
    cert_pem: bytes | None
    crl_version: int
    expires_at: float | None = None  # the certificate's not-after, Unix time


class EdgeGate:
    """Without a client CA it admits every edge by the id it claims (the
    link is unauthenticated; the server warns of it at start)."""

    def __init__(
        self,
        client_ca: Path | None = None,
        crl: Path | None = None,
        edge_devices: Mapping[str, Sequence[str]] | None = None,
    ) -> None:
        self._client_ca = client_ca
        self._crl = crl
        # A stat per batch of every edge would add up: a look a second at most.
        self._crl_version = None if crl is None else FileVersion(crl, every_s=CRL_POLL_S)
        # One regex per edge, from its glob patterns: a match per sample.
        self._owned = (
            None
            if edge_devices is None
            else {
                edge: re.compile("|".join(fnmatch.translate(p) for p in patterns) or "(?!)")
                for edge, patterns in edge_devices.items()
            }
        )

    async def admit(self, claimed: str, auth: Mapping[str, Iterable[bytes]]) -> Admitted | Refusal:
        """Whether the edge that says Hello as `claimed`, with this TLS
        `auth` context (grpc's auth_context()), may stream."""
        cert_pem = None
        version = self._current_crl_version()
        if self._client_ca is not None:
            cert_pem = _first(auth, "x509_pem_cert")
            if cert_pem is None:
                return Refusal(grpc.StatusCode.UNAUTHENTICATED, "no_certificate",
                               "no client certificate")  # fmt: skip
            refusal = await self._check(cert_pem)
            if refusal is not None:
                return refusal
            name = (_first(auth, "x509_common_name") or b"").decode(errors="replace")
            if claimed != name:
                return Refusal(
                    grpc.StatusCode.PERMISSION_DENIED,
                    "edge_id_mismatch",
                    f"edge id {claimed[:64]!r} is not the name on its certificate ({name[:64]!r})",
                )
        if self._owned is not None and claimed not in self._owned:
            # Refused rather than admitted owning nothing: its samples stay
            # in its buffer until someone lists it, instead of being refused
            # one by one (and it keeps the counters' edge labels to the list).
            return Refusal(
                grpc.StatusCode.PERMISSION_DENIED,
                "unlisted_edge",
                f"edge {claimed[:64]!r} is not listed in the cloud's edge_devices",
            )
        return Admitted(claimed, cert_pem, version, _not_after(cert_pem))

    async def recheck(self, admitted: Admitted) -> Refusal | None:
        """A refusal if the certificate expired since `admitted` was checked,
        or if the revocation list changed and it no longer passes."""
        if admitted.cert_pem is None:
            return None
        if admitted.expires_at is not None and time.time() > admitted.expires_at:
            return Refusal(
                grpc.StatusCode.UNAUTHENTICATED, "expired", "client certificate refused: expired"
            )
        version = self._current_crl_version()
        if version == admitted.crl_version:
            return None
        admitted.crl_version = version
        return await self._check(admitted.cert_pem)

    def owns(self, edge_id: str, device_id: str) -> bool:
        """Whether `edge_id` may speak for the board `device_id`."""
        if self._owned is None:
            return True
        owned = self._owned.get(edge_id)
        return owned is not None and owned.match(device_id) is not None

    def _current_crl_version(self) -> int:
        return 0 if self._crl_version is None else self._crl_version.current()

    async def _check(self, cert_pem: bytes) -> Refusal | None:
        assert self._client_ca is not None
        try:
            # Reads the CA and the revocation list afresh: always the current
            # ones, off the event loop.
            reason = await asyncio.to_thread(
                check_certificate, self._client_ca, self._crl, cert_pem
            )
        except ConfigError as exc:
            log.error("cannot check edge certificates", error=str(exc))
            return Refusal(grpc.StatusCode.UNAVAILABLE, "cannot_check",
                           "the cloud cannot check certificates now; retry")  # fmt: skip
        if reason is None:
            return None
        label = _REASON_LABELS.get(reason, "invalid_certificate")
        return Refusal(
            grpc.StatusCode.UNAUTHENTICATED, label, f"client certificate refused: {reason}"
        )


def _not_after(cert_pem: bytes | None) -> float | None:
    if cert_pem is None:
        return None
    return x509.load_pem_x509_certificate(cert_pem).not_valid_after_utc.timestamp()


def _first(auth: Mapping[str, Iterable[bytes]], key: str) -> bytes | None:
    return next(iter(auth.get(key, ())), None)
