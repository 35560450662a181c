"""Parsing the URLs settings are written in: mqtt://, grpc://, sqlite://, ...

Credentials may sit in a URL's user part; `redacted()` is what a log line or
an error message may show.
"""

from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

_DEFAULT_PORTS = {"mqtt": 1883, "mqtts": 8883, "grpc": 50051, "grpcs": 50051}


@dataclass(frozen=True)
class Endpoint:
    scheme: str
    host: str
    port: int
    username: str | None = None
    password: str | None = None

    @property
    def tls(self) -> bool:
        return self.scheme.endswith("s")

    def redacted(self) -> str:
        user = f"{self.username}:***@" if self.username else ""
        return f"{self.scheme}://{user}{self.host}:{self.port}"


def parse_endpoint(url: str, schemes: tuple[str, ...]) -> Endpoint:
    """`mqtt://user:pass@host:port` -> Endpoint; ValueError names the fault."""
    parts = urlsplit(url)
    if parts.scheme not in schemes:
        raise ValueError(f"scheme must be one of {', '.join(s + '://' for s in schemes)}")
    if not parts.hostname:
        raise ValueError("no host")
    try:
        port = parts.port or _DEFAULT_PORTS[parts.scheme]
    except ValueError as exc:  # a port that is not a number
        raise ValueError(str(exc)) from None
    return Endpoint(
        scheme=parts.scheme,
        host=parts.hostname,
        port=port,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
    )


def redact_url(url: str) -> str:
    """`scheme://user:secret@host/x` -> `scheme://user:***@host/x`."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rpartition("@")[2]
    return parts._replace(netloc=f"{parts.username}:***@{netloc}").geturl()
