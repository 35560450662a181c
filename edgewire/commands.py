"""The commands of the `edgewire` CLI (the table is in edgewire/cli.py)."""

import dataclasses
import functools
import re
from pathlib import Path
from typing import Any

import click

from cloud.config import DEFAULT_TOKENS_FILE, CloudSettings
from edge.config import DEFAULT_DATA_DIR, EdgeSettings
from edgewire.auth_commands import AUTH_COMMANDS
from edgewire.cli import settings_options
from edgewire.errors import EdgewireError
from edgewire.logs import setup_logging
from edgewire.service import run_service
from edgewire.settings import load_settings


@click.group("edge", invoke_without_command=True)
@settings_options(EdgeSettings)
@click.pass_context
def edge_group(ctx: click.Context, /, config_file: Path | None, **flags: Any) -> None:
    """Run the edge agent: MQTT from the boards, a durable buffer, gRPC to the cloud.

    Runs in the foreground until SIGTERM or Ctrl-C; systemd runs exactly this.
    """
    if ctx.invoked_subcommand is not None:
        return
    from edge.agent import serve_edge

    settings = load_settings(EdgeSettings, config_file, flags)
    setup_logging("edge", settings.log_level)

    def reread() -> EdgeSettings:
        # SIGHUP: the same file, environment and flags, read again.
        return load_settings(EdgeSettings, config_file, flags)

    serve = functools.partial(serve_edge, settings, reread=reread)
    ctx.exit(run_service("edge", None, settings.shutdown_grace_s, reloading=serve))


@edge_group.command("dead-letters")
@click.option(
    "--data-dir",
    type=click.Path(path_type=Path, file_okay=False, exists=True),
    default=DEFAULT_DATA_DIR,
    show_default=True,
    help="the edge's data directory",
)
@click.option("--limit", type=click.IntRange(1, 1_000_000), default=100, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="one JSON object a line")
@click.option(
    "--replay",
    is_flag=True,
    help="publish them again (after a fix) for the running edge to judge afresh",
)
@click.option("--id", "ids", type=int, multiple=True, help="with --replay: only this one (repeat)")
@click.option("--reason", default=None, help="with --replay: only those refused for this reason")
@click.option(
    "--mqtt",
    default="mqtt://127.0.0.1:1883",
    show_default=True,
    help="with --replay: the edge's broker, as the edge's user where logins are on"
    " (mqtt://edge@HOST:1883, or mqtts://…)",
)
@click.option(
    "--mqtt-ca",
    type=click.Path(dir_okay=False, exists=True),
    default=None,
    help="with mqtts://: the CA certificate (PEM) that signed the broker's",
)
@click.option(
    "--mqtt-password-file",
    type=click.Path(dir_okay=False, exists=True),
    default=None,
    help="the password of the URL's user, read from this file",
)
def dead_letters_command(
    data_dir: Path,
    limit: int,
    as_json: bool,
    replay: bool,
    ids: tuple[int, ...],
    reason: str | None,
    mqtt: str,
    mqtt_ca: str | None,
    mqtt_password_file: str | None,
) -> None:
    """List the newest dead letters (rejected payloads) with their reasons,
    or replay them with --replay (each is forgotten once the broker has it;
    one still bad comes back as a new dead letter)."""
    from edge.deadletters import print_dead_letters, replay_dead_letters
    from edgewire.urls import parse_endpoint

    if not replay:
        if ids or reason:
            raise click.UsageError("--id and --reason choose what to --replay")
        print_dead_letters(data_dir, limit, as_json)
        return
    try:
        broker = parse_endpoint(mqtt, ("mqtt", "mqtts"))
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--mqtt") from None
    if mqtt_ca is not None and not broker.tls:
        raise click.BadParameter("needs an mqtts:// broker URL", param_hint="--mqtt-ca")
    if mqtt_password_file is not None:
        if broker.username is None or broker.password is not None:
            raise click.BadParameter(
                "needs a user and no password in the --mqtt URL",
                param_hint="--mqtt-password-file",
            )
        password = Path(mqtt_password_file).read_text().strip()
        broker = dataclasses.replace(broker, password=password)
    sent = replay_dead_letters(data_dir, broker, ids, reason, limit, mqtt_ca)
    click.echo(f"replayed {sent} dead letter{'s' if sent != 1 else ''}")


