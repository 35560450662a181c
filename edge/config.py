"""Settings of `edgewire edge` (flag > EDGEWIRE_* environment > TOML file)."""

import dataclasses
import socket
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

from edge.gpio.config import GpioSettings
from edge.pipeline import FullPolicy
from edge.rules import RuleError, parse_rules
from edgewire import contract
from edgewire.urls import Endpoint, parse_endpoint

DEFAULT_DATA_DIR = "/var/lib/edgewire"


def _default_edge_id() -> str:
    """The host name, made into a valid id."""
    name = "".join(c if c.isalnum() or c in "-_" else "-" for c in socket.gethostname().lower())
    return name.strip("-_")[:64] or "edge"


def _about(text: str) -> Meta:
    return Meta(description=text)


Port = Annotated[int, Meta(ge=0, le=65535)]
CLOUD_SCHEMES = ("grpc", "grpcs")
MQTT_SCHEMES = ("mqtt", "mqtts")


def _require_readable(setting: str, path: str) -> None:
    # Only that it opens: grpc reads the PEM, and the edge does without
    # cryptography's memory. Never the contents in an error.
    try:
        with Path(path).open("rb"):
            pass
    except OSError as exc:
        raise ValueError(f"{setting}: cannot read it: {exc.strerror}") from None


class EdgeSettings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    mqtt: Annotated[str, _about("the local broker (mqtts:// for TLS)")] = "mqtt://127.0.0.1:1883"
    mqtt_ca: Annotated[
        str | None,
        _about("PEM certificate of the CA that signed the broker's (mqtts://); none: the system's"),
    ] = None
    mqtt_password_file: Annotated[
        str | None,
        _about(
            "file holding the broker password of the URL's user (e.g. from systemd's"
            " LoadCredential=), instead of a password in the URL"
        ),
    ] = None
    cloud: Annotated[str, _about("the cloud's gRPC endpoint (grpcs:// for TLS)")] = (
        "grpc://127.0.0.1:50051"
    )
    cloud_ca: Annotated[
        str | None,
        _about("PEM certificate of the CA that signed the cloud's; none: the system's CAs"),
    ] = None
    cloud_cert: Annotated[
        str | None,
        _about("PEM client certificate of this edge, named after its edge id (grpcs://)"),
    ] = None
    cloud_key: Annotated[
        str | None, _about("file of cloud_cert's private key (PEM, unencrypted)")
    ] = None
    data_dir: Annotated[str, _about("buffer and dead letters")] = DEFAULT_DATA_DIR
    http_port: Annotated[Port, _about("/healthz and /metrics")] = 9100
    http_host: Annotated[str, _about("address of the HTTP port")] = "0.0.0.0"
    edge_id: Annotated[
        str,
        Meta(pattern=f"^{contract.DEVICE_ID_PATTERN}$", description="this edge's name"),
    ] = msgspec.field(default_factory=_default_edge_id)
    buffer_max_records: Annotated[int, Meta(ge=1, description="buffered samples kept at most")] = (
        5_000_000
    )
    buffer_max_bytes: Annotated[
        int, Meta(ge=1024, description="bytes of buffered samples kept at most")
    ] = 500_000_000
    buffer_full_policy: Annotated[
        FullPolicy,
        _about(
            "when the buffer is full: drop_oldest (counted) or backpressure"
            " (leave MQTT messages unacknowledged at the broker)"
        ),
    ] = FullPolicy.DROP_OLDEST
    dead_letter_max: Annotated[int, Meta(ge=1, description="dead letters kept at most")] = 10_000
    batch_max_samples: Annotated[
        int, Meta(ge=1, le=10_000, description="samples per batch to the cloud")
    ] = 500
    batch_max_bytes: Annotated[
        int, Meta(ge=1024, le=8_000_000, description="bytes per batch to the cloud")
    ] = 1_000_000
    # 100 ms: at a trickle (100 samples/s) each batch's round trip costs more
    # CPU than its samples; a busy edge fills batches long before this.
    batch_linger_ms: Annotated[
        float, Meta(ge=0, le=10_000, description="how long a live batch may wait to fill")
    ] = 100.0
    window_batches: Annotated[
        int, Meta(ge=1, le=256, description="unacknowledged batches in flight")
    ] = 8
    reconnect_max_s: Annotated[
        float, Meta(gt=0, le=3600, description="longest wait between cloud reconnection attempts")
    ] = 30.0
    cloud_compression: Annotated[
        Literal["none", "gzip"], _about("compression of the cloud stream")
    ] = "none"
    unhealthy_after_s: Annotated[
        float, Meta(gt=0, description="/healthz fails once the cloud stream is down this long")
    ] = 300.0
    rules: Annotated[
        list[dict[str, Any]],
        _about("data-reduction rules, [[rules]] tables in the config file (see edge/rules)"),
    ] = msgspec.field(default_factory=list)
    gpio: Annotated[
        GpioSettings | None, _about("the Pi's own sensors, status LED and button ([gpio] table)")
    ] = None
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    shutdown_grace_s: Annotated[float, Meta(gt=0, description="seconds to stop cleanly")] = 10.0

    def __post_init__(self) -> None:
        try:
            parse_rules(self.rules)
        except RuleError as exc:
            raise ValueError(f"rules: {exc}") from None
        for name, schemes in (("mqtt", MQTT_SCHEMES), ("cloud", CLOUD_SCHEMES)):
            try:
                parse_endpoint(getattr(self, name), schemes)
            except ValueError as exc:
                raise ValueError(f"{name}: {exc}") from None
        self._check_cloud_tls()
        self._check_mqtt_files()

    def _check_mqtt_files(self) -> None:
        if self.mqtt_ca is not None:
            if not parse_endpoint(self.mqtt, MQTT_SCHEMES).tls:
                raise ValueError("mqtt_ca: needs an mqtts:// broker URL")
            _require_readable("mqtt_ca", self.mqtt_ca)
        if self.mqtt_password_file is not None:
            endpoint = parse_endpoint(self.mqtt, MQTT_SCHEMES)
            if endpoint.username is None:
                raise ValueError("mqtt_password_file: the mqtt URL names no user")
            if endpoint.password is not None:
                raise ValueError("mqtt_password_file: the mqtt URL has a password already")
            _require_readable("mqtt_password_file", self.mqtt_password_file)

    def _check_cloud_tls(self) -> None:
        files = {
            "cloud_ca": self.cloud_ca,
            "cloud_cert": self.cloud_cert,
            "cloud_key": self.cloud_key,
        }
        given = {name: path for name, path in files.items() if path is not None}
        if given and not self.cloud_endpoint.tls:
            raise ValueError(f"{next(iter(given))}: needs a grpcs:// cloud URL")
        if self.cloud_cert is not None and self.cloud_key is None:
            raise ValueError("cloud_key: needed with cloud_cert")
        if self.cloud_key is not None and self.cloud_cert is None:
            raise ValueError("cloud_cert: needed with cloud_key")
        for name, path in given.items():
            _require_readable(name, path)

    @property
    def mqtt_endpoint(self) -> Endpoint:
        """The broker, with the password from mqtt_password_file if given."""
        endpoint = parse_endpoint(self.mqtt, MQTT_SCHEMES)
        if self.mqtt_password_file is None:
            return endpoint
        password = Path(self.mqtt_password_file).read_text().strip()
        return dataclasses.replace(endpoint, password=password)

    @property
    def cloud_endpoint(self) -> Endpoint:
        return parse_endpoint(self.cloud, CLOUD_SCHEMES)

    @property
    def data_path(self) -> Path:
        return Path(self.data_dir)
