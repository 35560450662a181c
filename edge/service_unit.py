"""`edgewire edge install-service`: the systemd unit and default config.

The unit runs the edge as an unprivileged system user with systemd's
sandboxing turned up as far as an MQTT client, a gRPC client and a small HTTP
port allow; only `install_service` touches the machine.
"""

import grp
import math
import os
import pwd
import re
import shutil
import subprocess
import sys
from pathlib import Path

from edge.config import DEFAULT_DATA_DIR, EdgeSettings
from edgewire.errors import EdgewireError, SetupError
from edgewire.settings import load_settings

UNIT_NAME = "edgewire-edge.service"
CONFIG_NAME = "edge.toml"
SERVICE_USER = "edgewire"
# The groups that own /dev/gpiochip*, /dev/gpiomem and /dev/i2c-* on Raspberry Pi OS.
GPIO_GROUPS = ("gpio", "i2c")
DEFAULT_CONFIG_DIR = Path("/etc/edgewire")
WATCHDOG_S = 30
RESTART_S = 2
STOP_MARGIN_S = 5  # past the edge's own grace period: interpreter exit, last log lines

# ProtectHome= hides these, PrivateTmp= swaps these out: a program installed
# under them cannot run with the full sandbox.
_HOME_DIRS = ("/home", "/root", "/run/user")
_TMP_DIRS = ("/tmp", "/var/tmp")
_PLAIN_ARG = re.compile(r"[A-Za-z0-9_./:@+=,-]+")


CREDENTIAL_NAME = "mqtt-password"
CREDENTIALS_PATH = f"/run/credentials/{UNIT_NAME}/{CREDENTIAL_NAME}"


def unit_text(
    executable: Path,
    *,
    gpio: bool = False,
    shutdown_grace_s: float = 10.0,
    config_path: Path = DEFAULT_CONFIG_DIR / CONFIG_NAME,
    mqtt_password_file: Path | None = None,
) -> str:
    """The unit file running `executable edge --config config_path`.

    `gpio` lets the edge open GPIO chips, I2C buses and /dev/gpiomem (for
    sensors wired to the Pi itself) instead of seeing no devices at all.
    `mqtt_password_file` (root's, 0600) reaches the service alone through
    LoadCredential=, at CREDENTIALS_PATH (its mqtt_password_file setting).
    """
    words = [
        _exec_arg(str(executable), program=True),
        "edge",
        "--config",
        _exec_arg(str(config_path)),
    ]
    exec_start = " ".join(words)
    stop_s = math.ceil(shutdown_grace_s) + STOP_MARGIN_S
    protect_home = "read-only" if _under(executable, _HOME_DIRS) else "true"
    if gpio:
        devices = (
            "# GPIO and I2C for sensors wired to the Pi; the groups own those devices\n"
            "# on Raspberry Pi OS. Every other device stays hidden.\n"
            "PrivateDevices=false\n"
            "DevicePolicy=closed\n"
            "DeviceAllow=char-gpiochip rw\n"
            "DeviceAllow=char-i2c rw\n"
            "DeviceAllow=/dev/gpiomem rw\n"
            f"SupplementaryGroups={' '.join(GPIO_GROUPS)}\n"
        )
    else:
        devices = "PrivateDevices=true\n"
    credentials = ""
    if mqtt_password_file is not None:
        credentials = (
            "# The broker password, handed to this service alone; edge.toml reads it with\n"
            f'# mqtt_password_file = "{CREDENTIALS_PATH}"\n'
            f"LoadCredential={CREDENTIAL_NAME}:{mqtt_password_file}\n"
        )
    return f"""\
# Written by `edgewire edge install-service`{" --gpio" if gpio else ""}, which rewrites
# it when run again: local changes belong in `systemctl edit edgewire-edge`.
[Unit]
Description=edgewire edge agent (MQTT from the boards, durable buffer, gRPC to the cloud)
Wants=network-online.target
After=network-online.target mosquitto.service
# An unattended device keeps trying rather than giving up after 5 quick failures.
StartLimitIntervalSec=0

[Service]
Type=notify
ExecStart={exec_start}
ExecReload=/bin/kill -HUP $MAINPID
WatchdogSec={WATCHDOG_S}
Restart=on-failure
RestartSec={RESTART_S}
# Exit status 2 is a bad setting: restarting cannot fix it.
RestartPreventExitStatus=2
# The edge's shutdown_grace_s ({shutdown_grace_s:g} s) and a margin.
TimeoutStopSec={stop_s}
User={SERVICE_USER}
Group={SERVICE_USER}
# {DEFAULT_DATA_DIR}: the buffer and dead letters, owned by the service user.
StateDirectory=edgewire
StateDirectoryMode=0750
ConfigurationDirectory=edgewire
UMask=0077
{credentials}
# Sandbox (`systemd-analyze security edgewire-edge` scores it).
ProtectSystem=strict
ProtectHome={protect_home}
PrivateTmp=true
PrivateMounts=true
{devices}NoNewPrivileges=true
CapabilityBoundingSet=
ProtectKernelTunables=true
ProtectKernelModules=true
ProtectKernelLogs=true
ProtectControlGroups=true
ProtectClock=true
ProtectHostname=true
ProtectProc=invisible
RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6
RestrictNamespaces=true
LockPersonality=true
MemoryDenyWriteExecute=true
RestrictRealtime=true
RestrictSUIDSGID=true
RemoveIPC=true
SystemCallArchitectures=native
SystemCallFilter=@system-service
SystemCallFilter=~@privileged @resources
# A library calling outside the list gets an error rather than a SIGSYS kill.
SystemCallErrorNumber=EPERM

[Install]
WantedBy=multi-user.target
"""