@edge_group.command("install-service")
@click.option(
    "--print",
    "print_only",
    is_flag=True,
    help="write the unit to stdout and install nothing",
)
@click.option(
    "--unit-dir",
    type=click.Path(path_type=Path, file_okay=False),
    default="/etc/systemd/system",
    show_default=True,
    help="where edgewire-edge.service goes",
)
@click.option(
    "--config-dir",
    type=click.Path(path_type=Path, file_okay=False),
    default="/etc/edgewire",
    show_default=True,
    help="where edge.toml goes (an existing one is kept)",
)
@click.option(
    "--gpio",
    is_flag=True,
    help="let the edge open GPIO chips, I2C buses and /dev/gpiomem (groups gpio, i2c)",
)
@click.option(
    "--mqtt-password-file",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    metavar="FILE",
    help="root's file (0600) holding the broker password: systemd hands it to the service"
    " alone (LoadCredential=); set mqtt_password_file in edge.toml as the unit says",
)
@click.option("--no-user", "no_user", is_flag=True, hidden=True)  # for tests
def install_service_command(
    print_only: bool,
    unit_dir: Path,
    config_dir: Path,
    gpio: bool,
    mqtt_password_file: Path | None,
    no_user: bool,
) -> None:
    """Install `edgewire edge` as the systemd service edgewire-edge.

    \b
    Writes UNIT_DIR/edgewire-edge.service (Type=notify, watchdog, restart on
    failure, sandboxed), a commented CONFIG_DIR/edge.toml unless one exists,
    and creates the system user edgewire. Run as root, then:
      systemctl daemon-reload
      systemctl enable --now edgewire-edge
    """
    from edge.service_unit import install_service

    steps = install_service(
        unit_dir,
        config_dir,
        print_only,
        gpio,
        create_user=not no_user,
        mqtt_password_file=mqtt_password_file.absolute() if mqtt_password_file else None,
    )
    for step in steps:
        click.echo(step, nl=not print_only)


for _auth_command in AUTH_COMMANDS:  # add-device, remove-device, add-user, broker-config
    edge_group.add_command(_auth_command)


@click.group("cloud", invoke_without_command=True)
@settings_options(CloudSettings)
@click.pass_context
def cloud_command(ctx: click.Context, /, config_file: Path | None, **flags: Any) -> None:
    """Run the cloud: gRPC ingest, storage, the HTTP API, live feeds and dashboard.

    Runs in the foreground until SIGTERM or Ctrl-C.
    """
    if ctx.invoked_subcommand is not None:
        return
    from cloud.server import serve_cloud

    settings = load_settings(CloudSettings, config_file, flags)
    ctx.exit(_serve("cloud", settings.log_level, settings.shutdown_grace_s, serve_cloud, settings))


def _tokens_file_option(func: Any) -> Any:
    return click.option(
        "--tokens-file",
        type=click.Path(path_type=Path, dir_okay=False),
        default=DEFAULT_TOKENS_FILE,
        show_default=True,
        help="the cloud's tokens_file",
    )(func)


@cloud_command.command("add-token")
@click.argument("name")
@click.option(
    "--scope",
    type=click.Choice(["read", "command"]),
    required=True,
    help="read: the API's GETs and the live feeds; command: also commands to boards",
)
@_tokens_file_option
def add_token_command(name: str, scope: str, tokens_file: Path) -> None:
    """Create an API token NAME (or replace the one of that name) and print it.

    The token is shown this once: the file keeps only its SHA-256. The
    running cloud notices the change by itself. Give it as the header
    `Authorization: Bearer TOKEN`, to the dashboard's login, or to
    `edgewire tail --token`.
    """
    from cloud.tokens import add_token

    token = add_token(tokens_file, name, "command" if scope == "command" else "read")
    click.echo(token)
    click.echo(f"token {name!r} ({scope}) added to {tokens_file}; it is not shown again", err=True)


@cloud_command.command("remove-token")
@click.argument("name")
@_tokens_file_option
def remove_token_command(name: str, tokens_file: Path) -> None:
    """Remove the API token NAME; the running cloud refuses it from then on."""
    from cloud.tokens import remove_token

    if not remove_token(tokens_file, name):
        raise EdgewireError(f"no token named {name!r} in {tokens_file}")
    click.echo(f"token {name!r} removed from {tokens_file}")


@cloud_command.command("list-tokens")
@_tokens_file_option
def list_tokens_command(tokens_file: Path) -> None:
    """List the API tokens' names and scopes (the tokens themselves are not kept)."""
    from cloud.tokens import read_tokens

    for token in read_tokens(tokens_file):
        click.echo(f"{token.name}\t{token.scope}")


