"""Who may use the edge's Mosquitto, and for what (sans-IO).

Rule: the registry (`<data-dir>/devices.json`) is the one source of truth;
Mosquitto's password file and ACL file are rendered from it here and never
edited by hand, so the three cannot disagree. A board's username is its
device id, and its ACL lets it touch its own topics only.

Nothing here opens a file or a socket: edgewire/auth_commands.py reads and
writes the files, this module only turns values into text and back.
"""

import base64
import hashlib
import hmac
import ipaddress
import re
import secrets
from typing import Literal

import msgspec

from edgewire import contract
from edgewire.errors import ConfigError

# Mosquitto 2.0's password-file hash (`$7$`): PBKDF2-HMAC-SHA512 with these
# sizes, as `mosquitto_passwd` writes it and the broker checks it. Checked
# against both in tests/test_broker_auth.py.
PBKDF2_ITERATIONS = 101
SALT_BYTES = 12
HASH_BYTES = 64
_HASH_RE = re.compile(r"\$7\$([1-9][0-9]{0,9})\$([A-Za-z0-9+/]+=*)\$([A-Za-z0-9+/]+=*)\Z")

DEFAULT_EDGE_USER = "edge"
# The broker's packet limit: a contract payload and a topic fit well inside.
MAX_PACKET_BYTES = contract.MAX_PAYLOAD_BYTES + 1024
REGISTRY_VERSION = 1

Role = Literal["edge", "tool"]
ROLES: tuple[Role, ...] = ("edge", "tool")

# What each kind of account may do. Mosquitto's ACL words: "read" covers
# subscribing and receiving, "write" covers publishing; a topic a user has no
# line for is denied both ways. `{id}` is the board's own device id.
BOARD_WRITES = ("telemetry", "status", "cmd/ack", "ota/ack")
BOARD_READS = ("cmd", "stored", "ota")
ROLE_READS: dict[Role, tuple[str, ...]] = {
    "edge": ("telemetry", "status", "cmd/ack"),
    "tool": ("cmd/ack", "ota/ack"),
}
ROLE_WRITES: dict[Role, tuple[str, ...]] = {
    # The board topics too: `edge dead-letters --replay` publishes a refused
    # message again as it came. The edge is what vouches for boards' data
    # already, so this lets it do nothing it could not.
    "edge": ("cmd", "stored", "telemetry", "status", "cmd/ack"),
    "tool": ("cmd", "ota"),
}