def default_config_text() -> str:
    """A commented edge.toml that `edgewire edge --config` accepts as it is."""
    return f"""\
# Settings of the edgewire edge agent (edgewire-edge.service).
# Each one can also be given as an EDGEWIRE_<NAME> environment variable or a
# flag (`edgewire edge --help` lists them all); a flag beats the environment,
# which beats this file. After a change: systemctl restart edgewire-edge

# The local Mosquitto the boards publish to. Credentials go in the URL, as in
# mqtt://edge:secret@127.0.0.1:1883 (this file is readable by the service only).
mqtt = "mqtt://127.0.0.1:1883"

# The cloud's gRPC endpoint. grpcs:// is TLS: cloud_ca, cloud_cert and
# cloud_key then name the CA's and this edge's certificate files, the edge's
# issued for its edge_id (docs/security.md).
cloud = "grpc://127.0.0.1:50051"

# The buffer and the dead letters; systemd creates it for the service.
data_dir = "{DEFAULT_DATA_DIR}"

# /healthz and /metrics (on every address unless http_host says otherwise).
http_port = 9100
# http_host = "0.0.0.0"

# This edge's name in the cloud (default: the host name).
# edge_id = "greenhouse-pi"

# How much the buffer keeps while the cloud is out of reach, and what happens
# when it is full: drop_oldest (counted) or backpressure (leave messages
# unacknowledged at the broker).
# buffer_max_records = 5000000
# buffer_max_bytes = 500000000
# buffer_full_policy = "drop_oldest"
# dead_letter_max = 10000

# Batches to the cloud.
# batch_max_samples = 500
# batch_max_bytes = 1000000
# batch_linger_ms = 100.0
# window_batches = 8
# reconnect_max_s = 30.0
# cloud_compression = "none"

# /healthz answers 503 once the cloud stream has been down this long.
# unhealthy_after_s = 300.0

# log_level = "info"
# Seconds to stop cleanly. The unit's TimeoutStopSec= is set a little above
# it: run `edgewire edge install-service` again after changing it.
# shutdown_grace_s = 10.0

# Data reduction before the buffer, applied in order (docs/edge.md has every
# kind). `systemctl reload edgewire-edge` applies a change.
# [[rules]]
# name = "sane temperatures"
# metrics = "temp_*"
# range = {{ min = -40, max = 85 }}
#
# [[rules]]
# name = "quiet temperatures"
# metrics = "temp_c"
# deadband = {{ abs = 0.2, max_silence_s = 300 }}
"""


def console_script() -> Path:
    """The absolute path of the `edgewire` script this interpreter runs."""
    beside = Path(sys.executable).absolute().parent / "edgewire"
    if beside.is_file() and os.access(beside, os.X_OK):
        return beside
    found = shutil.which("edgewire")
    if found is None:
        raise SetupError("no `edgewire` console script found: install edgewire with pip first")
    return Path(found).absolute()