def _serve(name: str, log_level: str, grace_s: float, serve: Any, settings: Any) -> int:
    """Run a service's `serve(settings, stop)` under the shared lifecycle."""
    setup_logging(name, log_level)
    return run_service(name, functools.partial(serve, settings), grace_s)


@click.command("sim")
@click.option(
    "--broker", default="mqtt://127.0.0.1:1883", show_default=True, help="MQTT broker URL"
)
@click.option(
    "--devices", type=click.IntRange(1, 10_000), default=3, show_default=True, help="boards"
)
@click.option(
    "--rate",
    type=click.FloatRange(0.001, 1000),
    default=1.0,
    show_default=True,
    help="samples per second per board",
)
@click.option(
    "--count",
    type=click.IntRange(1),
    default=None,
    help="samples per board; then wait until the edge has stored them all, and exit",
)
@click.option(
    "--timeout", type=click.FloatRange(0.1), default=None, help="exit after SECONDS anyway"
)
@click.option("--prefix", default="sim", show_default=True, help="device ids are PREFIX-<n>")
@click.option(
    "--runtime",
    type=click.Choice(["cpython", "micropython"]),
    default="cpython",
    show_default=True,
    help="interpreter the boards run on: CPython threads, or MicroPython unix-port processes",
)
@click.option(
    "--heap",
    default="32K",
    show_default=True,
    callback=lambda ctx, param, value: _heap_size(value),
    help="heap cap of each MicroPython board (with --runtime micropython), e.g. 32K",
)
@click.option(
    "--data-dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="where each board keeps its files, boot counter included"
    " [default: ~/.local/state/edgewire/sim]",
)
@click.option(
    "--ca",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="with an mqtts:// broker: the CA certificate (PEM or DER) its certificate was"
    " issued by [default: ./edgewire-ca/ca.crt]; MicroPython boards need --heap 48K",
)
def sim_command(**options: Any) -> None:
    """Run simulated boards executing the real device/ code against a broker.

    Exit status: 0 when every board's samples were covered by the edge's
    `stored` messages (with --count), 1 on timeout.
    """
    from edgewire.sim.runner import SimOptions, run_sim

    setup_logging("sim", "info")
    raise SystemExit(run_sim(SimOptions(**options)))


@click.command("tail")
@click.option(
    "--cloud", default="http://127.0.0.1:8080", show_default=True, help="the cloud's HTTP URL"
)
@click.option("--device", default=None, help="only this board")
@click.option("--json", "as_json", is_flag=True, help="one JSON object a line, as the feed sends")
@click.option(
    "--token",
    envvar="EDGEWIRE_TOKEN",
    show_envvar=True,
    default=None,
    help="API token, when the cloud has a tokens_file (the variable keeps it out of ps)",
)
def tail_command(cloud: str, device: str | None, as_json: bool, token: str | None) -> None:
    """Print live telemetry from the cloud, one line a sample, until Ctrl-C.

    Reconnects by itself, resuming after the last sample it printed.
    """
    from edgewire import contract
    from edgewire.tail import tail

    if device is not None and not contract.is_device_id(device):
        raise click.BadParameter(f"{device!r} is not a device id", param_hint="--device")
    try:
        tail(cloud, device, as_json, token=token)
    except KeyboardInterrupt:
        raise SystemExit(0) from None


@click.command("demo")
@click.option("--devices", type=click.IntRange(1, 100), default=3, show_default=True, help="boards")
@click.option(
    "--rate",
    type=click.FloatRange(0.01, 100),
    default=1.0,
    show_default=True,
    help="samples per second per board",
)
@click.option(
    "--http-port",
    type=click.IntRange(0, 65535),
    default=8080,
    show_default=True,
    help="dashboard port (a free one if it is taken)",
)
def demo_command(devices: int, rate: float, http_port: int) -> None:
    """Run the whole path on this machine: a private Mosquitto, simulated boards
    running the real device code, the edge and the cloud, on free ports.

    Prints the dashboard URL and runs until Ctrl-C, then stops everything.
    """
    from edgewire.demo import run_demo

    raise SystemExit(run_demo(devices, rate, http_port))


def _heap_size(value: str) -> str:
    if re.fullmatch(r"[1-9][0-9]*[KkMm]?", value) is None:
        raise click.BadParameter(f"{value!r} is not a size like 32K or 1M")
    return value
