"""The board's settings (flags > EDGEWIRE_* > --config TOML), the config.json
they become, and the CA certificate an mqtts:// board gets as ca.der. Light
on imports: every `edgewire` command loads this model to build `edgewire
flash --help`."""

import json
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

from edgewire import contract
from edgewire.errors import ConfigError
from edgewire.urls import Endpoint, parse_endpoint, redact_url

CONFIG = "config.json"
BOARD_CA = "ca.der"  # device/ew_tls.py reads it: DER, so the board parses no PEM
# Where `edgewire ca init` (run in this folder) keeps the CA's certificate.
DEFAULT_CA = Path("edgewire-ca") / "ca.crt"
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
        str | None,
        _about(
            "(required) the board's broker: mqtt://[user:password@]host[:port], or"
            " mqtts://... for TLS (port 8883)"
        ),
    ] = None
    ca: Annotated[
        str | None,
        _about(
            "with an mqtts:// broker: the CA certificate (PEM or DER) the broker's"
            f" certificate was issued by, copied to the board as {BOARD_CA}; none:"
            f" {DEFAULT_CA} here, where `edgewire ca init` puts it"
        ),
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
        return parse_endpoint(settings.broker, ("mqtt", "mqtts"))
    except ValueError as exc:
        shown = redact_url(settings.broker)
        raise ConfigError(f"setting 'broker' has value {shown!r}: {exc}") from None


def find_ca(settings: BoardSettings) -> bytes | None:
    """The CA certificate, as DER, that an mqtts:// broker's certificate is
    checked against (by the board, and by this computer for --wait and
    --update): the `ca` setting's file, or else the project CA in
    ./edgewire-ca if there is one; None when neither. ConfigError for a file
    that is not one CA certificate."""
    return _find_ca(None if settings.ca is None else Path(settings.ca))


def board_ca(settings: BoardSettings) -> bytes | None:
    """What goes onto the board as ca.der (see ca_for_board)."""
    return ca_for_board(broker_endpoint(settings).tls, settings.ca)


def ca_for_board(tls: bool, ca: str | Path | None) -> bytes | None:
    """What goes onto a board as ca.der, from `edgewire flash` or `edgewire
    sim`: for an mqtts:// broker the CA's certificate (`ca`, or else
    ./edgewire-ca's), whose absence is refused here, as a board without it
    would not connect; None for mqtt://."""
    if not tls:
        if ca is not None:
            raise ConfigError("setting 'ca': needs an mqtts:// broker URL")
        return None
    found = _find_ca(None if ca is None else Path(ca))
    if found is None:
        raise ConfigError(
            "an mqtts:// broker needs the CA certificate its certificate was issued by:"
            f" --ca PATH (none given, and no {DEFAULT_CA} here from `edgewire ca init`)"
        )
    return found


def _find_ca(ca: Path | None) -> bytes | None:
    if ca is not None:
        return read_ca_der(ca)
    return read_ca_der(DEFAULT_CA) if DEFAULT_CA.is_file() else None


def read_ca_der(path: Path) -> bytes:
    """The one CA certificate in a PEM or DER file, as DER; ConfigError names
    what is wrong with any other file."""
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"setting 'ca': cannot read {path}: {exc.strerror}") from None
    try:
        if b"-----BEGIN" in data:
            certs = x509.load_pem_x509_certificates(data)
        else:
            certs = [x509.load_der_x509_certificate(data)]
    except ValueError:
        raise ConfigError(f"setting 'ca': {path} is not a certificate (PEM or DER)") from None
    if len(certs) != 1:
        raise ConfigError(f"setting 'ca': {path} holds {len(certs)} certificates; give the one CA")
    try:
        is_ca = certs[0].extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        is_ca = False
    if not is_ca:
        raise ConfigError(
            f"setting 'ca': {path} is not a CA certificate (the broker's own? give the"
            " CA's, ca.crt)"
        )
    return certs[0].public_bytes(Encoding.DER)


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
            **({"tls": True} if broker.tls else {}),  # ew_tls, with the CA in ca.der
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
