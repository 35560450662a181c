"""`edgewire boards` and `edgewire flash`: boards on this computer's serial
ports, and putting the board program on one (firmware/ does the work)."""

from pathlib import Path
from typing import Any

import click

from edgewire.cli import settings_options
from edgewire.settings import load_settings
from firmware.board_config import BoardSettings


@click.command("boards")
@click.option(
    "--port",
    "ports",
    multiple=True,
    metavar="PATH",
    help="also look at this port (repeat), e.g. a pty or a board on a plain UART",
)
@click.option(
    "--probe/--no-probe",
    default=True,
    show_default=True,
    help="ask each port whether MicroPython answers (this stops the board's program"
    " for a moment: it is soft-rebooted afterwards)",
)
@click.option("--all", "include_all", is_flag=True, help="list non-USB ports too (/dev/ttyS*)")
@click.option("--json", "as_json", is_flag=True, help="one JSON object a port")
def boards_command(ports: tuple[str, ...], probe: bool, include_all: bool, as_json: bool) -> None:
    """List the serial ports a board may be on: USB id, a guess at the board,
    and whether MicroPython answers there."""
    from firmware.ports import list_ports, probe_all, render

    found = list_ports(ports, include_all)
    click.echo(render(probe_all(found) if probe else found, as_json))


@click.command("flash")
@click.option(
    "--port",
    default=None,
    help="the board's serial port (see `edgewire boards`), or a pyserial URL",
)
@click.option(
    "--update",
    is_flag=True,
    help="instead of a serial port: send the new program to a board in the field over"
    " MQTT (it restarts into update mode, takes the changed files, and rolls back if"
    " the new version does not come online)",
)
@click.option(
    "--trial",
    "trial_s",
    type=click.FloatRange(10),
    default=120.0,
    show_default=True,
    metavar="SECONDS",
    help="with --update: how long the new version gets to come online, per start",
)
@click.option(
    "--provision",
    is_flag=True,
    help="create the board's own MQTT login in the edge's data dir (as `edgewire edge"
    " add-device` does; a new password if it has one) and put it in its config.json,"
    " instead of --broker's user and password; run it on the Pi, then reload Mosquitto",
)
@click.option(
    "--edge-data-dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    metavar="DIR",
    help="with --provision: the edge's data dir  [default: /var/lib/edgewire]",
)
@click.option(
    "--update-timeout",
    type=click.FloatRange(10),
    default=600.0,
    show_default=True,
    metavar="SECONDS",
    help="with --update: give up after this long",
)
@click.option("--dry-run", is_flag=True, help="print what would be copied, skipped and removed")
@click.option("--force", is_flag=True, help="copy every file, even those the board has already")
@click.option(
    "--wait",
    is_flag=True,
    help="then wait until the board says `online` and sends a first sample",
)
@click.option(
    "--wait-timeout",
    type=click.FloatRange(1),
    default=60.0,
    show_default=True,
    metavar="SECONDS",
    help="how long --wait waits",
)
@click.option(
    "--wait-broker",
    default=None,
    metavar="URL",
    help="where this computer reaches the board's broker (for --wait and --update),"
    " with its own credentials [default: --broker]",
)
@click.option(
    "--micropython",
    "micropython_image",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    default=None,
    metavar="IMAGE",
    help="first install MicroPython: a .bin for ESP32/ESP8266 (written by esptool),"
    " a .uf2 for a Pico in BOOTSEL mode",
)
@click.option(
    "--chip",
    type=click.Choice(["auto", "esp32", "esp32s2", "esp32s3", "esp32c3", "esp32c6", "esp8266"]),
    default="auto",
    show_default=True,
    help="with a .bin: the chip (auto: read from the image, checked by esptool)",
)
@click.option(
    "--baud", type=click.IntRange(9600), default=460800, show_default=True, help="esptool's speed"
)
@click.option("--erase", is_flag=True, help="with a .bin: erase the whole flash first")
@click.option(
    "--uf2-drive",
    type=click.Path(path_type=Path, file_okay=False, exists=True),
    default=None,
    metavar="DIR",
    help="with a .uf2: the Pico's mounted drive [default: found by its INFO_UF2.TXT]",
)
@settings_options(BoardSettings)
def flash_command(
    config_file: Path | None,
    port: str | None,
    update: bool,
    trial_s: float,
    update_timeout: float,
    provision: bool,
    edge_data_dir: Path | None,
    dry_run: bool,
    force: bool,
    wait: bool,
    wait_timeout: float,
    wait_broker: str | None,
    micropython_image: Path | None,
    chip: Any,
    baud: int,
    erase: bool,
    uf2_drive: Path | None,
    **flags: Any,
) -> None:
    """Install the board program (device/, compiled) and its config.json on a
    board over serial; or, with --update, the program alone over MQTT.

    \b
    Files the board already has (same SHA-256) are skipped; each one written is
    read back and checked on the board; then the clock is set and the board
    soft-reset. The board's settings come from the flags below, EDGEWIRE_*
    variables or --config board.toml (the same names), e.g.:
      edgewire flash --port /dev/ttyUSB0 --device-id kitchen \\
        --wifi-ssid home --wifi-password '...' --broker mqtt://192.168.1.20:1883
      edgewire flash --update --device-id kitchen --broker mqtt://192.168.1.20:1883
    """
    from edgewire.errors import ConfigError
    from firmware.flash import FlashOptions, flash, hide_password

    try:
        settings = load_settings(BoardSettings, config_file, flags)
    except ConfigError as exc:
        raise ConfigError(hide_password(str(exc))) from None
    if update:
        over_the_air(settings, dry_run, wait_broker, trial_s, update_timeout)
        return
    if port is None:
        raise click.UsageError("give the board's serial --port (or --update, over MQTT)")
    if provision:
        # --wait watches with the credentials given, not the board's: a
        # board's login may not read its own telemetry.
        wait_broker = wait_broker or settings.broker
        settings = provisioned(settings, edge_data_dir, dry_run)
    options = FlashOptions(
        port=port,
        dry_run=dry_run,
        force=force,
        wait=wait,
        wait_timeout_s=wait_timeout,
        wait_broker=wait_broker,
        micropython=micropython_image,
        chip=chip,
        baud=baud,
        erase=erase,
        drives=[uf2_drive] if uf2_drive is not None else None,
    )
    flash(options, settings, click.echo)


