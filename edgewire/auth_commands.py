"""`edgewire edge add-device|remove-device|add-user|broker-config`: the
MQTT credentials and ACLs of the edge's Mosquitto.

edge/broker_auth.py decides what the files say; this module reads and writes
them. Files in the data dir, all written atomically with mode 0600:

    devices.json       the registry (hashes only: a password is shown once)
    passwd             Mosquitto's password_file, rendered from it
    acl                Mosquitto's acl_file, rendered from it
    broker-out         the folder `broker-config --out DIR` wrote to, if any:
                       its passwd and acl are kept current as well

Mosquitto reads the last two after it drops root, as the account of its
`user` setting (`mosquitto` by default, and on Debian and Raspberry Pi OS):
run as root, these commands give them to that account (--broker-user).
Mosquitto reads them again on SIGHUP (`systemctl reload mosquitto`), which
also disconnects clients whose credentials no longer hold.
"""

import contextlib
import fcntl
import grp
import json
import os
import pwd
import stat
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import click

from edge import broker_auth
from edge.config import DEFAULT_DATA_DIR
from edgewire.errors import ConfigError
from edgewire.files import write_atomically

REGISTRY_NAME = "devices.json"
PASSWORD_FILE_NAME = "passwd"
ACL_FILE_NAME = "acl"
BROKER_CONF_NAME = "mosquitto.conf"
NFT_NAME = "edgewire-mqtt.nft"
BROKER_OUT_NAME = "broker-out"  # where broker-config --out wrote, one line
_LOCK_NAME = ".devices.lock"
DEFAULT_BROKER_USER = "mosquitto"
RELOAD_HINT = (
    "reload Mosquitto to apply it: systemctl reload mosquitto"
    " (a SIGHUP: it re-reads the password and ACL files; other clients stay connected)"
)

F = Callable[..., Any]


def _data_dir_option(func: F) -> F:
    return click.option(
        "--data-dir",
        type=click.Path(path_type=Path, file_okay=False),
        default=DEFAULT_DATA_DIR,
        show_default=True,
        help="the edge's data directory, where devices.json and Mosquitto's files live",
    )(func)


def _issue_options(func: F) -> F:
    """What add-device and add-user share: where the new password goes."""
    options: list[Callable[[F], F]] = [
        click.option("--rotate", is_flag=True, help="issue an existing account a new password"),
        click.option(
            "--password-out",
            type=click.Path(path_type=Path, dir_okay=False),
            default=None,
            metavar="FILE",
            help="write the password to FILE (mode 0600) instead of stdout",
        ),
        click.option(
            "--json",
            "as_json",
            is_flag=True,
            help="print the credential as one JSON object",
        ),
        click.option(
            "--broker-user",
            default=DEFAULT_BROKER_USER,
            show_default=True,
            metavar="USER",
            help="the account Mosquitto runs as (its `user` setting): when run"
            " as root, the password and ACL files are given to it",
        ),
        _data_dir_option,
    ]
    for option in reversed(options):  # so --help lists them in this order
        func = option(func)
    return func


@click.command("add-device", short_help="Create board ID's MQTT login (shown once).")
@click.argument("device_id", metavar="ID")
@_issue_options
def add_device_command(
    device_id: str,
    data_dir: Path,
    rotate: bool,
    password_out: Path | None,
    as_json: bool,
    broker_user: str,
) -> None:
    """Create the MQTT credential of board ID (its username is its device id)
    and print its password, once.

    \b
    Only a hash is kept; the password and ACL files in the data dir are
    rewritten, letting the board publish on edgewire/ID/{telemetry,status,
    cmd/ack,ota/ack} and read edgewire/ID/{cmd,stored,ota}, nothing else.
    Then reload Mosquitto (systemctl reload mosquitto) and flash the board:
      sudo edgewire edge add-device kitchen
      sudo edgewire edge add-device porch --password-out /root/porch.pw
      sudo systemctl reload mosquitto
      edgewire flash --port /dev/ttyUSB0 --device-id kitchen \\
        --broker 'mqtt://kitchen:PASSWORD@192.168.1.20:1883' ...
    A lost password is not recoverable: --rotate issues a new one.
    """
    broker_auth.check_name(device_id, "device id")  # before anything is created
    _check_output_choice(password_out, as_json)
    password = broker_auth.new_password()
    with _registry(data_dir, broker_user) as registry:
        broker_auth.add_device(
            registry, device_id, broker_auth.hash_password(password), time.time(), rotate
        )
    credential = {"device_id": device_id, "username": device_id, "password": password}
    _hand_over(credential, password_out, as_json)
    click.echo(f"{'rotated' if rotate else 'added'} device {device_id}; {RELOAD_HINT}", err=True)


