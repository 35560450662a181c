"""Settings of `edgewire cloud` (flag > EDGEWIRE_* environment > TOML file)."""

from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from edgewire.durations import parse_duration

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