def over_the_air(
    settings: BoardSettings,
    dry_run: bool,
    wait_broker: str | None,
    trial_s: float,
    timeout_s: float,
) -> None:
    """`edgewire flash --update`: firmware/update.py does the work."""
    from edgewire.errors import ConfigError
    from edgewire.urls import parse_endpoint
    from firmware.board_config import broker_endpoint, find_ca
    from firmware.rawrepl_core import FlashError
    from firmware.update import UpdateOptions, update

    if settings.device_id == "auto":
        raise ConfigError("--update needs the board's --device-id (auto works over serial only)")
    if wait_broker is not None:
        try:
            broker = parse_endpoint(wait_broker, ("mqtt", "mqtts"))
        except ValueError as exc:
            raise ConfigError(f"--wait-broker: {exc}") from None
    else:
        broker = broker_endpoint(settings)
    # The program goes over the air, ca.der stays on the board: the CA here
    # is this computer's, to check the broker it talks to.
    options = UpdateOptions(
        device_id=settings.device_id,
        broker=broker,
        ca=find_ca(settings) if broker.tls else None,
        trial_s=trial_s,
        timeout_s=timeout_s,
        dry_run=dry_run,
    )
    report = update(options, click.echo)
    if report.state == "dry-run":
        return
    click.echo(report.summary())
    if report.state != "done":
        raise FlashError(report.error or "the update failed")


def provisioned(settings: BoardSettings, data_dir: Path | None, dry_run: bool) -> BoardSettings:
    """The settings with the board's own MQTT login in the broker URL."""
    from urllib.parse import quote

    import msgspec

    from edge.config import DEFAULT_DATA_DIR
    from edgewire.auth_commands import DEFAULT_BROKER_USER, RELOAD_HINT, provision_device
    from edgewire.errors import ConfigError
    from firmware.board_config import broker_endpoint

    device_id = settings.device_id
    if device_id == "auto":
        raise ConfigError("--provision needs the board's --device-id (its login's name)")
    broker = broker_endpoint(settings)
    directory = data_dir or Path(DEFAULT_DATA_DIR)
    if dry_run:
        click.echo(f"would create or renew board {device_id}'s MQTT login in {directory}")
        return settings
    password = provision_device(directory, device_id, DEFAULT_BROKER_USER)
    click.echo(f"board {device_id}: its MQTT login is in {directory}; {RELOAD_HINT}")
    login = f"{quote(device_id, safe='')}:{quote(password, safe='')}"
    url = f"{broker.scheme}://{login}@{broker.host}:{broker.port}"
    return msgspec.structs.replace(settings, broker=url)