def provision_device(data_dir: Path, device_id: str, broker_user: str) -> str:
    """`edgewire flash --provision`: create board `device_id`'s login, or
    give it a new password if it has one (the old one cannot be read back);
    the password, for the board's config.json only."""
    broker_auth.check_name(device_id, "device id")
    password = broker_auth.new_password()
    with _registry(data_dir, broker_user) as registry:
        broker_auth.add_device(
            registry,
            device_id,
            broker_auth.hash_password(password),
            time.time(),
            rotate=device_id in registry.devices,
        )
    return password


@click.command("remove-device", short_help="Delete board ID's MQTT login.")
@click.argument("device_id", metavar="ID")
@click.option(
    "--broker-user",
    default=DEFAULT_BROKER_USER,
    show_default=True,
    metavar="USER",
    help="the account Mosquitto runs as (see add-device --help)",
)
@_data_dir_option
def remove_device_command(device_id: str, broker_user: str, data_dir: Path) -> None:
    """Delete board ID's credential and ACL.

    \b
    Once Mosquitto is reloaded, the board can no longer connect, and a
    connection it has open is closed:
      sudo edgewire edge remove-device kitchen
      sudo systemctl reload mosquitto
    """
    broker_auth.check_name(device_id, "device id")
    with _registry(data_dir, broker_user) as registry:
        broker_auth.remove_device(registry, device_id)
    click.echo(f"removed device {device_id}; {RELOAD_HINT}", err=True)


@click.command("add-user", short_help="Create an edge or tool MQTT login (shown once).")
@click.argument("name", metavar="NAME")
@click.option(
    "--role",
    type=click.Choice(broker_auth.ROLES),
    required=True,
    help="edge: the edge agent (reads every board's telemetry, status and"
    " cmd/ack; writes cmd and stored). tool: `edgewire flash --update` and"
    " other tools (writes cmd and ota; reads cmd/ack and ota/ack)",
)
@_issue_options
def add_user_command(
    name: str,
    role: str,
    data_dir: Path,
    rotate: bool,
    password_out: Path | None,
    as_json: bool,
    broker_user: str,
) -> None:
    """Create a broker user that is not a board, and print its password, once.

    \b
    Give the edge's credential to the edge in its --mqtt URL (or
    EDGEWIRE_MQTT, or mqtt = in edge.toml), e.g.:
      sudo edgewire edge add-user edge --role edge
      # edge.toml: mqtt = "mqtt://edge:PASSWORD@127.0.0.1:1883"
      sudo edgewire edge add-user laptop --role tool
      edgewire flash --update --device-id kitchen \\
        --wait-broker 'mqtt://laptop:PASSWORD@192.168.1.20:1883' ...
    A user's role is fixed; --rotate issues it a new password.
    """
    broker_auth.check_name(name, "user name")
    _check_output_choice(password_out, as_json)
    password = broker_auth.new_password()
    with _registry(data_dir, broker_user) as registry:
        broker_auth.add_user(
            registry, name, role, broker_auth.hash_password(password), time.time(), rotate
        )
    credential = {"username": name, "role": role, "password": password}
    _hand_over(credential, password_out, as_json)
    click.echo(f"{'rotated' if rotate else 'added'} {role} user {name}; {RELOAD_HINT}", err=True)