class Device(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    password_hash: str
    created: float


class User(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    role: Role
    password_hash: str
    created: float


class Registry(msgspec.Struct, forbid_unknown_fields=True):
    """Every account of the broker: boards by device id, and the edge's and
    tools' own users by name. One namespace: a name is a board or a user."""

    version: int = REGISTRY_VERSION
    devices: dict[str, Device] = msgspec.field(default_factory=dict)
    users: dict[str, User] = msgspec.field(default_factory=dict)


# -- passwords ---------------------------------------------------------------


def new_password() -> str:
    """A password for one account: 144 random bits, URL-safe, so it can sit
    in an mqtt:// URL's user part as it is."""
    return secrets.token_urlsafe(18)


def hash_password(password: str, salt: bytes | None = None) -> str:
    """`password` as a Mosquitto 2.0 password-file value:
    `$7$<iterations>$<base64 salt>$<base64 hash>` (standard base64, padded)."""
    if salt is None:
        salt = secrets.token_bytes(SALT_BYTES)
    digest = _pbkdf2(password, salt, PBKDF2_ITERATIONS)
    return f"$7${PBKDF2_ITERATIONS}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, password_hash: str) -> bool:
    """Whether `password` matches a `$7$` value (ours or mosquitto_passwd's)."""
    match = _HASH_RE.match(password_hash)
    if match is None:
        return False
    iterations, salt, expected = match.groups()
    digest = _pbkdf2(password, base64.b64decode(salt), int(iterations))
    return hmac.compare_digest(digest, base64.b64decode(expected))


def _pbkdf2(password: str, salt: bytes, iterations: int) -> bytes:
    return hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations, HASH_BYTES)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


# -- the registry ------------------------------------------------------------


def check_name(name: str, what: str) -> None:
    """Device ids and user names share the device-id alphabet: nothing in it
    can break a password-file line (`:`), an ACL line or a topic level."""
    if not contract.is_device_id(name):
        raise ConfigError(
            f"{what} {name!r} is not valid: use 1 to 64 of a-z 0-9 _ -, starting with a-z or 0-9"
        )


def add_device(
    registry: Registry, device_id: str, password_hash: str, now: float, rotate: bool = False
) -> None:
    """Give board `device_id` this credential; an existing one only with `rotate`."""
    check_name(device_id, "device id")
    if device_id in registry.users:
        role = registry.users[device_id].role
        raise ConfigError(f"{device_id!r} is already a user (role {role}), not a device")
    existing = registry.devices.get(device_id)
    _check_rotation("device", device_id, existing is not None, rotate)
    created = existing.created if existing is not None else now
    registry.devices[device_id] = Device(
        password_hash=_checked_hash(password_hash), created=created
    )


def _check_rotation(kind: str, name: str, exists: bool, rotate: bool) -> None:
    """A new account must not exist yet; a rotated one must."""
    if exists and not rotate:
        raise ConfigError(f"{kind} {name!r} exists: --rotate issues it a new password")
    if not exists and rotate:
        raise ConfigError(f"{kind} {name!r} does not exist: nothing to --rotate")


def remove_device(registry: Registry, device_id: str) -> None:
    check_name(device_id, "device id")
    if registry.devices.pop(device_id, None) is None:
        raise ConfigError(f"no device {device_id!r} in the registry")


def add_user(
    registry: Registry,
    name: str,
    role: str,
    password_hash: str,
    now: float,
    rotate: bool = False,
) -> None:
    """Give user `name` (an edge or a tool, never a board) this credential."""
    check_name(name, "user name")
    checked_role = _checked_role(role)
    if name in registry.devices:
        raise ConfigError(f"{name!r} is already a device")
    existing = registry.users.get(name)
    _check_rotation("user", name, existing is not None, rotate)
    if existing is not None and existing.role != checked_role:
        # A role change widens or narrows what a live credential may do:
        # not something to slip into a password rotation.
        raise ConfigError(f"user {name!r} has role {existing.role}, not {checked_role}")
    created = existing.created if existing is not None else now
    registry.users[name] = User(
        role=checked_role, password_hash=_checked_hash(password_hash), created=created
    )


def _checked_role(role: str) -> Role:
    for known in ROLES:
        if role == known:
            return known
    raise ConfigError(f"role {role!r} is not one of {', '.join(ROLES)}")


def _checked_hash(password_hash: str) -> str:
    if _HASH_RE.match(password_hash) is None:
        raise ConfigError("a password hash is not in Mosquitto's $7$ format")
    return password_hash


def encode_registry(registry: Registry) -> bytes:
    return msgspec.json.format(msgspec.json.encode(registry), indent=2) + b"\n"


def decode_registry(data: bytes, source: str) -> Registry:
    """devices.json -> Registry; a file that is not one raises ConfigError
    naming `source`, since the broker files would be rendered from it."""
    try:
        registry = msgspec.json.decode(data, type=Registry)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"{source}: {exc}") from None
    except msgspec.DecodeError as exc:
        raise ConfigError(f"{source} is not JSON: {exc}") from None
    if registry.version != REGISTRY_VERSION:
        raise ConfigError(f"{source}: version {registry.version} is not {REGISTRY_VERSION}")
    accounts: list[tuple[str, Device | User]] = [*registry.devices.items(), *registry.users.items()]
    for name, account in accounts:
        check_name(name, f"{source}: name")
        if _HASH_RE.match(account.password_hash) is None:
            raise ConfigError(f"{source}: the password hash of {name!r} is not a $7$ value")
    clash = registry.devices.keys() & registry.users.keys()
    if clash:
        raise ConfigError(f"{source}: {sorted(clash)[0]!r} is both a device and a user")
    return registry


