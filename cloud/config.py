"""Settings of `edgewire cloud` (flag > EDGEWIRE_* environment > TOML file)."""

import re
from pathlib import Path
from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from cloud.origins import parse_origin
from edgewire import contract
from edgewire.durations import parse_duration
from edgewire.errors import ConfigError

# Where `edgewire cloud add-token` writes by default: beside the default
# SQLite database, on the cloud's own state volume.
DEFAULT_TOKENS_FILE = "/var/lib/edgewire/tokens.json"

Port = Annotated[int, Meta(ge=0, le=65535)]


class CloudSettings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    grpc_port: Annotated[Port, Meta(description="gRPC port (Ingest, Subscribe)")] = 50051
    http_port: Annotated[Port, Meta(description="HTTP port (API, feeds, dashboard)")] = 8080
    host: Annotated[str, Meta(description="address to listen on")] = "0.0.0.0"
    db: Annotated[
        str, Meta(description="storage: sqlite:///path, postgresql://user@host/db or memory://")
    ] = "sqlite:///var/lib/edgewire/cloud.db"
    bus: Annotated[
        str, Meta(description="bus between ingest and feeds: memory:// or amqp://user:pw@host/")
    ] = "memory://"
    retain: Annotated[
        str | None, Meta(description="delete samples older than this, e.g. 30d (default: keep all)")
    ] = None
    ws_deflate: Annotated[
        bool,
        Meta(
            description="compress WebSocket feeds (permessage-deflate): fewer bytes on the"
            " wire, but a compressor per client costs CPU and memory"
        ),
    ] = False
    http_connections_per_ip: Annotated[
        int,
        Meta(
            ge=0,
            description="open HTTP and feed connections one client address may hold; more"
            " are answered 429 (0: no limit; behind a proxy every client has its address)",
        ),
    ] = 256
    grpc_subscriptions_per_ip: Annotated[
        int,
        Meta(
            ge=0,
            description="gRPC Subscribe streams one client address may hold; more are"
            " refused RESOURCE_EXHAUSTED (0: no limit)",
        ),
    ] = 64
    tls_cert: Annotated[
        str | None,
        Meta(
            description="PEM certificate of the gRPC port; with tls_key and tls_client_ca,"
            " every client must show a certificate (mTLS)"
        ),
    ] = None
    tls_key: Annotated[
        str | None, Meta(description="file of tls_cert's private key (PEM, unencrypted)")
    ] = None
    tls_client_ca: Annotated[
        str | None, Meta(description="PEM certificate of the CA that signs the edges' certificates")
    ] = None
    tls_crl: Annotated[
        str | None,
        Meta(description="PEM revocation list of that CA, read again whenever the file changes"),
    ] = None
    edge_devices: Annotated[
        dict[str, list[str]] | None,
        Meta(
            description="[edge_devices] table: edge id = the device ids (or patterns such as"
            ' "greenhouse-*") it may send for; an edge not listed is refused (default: any)'
        ),
    ] = None
    tokens_file: Annotated[
        str | None,
        Meta(
            description="JSON file of API tokens (edgewire cloud add-token); with it the API"
            " and feeds need a token, without it they are open (default: open)"
        ),
    ] = None
    metrics_token_required: Annotated[
        bool, Meta(description="with tokens_file: /metrics needs a token too")
    ] = False
    allowed_origins: Annotated[
        list[str],
        Meta(
            description="web origins (https://dash.example.org) whose pages may open the"
            " WebSocket feed or send commands, besides the cloud's own (default: none)"
        ),
    ] = []
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    shutdown_grace_s: Annotated[float, Meta(gt=0, description="seconds to stop cleanly")] = 10.0

    @property
    def retain_s(self) -> float | None:
        return None if self.retain is None else parse_duration(self.retain)

    def __post_init__(self) -> None:
        if self.retain is not None:
            try:
                parse_duration(self.retain)
            except ValueError as exc:
                raise ValueError(f"retain: {exc}") from None
        if not self.db.startswith(("sqlite:", "memory:", "postgresql:", "postgres:")):
            raise ValueError("db: must start with sqlite://, postgresql:// or memory://")
        if not self.bus.startswith(("memory:", "amqp:", "amqps:")):
            raise ValueError("bus: must be memory:// or amqp://")
        if self.metrics_token_required and self.tokens_file is None:
            raise ValueError("metrics_token_required: needs tokens_file (no token exists without)")
        if self.tokens_file is not None:
            from cloud.tokens import read_tokens  # starlette: only when tokens are asked for

            try:
                read_tokens(Path(self.tokens_file))  # a missing one is empty, not an error
            except ConfigError as exc:
                raise ValueError(f"tokens_file: {exc}") from None
        if self.edge_devices is not None:
            _check_edge_devices(self.edge_devices)
        for origin in self.allowed_origins:
            try:
                parse_origin(origin)
            except ValueError as exc:
                raise ValueError(f"allowed_origins: {exc}") from None
        tls_files = (self.tls_cert, self.tls_key, self.tls_client_ca, self.tls_crl)
        if any(path is not None for path in tls_files):
            from cloud.tls import read_server_tls  # cryptography: only when TLS is asked for

            read_server_tls(self.tls_cert, self.tls_key, self.tls_client_ca, self.tls_crl)


# A pattern may hold what a device id may, and fnmatch's wildcards.
_DEVICE_PATTERN = re.compile(r"[a-z0-9_*?\[\]!-]{1,64}")


def _check_edge_devices(edge_devices: dict[str, list[str]]) -> None:
    for edge_id, patterns in edge_devices.items():
        if not contract.is_device_id(edge_id):
            raise ValueError(f"edge_devices: {edge_id[:64]!r} is not an edge id")
        for pattern in patterns:
            if not _DEVICE_PATTERN.fullmatch(pattern):
                raise ValueError(
                    f"edge_devices: {pattern[:64]!r} of {edge_id!r} can match no device id"
                    " (lower-case letters, digits, '_', '-' and the wildcards * ? [])"
                )