@click.command("broker-config", short_help="Print Mosquitto's config for these logins.")
@_data_dir_option
@click.option(
    "--port",
    type=click.IntRange(1, 65535),
    default=1883,
    show_default=True,
    help="the plain MQTT listener",
)
@click.option(
    "--bind",
    default="127.0.0.1",
    show_default=True,
    metavar="ADDRESS",
    help="address of the listeners: 127.0.0.1 for the Pi alone, 0.0.0.0 for boards on Wi-Fi",
)
@click.option("--tls", is_flag=True, help="add a TLS listener (needs the three files below)")
@click.option(
    "--tls-port",
    type=click.IntRange(1, 65535),
    default=8883,
    show_default=True,
    help="the TLS listener (mqtts://)",
)
@click.option(
    "--cafile",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="the CA certificate (PEM) that signed the broker's",
)
@click.option(
    "--certfile",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="the broker's certificate (PEM)",
)
@click.option(
    "--keyfile",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="its private key (PEM), readable by Mosquitto's user",
)
@click.option(
    "--persistence-location",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="where Mosquitto keeps its snapshot; leave out in a conf.d snippet"
    " (Debian's mosquitto.conf sets it, and Mosquitto refuses a second one)",
)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    metavar="DIR",
    help="write mosquitto.conf, passwd and acl to DIR instead of printing the config"
    " (add-device keeps DIR's passwd and acl current from then on)",
)
@click.option(
    "--broker-user",
    default=DEFAULT_BROKER_USER,
    show_default=True,
    metavar="USER",
    help="the account Mosquitto runs as: run as root, passwd and acl are given to it",
)
@click.option(
    "--max-connections",
    type=click.IntRange(1, None),
    default=1000,
    show_default=True,
    help="clients each listener takes at once (boards, the edge, tools)",
)
@click.option(
    "--connections-per-ip",
    type=click.IntRange(1, None),
    default=None,
    metavar="N",
    help=f"with --out: also write {NFT_NAME}, an nftables ruleset that resets a"
    " client address's connections past N open ones (load it with nft -f)",
)
def broker_config_command(
    data_dir: Path,
    port: int,
    bind: str,
    tls: bool,
    tls_port: int,
    cafile: Path | None,
    certfile: Path | None,
    keyfile: Path | None,
    persistence_location: Path | None,
    out_dir: Path | None,
    broker_user: str,
    max_connections: int,
    connections_per_ip: int | None,
) -> None:
    """Print a Mosquitto config that makes the broker check every client
    against the data dir's password and ACL files.

    \b
    No anonymous clients; the same rules on every listener; persistence on.
    On Debian and Raspberry Pi OS, into conf.d (Mosquitto loads its *.conf):
      sudo edgewire edge broker-config --bind 0.0.0.0 --out /etc/mosquitto/conf.d
      sudo systemctl restart mosquitto
    With TLS too (certificates from `edgewire ca`):
      edgewire edge broker-config --tls --cafile /etc/edgewire/ca.crt \\
        --certfile /etc/edgewire/broker.crt --keyfile /etc/edgewire/broker.key
    """
    listener = _tls_listener(tls, tls_port, cafile, certfile, keyfile)
    directory = (out_dir or data_dir).absolute()
    text = broker_auth.render_broker_config(
        password_file=str(directory / PASSWORD_FILE_NAME),
        acl_file=str(directory / ACL_FILE_NAME),
        port=port,
        bind=bind,
        persistence_location=(
            str(persistence_location.absolute()) if persistence_location else None
        ),
        tls=listener,
        max_connections=max_connections,
    )
    if connections_per_ip is not None and out_dir is None:
        raise click.UsageError("--connections-per-ip writes a file: it needs --out DIR")
    if out_dir is None:
        if not (directory / PASSWORD_FILE_NAME).exists():
            click.echo(
                f"note: {directory / PASSWORD_FILE_NAME} does not exist yet and Mosquitto"
                " will not start without it: add the edge's user and the boards first",
                err=True,
            )
        click.echo(text, nl=False)
        return
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"--out {out_dir}: {exc.strerror}") from None
    _write_atomically(directory / BROKER_CONF_NAME, text.encode(), 0o644)
    with _registry(data_dir, broker_user, also=directory):
        pass  # passwd and acl written to DIR as well, and DIR remembered
    click.echo(f"wrote {directory / BROKER_CONF_NAME}, {PASSWORD_FILE_NAME} and {ACL_FILE_NAME}")
    if connections_per_ip is not None:
        ports = [port] + ([listener.port] if listener is not None else [])
        ruleset = broker_auth.render_connection_limit(ports, connections_per_ip)
        _write_atomically(directory / NFT_NAME, ruleset.encode(), 0o644)
        click.echo(f"wrote {directory / NFT_NAME}: load it with  nft -f {directory / NFT_NAME}")


def _tls_listener(
    tls: bool, port: int, cafile: Path | None, certfile: Path | None, keyfile: Path | None
) -> broker_auth.TlsListener | None:
    """The TLS listener asked for by --tls or by any of its three files."""
    files = {"--cafile": cafile, "--certfile": certfile, "--keyfile": keyfile}
    if not tls and all(path is None for path in files.values()):
        return None
    missing = [name for name, path in files.items() if path is None]
    if cafile is None or certfile is None or keyfile is None:
        raise ConfigError(f"a TLS listener needs {', '.join(missing)} as well")
    return broker_auth.TlsListener(
        port=port,
        cafile=str(cafile.absolute()),
        certfile=str(certfile.absolute()),
        keyfile=str(keyfile.absolute()),
    )


# -- the registry and the files rendered from it -----------------------------