# -- Mosquitto's files -------------------------------------------------------

_GENERATED = (
    "# Written by `edgewire edge` from devices.json: change it with add-device,\n"
    "# remove-device and add-user, not by hand (the next change rewrites it).\n"
)


def render_password_file(registry: Registry) -> str:
    """Mosquitto's `password_file`: one `name:hash` line per account."""
    accounts: dict[str, Device | User] = {**registry.devices, **registry.users}
    lines = [f"{name}:{accounts[name].password_hash}\n" for name in sorted(accounts)]
    return _GENERATED + "".join(lines)


def render_acl(registry: Registry) -> str:
    """Mosquitto's `acl_file`: one `user` block per account.

    Explicit blocks rather than `pattern` lines with %u: a pattern applies to
    every user the broker knows, so it would also give the edge and tool users
    a board's rights on `edgewire/<their name>/...`, and any account added to
    the password file by hand would get them too. Per-user blocks grant
    exactly what is listed here, and a removed board leaves no rule behind.
    Mosquitto looks a user's block up once, when it connects, so the file's
    length costs nothing per message.
    """
    blocks = [_GENERATED]
    for device_id in sorted(registry.devices):
        blocks.append(
            _block(
                device_id,
                reads=[contract.topic(device_id, kind) for kind in BOARD_READS],
                writes=[contract.topic(device_id, kind) for kind in BOARD_WRITES],
            )
        )
    for name in sorted(registry.users):
        role = registry.users[name].role
        blocks.append(
            _block(
                name,
                reads=[contract.subscription(kind) for kind in ROLE_READS[role]],
                writes=[contract.subscription(kind) for kind in ROLE_WRITES[role]],
                comment=f"{role} user",
            )
        )
    return "\n".join(blocks)


def _block(user: str, reads: list[str], writes: list[str], comment: str = "board") -> str:
    lines = [f"# {comment}", f"user {user}"]
    lines += [f"topic read {topic}" for topic in reads]
    lines += [f"topic write {topic}" for topic in writes]
    return "\n".join(lines) + "\n"


class TlsListener(msgspec.Struct, frozen=True):
    """A second listener with TLS; the certificates come from elsewhere
    (`edgewire ca`), this only names them."""

    port: int
    cafile: str
    certfile: str
    keyfile: str


def render_broker_config(
    password_file: str,
    acl_file: str,
    port: int = 1883,
    bind: str = "127.0.0.1",
    persistence_location: str | None = None,
    tls: TlsListener | None = None,
    max_inflight_messages: int = 1000,
    max_queued_messages: int = 100_000,
    max_connections: int = 1000,
) -> str:
    """A Mosquitto 2.0 config for the edge's broker, to drop into
    /etc/mosquitto/conf.d/ or to run as the whole config (`mosquitto -c`).

    `persistence_location` is left out unless given: Debian's mosquitto.conf
    already sets it, and Mosquitto refuses a second one.
    """
    _check_port(port, "port")
    _check_bind(bind)
    paths = {"password_file": password_file, "acl_file": acl_file}
    if persistence_location is not None:
        # Mosquitto appends the file name to it as it is: it needs the slash.
        paths["persistence_location"] = persistence_location.rstrip("/") + "/"
    for name, value in paths.items():
        _check_path(value, name)
    lines = [
        "# edgewire: the edge's broker (`edgewire edge broker-config`).",
        "# Authentication and ACLs apply to every listener alike.",
        "per_listener_settings false",
        "allow_anonymous false",
        f"password_file {password_file}",
        f"acl_file {acl_file}",
        "",
        "# Persistence is a periodic snapshot: boards resend what the edge has",
        "# not confirmed as `stored`, so a lost snapshot loses no reading.",
        "persistence true",
    ]
    if persistence_location is not None:
        lines.append(f"persistence_location {paths['persistence_location']}")
    lines += [
        "",
        "# Unacknowledged QoS 1 messages in flight to the edge bound its memory;",
        "# queued ones wait for it while it restarts.",
        f"max_inflight_messages {max_inflight_messages}",
        f"max_queued_messages {max_queued_messages}",
        "",
        "# A client sending a bigger packet is disconnected: the contract's",
        f"# payloads are at most {contract.MAX_PAYLOAD_BYTES} bytes, plus room for the topic.",
        f"max_packet_size {MAX_PACKET_BYTES}",
        "",
        f"listener {port} {bind}",
        # Mosquitto 2.0.11 (Debian 12) miscounts it: a connection closed
        # before its CONNECT raises the allowance. The per-address limit
        # (--connections-per-ip, nftables) is exact.
        f"max_connections {max_connections}",
    ]
    if tls is not None:
        lines += _tls_lines(tls, port, bind)
        lines.append(f"max_connections {max_connections}")
    return "\n".join(lines) + "\n"


