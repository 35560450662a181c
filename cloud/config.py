"""Settings of `edgewire cloud` (flag > EDGEWIRE_* environment > TOML file)."""

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


class CloudSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    grpc_port: int = Field(50051, ge=0, le=65535, description="gRPC port (Ingest, Subscribe)")
    http_port: int = Field(8080, ge=0, le=65535, description="HTTP port (API, feeds, dashboard)")
    host: str = Field("0.0.0.0", description="address to listen on")
    db: str = Field(
        "sqlite:///var/lib/edgewire/cloud.db",
        description="storage: sqlite:///path or memory://",
    )
    bus: str = Field("memory://", description="bus between ingest and feeds")
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    shutdown_grace_s: float = Field(10.0, gt=0, description="seconds to stop cleanly")

    @field_validator("db")
    @classmethod
    def _db_scheme(cls, value: str) -> str:
        if not value.startswith(("sqlite:", "memory:")):
            raise ValueError("must start with sqlite:// or memory://")
        return value

    @field_validator("bus")
    @classmethod
    def _bus_scheme(cls, value: str) -> str:
        if not value.startswith("memory:"):
            raise ValueError("must be memory:// (AMQP comes in a later version)")
        return value