@contextlib.contextmanager
def _registry(
    data_dir: Path, broker_user: str, also: Path | None = None
) -> Iterator[broker_auth.Registry]:
    """The data dir's registry, locked against a concurrent change; saved,
    with Mosquitto's files rendered anew (in the data dir, and in the folder
    broker-config --out wrote to; `also` becomes that folder), when the
    block ends without error."""
    owner = _broker_owner(broker_user)
    try:
        data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"--data-dir {data_dir}: {exc.strerror}") from None
    with _locked(data_dir):
        registry = _load(data_dir / REGISTRY_NAME)
        yield registry
        _write_atomically(data_dir / REGISTRY_NAME, broker_auth.encode_registry(registry), 0o600)
        if also is not None:
            _write_atomically(data_dir / BROKER_OUT_NAME, f"{also}\n".encode(), 0o600)
        folders = {data_dir, *_broker_out(data_dir)}
        for folder in sorted(folders):
            for name, text in (
                (PASSWORD_FILE_NAME, broker_auth.render_password_file(registry)),
                (ACL_FILE_NAME, broker_auth.render_acl(registry)),
            ):
                _write_atomically(folder / name, text.encode(), 0o600, owner)
    _warn_if_unreachable(data_dir, broker_user)


def _broker_out(data_dir: Path) -> list[Path]:
    try:
        line = (data_dir / BROKER_OUT_NAME).read_text().strip()
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise ConfigError(f"cannot read {data_dir / BROKER_OUT_NAME}: {exc.strerror}") from None
    return [Path(line)] if line else []


@contextlib.contextmanager
def _locked(data_dir: Path) -> Iterator[None]:
    # Two add-device runs at once would each save what they read: the first
    # one's board would vanish from every file.
    fd = os.open(data_dir / _LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _load(path: Path) -> broker_auth.Registry:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return broker_auth.Registry()
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
    return broker_auth.decode_registry(data, str(path))


def _write_atomically(
    path: Path, data: bytes, mode: int, owner: tuple[int, int] | None = None
) -> None:
    # Mosquitto, reloading, reads the old file or the new one, never half.
    try:
        write_atomically(path, data, mode, owner)
    except OSError as exc:
        raise ConfigError(f"cannot write {path}: {exc.strerror}") from None


def _broker_owner(broker_user: str) -> tuple[int, int] | None:
    """(uid, gid) to give Mosquitto's files to: only root can, and only an
    account that exists can have them."""
    if os.geteuid() != 0:
        return None
    try:
        account = pwd.getpwnam(broker_user)
    except KeyError:
        raise ConfigError(
            f"--broker-user {broker_user!r} is no account here: name the user Mosquitto runs as"
        ) from None
    return account.pw_uid, account.pw_gid


def _warn_if_unreachable(data_dir: Path, broker_user: str) -> None:
    """Say so when Mosquitto's account cannot get to the files: the broker
    would refuse to start, or keep the old credentials at a reload."""
    try:
        account = pwd.getpwnam(broker_user)
    except KeyError:
        return
    blocked = _first_blocking_dir(data_dir.absolute(), account)
    if blocked is None:
        return
    info = blocked.stat()
    owners = f"{_user_name(info.st_uid)}:{_group_name(info.st_gid)}"
    if info.st_mode & stat.S_IXGRP and info.st_gid != 0:
        fix = f"usermod -aG {_group_name(info.st_gid)} {broker_user}, then restart Mosquitto"
    else:
        fix = f"chmod o+x {blocked}"
    click.echo(
        f"note: user {broker_user} cannot enter {blocked} ({stat.filemode(info.st_mode)}"
        f" {owners}), so Mosquitto cannot read its files there: e.g. {fix}",
        err=True,
    )


def _first_blocking_dir(directory: Path, account: pwd.struct_passwd) -> Path | None:
    if account.pw_uid == 0:
        return None
    groups = set(os.getgrouplist(account.pw_name, account.pw_gid))
    for step in reversed([directory, *directory.parents]):
        info = step.stat()
        if info.st_uid == account.pw_uid:
            allowed = info.st_mode & stat.S_IXUSR
        elif info.st_gid in groups:
            allowed = info.st_mode & stat.S_IXGRP
        else:
            allowed = info.st_mode & stat.S_IXOTH
        if not allowed:
            return step
    return None


def _user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _group_name(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


# -- handing over a new password ---------------------------------------------


def _check_output_choice(password_out: Path | None, as_json: bool) -> None:
    if password_out is not None and as_json:
        raise ConfigError("--password-out and --json are alternatives: give one")


def _hand_over(credential: dict[str, str], password_out: Path | None, as_json: bool) -> None:
    """The one place a password leaves this process: stdout or a 0600 file."""
    if as_json:
        click.echo(json.dumps(credential))
    elif password_out is None:
        click.echo(credential["password"])
    else:
        _write_atomically(password_out.absolute(), (credential["password"] + "\n").encode(), 0o600)
        click.echo(str(password_out))


AUTH_COMMANDS = (
    add_device_command,
    remove_device_command,
    add_user_command,
    broker_config_command,
)