def render_connection_limit(ports: list[int], per_address: int) -> str:
    """An nftables ruleset refusing a client address's MQTT connections past
    `per_address` open ones (Mosquitto has no such limit: the kernel's
    connection tracking counts them). Loaded with `nft -f`; loading it again
    replaces it. Refused connections are reset and counted in the rule's
    counter (`nft list table inet edgewire_mqtt`)."""
    for port in ports:
        _check_port(port, "port")
    if per_address < 1:
        raise ConfigError("connections per address must be at least 1")
    dports = ", ".join(str(port) for port in sorted(set(ports)))
    rule = f"tcp dport {{ {dports} }} ct state new add"
    return (
        "\n".join(
            [
                "#!/usr/sbin/nft -f",
                f"# edgewire: at most {per_address} open MQTT connections per client address",
                "# (`edgewire edge broker-config --connections-per-ip`).",
                "table inet edgewire_mqtt",
                "delete table inet edgewire_mqtt",
                "table inet edgewire_mqtt {",
                "  set clients4 { type ipv4_addr; size 65535; flags dynamic; }",
                "  set clients6 { type ipv6_addr; size 65535; flags dynamic; }",
                "  chain input {",
                "    type filter hook input priority filter; policy accept;",
                f"    {rule} @clients4 {{ ip saddr ct count over {per_address} }}"
                " counter reject with tcp reset",
                f"    {rule} @clients6 {{ ip6 saddr ct count over {per_address} }}"
                " counter reject with tcp reset",
                "  }",
                "}",
            ]
        )
        + "\n"
    )


def _tls_lines(tls: TlsListener, plain_port: int, bind: str) -> list[str]:
    _check_port(tls.port, "TLS port")
    if tls.port == plain_port:
        raise ConfigError(f"the TLS port {tls.port} is the plain listener's port too")
    for name in ("cafile", "certfile", "keyfile"):
        _check_path(getattr(tls, name), name)
    return [
        "",
        f"listener {tls.port} {bind}",
        f"cafile {tls.cafile}",
        f"certfile {tls.certfile}",
        f"keyfile {tls.keyfile}",
    ]


def _check_port(port: int, what: str) -> None:
    if not 1 <= port <= 65535:
        raise ConfigError(f"{what} {port} is not between 1 and 65535")


def _check_bind(bind: str) -> None:
    try:
        ipaddress.ip_address(bind)
    except ValueError:
        raise ConfigError(f"bind address {bind!r} is not an IP address") from None


def _check_path(value: str, what: str) -> None:
    # Relative paths would be resolved from Mosquitto's working directory
    # (/ under systemd); a control character would start a new config line.
    if not value.startswith("/"):
        raise ConfigError(f"{what} {value!r} is not an absolute path")
    if any(ord(c) < 32 or ord(c) == 127 for c in value) or value != value.strip():
        raise ConfigError(f"{what} {value!r} has control characters or edge spaces")
