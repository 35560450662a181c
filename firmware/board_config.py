"""The board's settings (flags > EDGEWIRE_* > --config TOML) and the
config.json they become. Light on imports: every `edgewire` command loads
this model to build `edgewire flash --help`."""

import json
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

from edgewire import contract
from edgewire.errors import ConfigError
from edgewire.urls import Endpoint, parse_endpoint, redact_url

CONFIG = "config.json"
SensorType = Literal["synthetic", "internal", "bme280", "dht22"]


def _about(text: str) -> Meta:
    return Meta(description=text)


class BoardSettings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """What goes into a board's config.json (keys as device/ew_start.py reads them)."""

    device_id: Annotated[
        str,
        Meta(
            pattern=f"^(auto|{contract.DEVICE_ID_PATTERN})$",
            description="the board's id in its MQTT topics; auto: machine.unique_id() in hex",
        ),
    ] = "auto"
    broker: Annotated[
        str | None, _about("(required) the board's broker: mqtt://[user:password@]host[:port]")
    ] = None
    wifi_ssid: Annotated[str, _about("the Wi-Fi network the board joins")] = ""
    wifi_password: Annotated[str, _about("its password (never printed)")] = ""
    interval_s: Annotated[float, Meta(gt=0, description="seconds between samples")] = 10.0
    keepalive_s: Annotated[int, Meta(ge=5, le=65535, description="MQTT keepalive")] = 30
    ntp: Annotated[str | None, _about("NTP server (None: the board's own default)")] = None
    watchdog_ms: Annotated[
        int, Meta(ge=1000, le=3_600_000, description="reset a board stuck this long")
    ] = 30_000
    ring_max_samples: Annotated[
        int, Meta(ge=1, description="samples held until the edge has stored them")
    ] = 200
    ring_max_bytes: Annotated[int, Meta(ge=256, description="bytes of those, at most")] = 8192
    resend_s: Annotated[float, Meta(gt=0, description="resend unstored samples after")] = 5.0
    awake_s: Annotated[float | None, _about("deep-sleep duty cycle: awake this long")] = None
    sleep_s: Annotated[float | None, _about("... then asleep this long")] = None
    sensor: Annotated[
        SensorType | None,
        _about(
            "one sensor (synthetic, internal, bme280 or dht22) with its default pins;"
            " several, or other pins: [[sensors]] tables in --config"
        ),
    ] = None
    sensors: list[dict[str, Any]] = []  # [[sensors]] tables, config file only

    def __post_init__(self) -> None:
        if (self.awake_s is None) != (self.sleep_s is None):
            raise ValueError("awake_s: give both awake_s and sleep_s, or neither")
        for name in ("awake_s", "sleep_s"):
            if (getattr(self, name) or 1) <= 0:
                raise ValueError(f"{name}: must be more than 0")
        for spec in self.sensors:
            if not isinstance(spec.get("type"), str):
                raise ValueError('sensors: each [[sensors]] table needs a type = "..."')
            if not _json_values(spec):
                # TOML has dates and times; config.json (and the board) has not.
                raise ValueError("sensors: only strings, numbers, booleans, arrays and tables")


def _json_values(value: object) -> bool:
    if isinstance(value, dict):
        return all(isinstance(k, str) and _json_values(v) for k, v in value.items())
    if isinstance(value, list):
        return all(_json_values(v) for v in value)
    return value is None or isinstance(value, str | int | float | bool)


def broker_endpoint(settings: BoardSettings) -> Endpoint:
    if settings.broker is None:
        raise ConfigError("setting 'broker' is required: --broker mqtt://HOST:PORT")
    try:
        return parse_endpoint(settings.broker, ("mqtt",))
    except ValueError as exc:
        shown = redact_url(settings.broker)
        raise ConfigError(f"setting 'broker' has value {shown!r}: {exc}") from None


def render_config(settings: BoardSettings, device_id: str) -> bytes:
    """config.json, byte for byte the same for the same settings (so an
    unchanged config is never copied again)."""
    broker = broker_endpoint(settings)
    config: dict[str, Any] = {
        "device_id": device_id,
        "wifi": {"ssid": settings.wifi_ssid, "password": settings.wifi_password},
        "broker": {
            "host": broker.host,
            "port": broker.port,
            "user": broker.username,
            "password": broker.password,
        },
        "interval_s": settings.interval_s,
        "keepalive_s": settings.keepalive_s,
        "watchdog_ms": settings.watchdog_ms,
        "ring": {"max_samples": settings.ring_max_samples, "max_bytes": settings.ring_max_bytes},
        "resend_s": settings.resend_s,
    }
    if settings.ntp:
        config["ntp"] = settings.ntp
    if settings.sensor is not None:
        config["sensors"] = [{"type": settings.sensor}]
    elif settings.sensors:
        config["sensors"] = settings.sensors
    if settings.awake_s is not None:
        config["sleep"] = {"awake_s": settings.awake_s, "sleep_s": settings.sleep_s}
    return json.dumps(config, sort_keys=True, separators=(",", ":")).encode()
