"""Settings of `edgewire edge` (flag > EDGEWIRE_* environment > TOML file)."""

import socket
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from edge.pipeline import FullPolicy
from edgewire import contract
from edgewire.urls import Endpoint, parse_endpoint


def _default_edge_id() -> str:
    """The host name, made into a valid id."""
    name = "".join(c if c.isalnum() or c in "-_" else "-" for c in socket.gethostname().lower())
    return name.strip("-_")[:64] or "edge"


class EdgeSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    mqtt: str = Field("mqtt://127.0.0.1:1883", description="the local broker")
    cloud: str = Field("grpc://127.0.0.1:50051", description="the cloud's gRPC endpoint")
    data_dir: Path = Field(Path("/var/lib/edgewire"), description="buffer and dead letters")
    http_port: int = Field(9100, ge=0, le=65535, description="/healthz and /metrics")
    http_host: str = Field("0.0.0.0", description="address of the HTTP port")
    edge_id: str = Field(default_factory=_default_edge_id, description="this edge's name")
    buffer_max_records: int = Field(5_000_000, ge=1, description="buffered samples kept at most")
    buffer_max_bytes: int = Field(
        500_000_000, ge=1024, description="bytes of buffered samples kept at most"
    )
    buffer_full_policy: FullPolicy = Field(
        FullPolicy.DROP_OLDEST,
        description="when the buffer is full: drop_oldest (counted) or backpressure"
        " (leave MQTT messages unacknowledged at the broker)",
    )
    dead_letter_max: int = Field(10_000, ge=1, description="dead letters kept at most")
    batch_max_samples: int = Field(
        500, ge=1, le=10_000, description="samples per batch to the cloud"
    )
    batch_max_bytes: int = Field(
        1_000_000, ge=1024, le=8_000_000, description="bytes per batch to the cloud"
    )
    batch_linger_ms: float = Field(
        20.0, ge=0, le=10_000, description="how long a live batch may wait to fill"
    )
    window_batches: int = Field(8, ge=1, le=256, description="unacknowledged batches in flight")
    reconnect_max_s: float = Field(
        30.0, gt=0, le=3600, description="longest wait between cloud reconnection attempts"
    )
    cloud_compression: Literal["none", "gzip"] = Field(
        "none", description="compression of the cloud stream"
    )
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    shutdown_grace_s: float = Field(10.0, gt=0, description="seconds to stop cleanly")

    @field_validator("mqtt")
    @classmethod
    def _mqtt_url(cls, value: str) -> str:
        parse_endpoint(value, ("mqtt",))
        return value

    @field_validator("cloud")
    @classmethod
    def _cloud_url(cls, value: str) -> str:
        parse_endpoint(value, ("grpc",))
        return value

    @field_validator("edge_id")
    @classmethod
    def _edge_id(cls, value: str) -> str:
        if not contract.is_device_id(value):
            raise ValueError(f"must match {contract.DEVICE_ID_PATTERN}")
        return value

    @property
    def mqtt_endpoint(self) -> Endpoint:
        return parse_endpoint(self.mqtt, ("mqtt",))

    @property
    def cloud_endpoint(self) -> Endpoint:
        return parse_endpoint(self.cloud, ("grpc",))