def install_service(
    unit_dir: Path,
    config_dir: Path,
    print_only: bool,
    gpio: bool,
    *,
    create_user: bool = True,
    mqtt_password_file: Path | None = None,
) -> list[str]:
    """Install the unit, a default config when there is none, and the user.

    Returns what it did, one line a step, ending with the commands to run
    next. With `print_only` nothing is touched and the one item returned is
    the unit text.
    """
    executable = console_script()
    config_path = config_dir.absolute() / CONFIG_NAME
    if print_only:
        return [
            unit_text(
                executable,
                gpio=gpio,
                config_path=config_path,
                mqtt_password_file=mqtt_password_file,
                **_from_config(config_path),
            )
        ]
    steps = [_ensure_user()] if create_user else [f"skipped the user {SERVICE_USER} (--no-user)"]
    try:
        config_dir.mkdir(parents=True, exist_ok=True)
        if config_path.exists():
            steps.append(f"kept {config_path}")
        else:
            _write_new(config_path, default_config_text())
            steps.append(f"wrote {config_path} (mode 0640{_give_to_service(config_path)})")
        text = unit_text(
            executable,
            gpio=gpio,
            config_path=config_path,
            mqtt_password_file=mqtt_password_file,
            **_from_config(config_path),
        )
        unit_dir.mkdir(parents=True, exist_ok=True)
        unit_path = unit_dir.absolute() / UNIT_NAME
        _replace(unit_path, text)
    except OSError as exc:
        where = f" {exc.filename}" if exc.filename else ""
        raise EdgewireError(
            f"cannot install the service:{where}: {exc.strerror or exc}"
            " (run as root, or use --print)"
        ) from None
    steps.append(f"wrote {unit_path}")
    if _under(executable, _HOME_DIRS):
        steps.append(
            f"warning: {executable} is under a home directory, which the service user"
            " may not reach; a venv in /opt/edgewire avoids that"
        )
    if _under(executable, _TMP_DIRS):
        steps.append(f"warning: {executable} is in a temporary directory the service cannot see")
    if gpio:
        missing = [group for group in GPIO_GROUPS if not _group_exists(group)]
        if missing:
            # systemd refuses to start a unit whose SupplementaryGroups= do not exist.
            steps.append(
                f"warning: no group {' or '.join(missing)} on this machine (Raspberry Pi OS has"
                " them): the service will not start until they exist (groupadd --system NAME)"
            )
    steps += ["next: systemctl daemon-reload", "next: systemctl enable --now edgewire-edge"]
    return steps


def _group_exists(name: str) -> bool:
    try:
        grp.getgrnam(name)
    except KeyError:
        return False
    return True


def _from_config(config_path: Path) -> dict[str, float]:
    """The unit's inputs from the config the service will run with, if any."""
    if not config_path.exists():
        return {}
    # The service sees no EDGEWIRE_* variables of this shell.
    settings = load_settings(EdgeSettings, config_path, {}, environ={})
    return {"shutdown_grace_s": settings.shutdown_grace_s}


def _ensure_user() -> str:
    try:
        pwd.getpwnam(SERVICE_USER)
    except KeyError:
        pass
    else:
        return f"user {SERVICE_USER} exists"
    argv = ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", SERVICE_USER]
    if os.geteuid() != 0:
        return f"skipped creating the user {SERVICE_USER}: not root (as root: {' '.join(argv)})"
    try:
        subprocess.run(argv, check=True, capture_output=True, text=True)
    except FileNotFoundError:
        raise SetupError("useradd not found: install the passwd package") from None
    except subprocess.CalledProcessError as exc:
        raise EdgewireError(f"useradd failed: {exc.stderr.strip() or exc.returncode}") from None
    return f"created the system user {SERVICE_USER}"


def _give_to_service(path: Path) -> str:
    """Let the service's group read `path` (root keeps writing it)."""
    if os.geteuid() != 0:
        return ""
    try:
        gid = grp.getgrnam(SERVICE_USER).gr_gid
    except KeyError:
        return f"; no group {SERVICE_USER} yet, so the service cannot read it"
    os.chown(path, 0, gid)
    return f", group {SERVICE_USER}"


def _write_new(path: Path, text: str) -> None:
    """Create `path` with mode 0640; never overwrite."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
    with os.fdopen(fd, "w") as handle:
        os.fchmod(fd, 0o640)  # whatever the umask
        handle.write(text)


def _replace(path: Path, text: str) -> None:
    """Write `path` with mode 0644 in one step (a reader never sees half)."""
    partial = path.with_name(path.name + ".partial")
    partial.unlink(missing_ok=True)
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    with os.fdopen(fd, "w") as handle:
        os.fchmod(fd, 0o644)
        handle.write(text)
    partial.replace(path)


def _under(path: Path, roots: tuple[str, ...]) -> bool:
    return any(path.is_relative_to(root) for root in roots)


def _exec_arg(arg: str, program: bool = False) -> str:
    """One ExecStart= word: quoted when needed, `%` (and in arguments `$`)
    escaped. systemd takes no quote, backslash or newline in the program's
    path, and no newline anywhere."""
    if "\n" in arg or (program and re.search(r"[\"'\\]", arg)):
        raise EdgewireError(f"{arg!r} cannot go in a systemd unit: move it to a plainer path")
    escaped = arg.replace("%", "%%") if program else arg.replace("%", "%%").replace("$", "$$")
    if _PLAIN_ARG.fullmatch(arg):
        return escaped
    return '"' + escaped.replace("\\", "\\\\").replace('"', '\\"') + '"'
