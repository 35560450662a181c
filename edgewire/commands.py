"""The commands of the `edgewire` CLI (the table is in edgewire/cli.py)."""

import functools
import re
from pathlib import Path
from typing import Any

import click

from cloud.config import CloudSettings
from edge.config import DEFAULT_DATA_DIR, EdgeSettings
from edgewire.cli import settings_options
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
    ctx.exit(_serve("edge", settings.log_level, settings.shutdown_grace_s, serve_edge, settings))


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
def dead_letters_command(data_dir: Path, limit: int, as_json: bool) -> None:
    """List the newest dead letters (rejected payloads) with their reasons."""
    from edge.deadletters import print_dead_letters

    print_dead_letters(data_dir, limit, as_json)


@click.command("cloud")
@settings_options(CloudSettings)
@click.pass_context
def cloud_command(ctx: click.Context, /, config_file: Path | None, **flags: Any) -> None:
    """Run the cloud: gRPC ingest, storage, the HTTP API, live feeds and dashboard.

    Runs in the foreground until SIGTERM or Ctrl-C.
    """
    from cloud.server import serve_cloud

    settings = load_settings(CloudSettings, config_file, flags)
    ctx.exit(_serve("cloud", settings.log_level, settings.shutdown_grace_s, serve_cloud, settings))


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
def tail_command(cloud: str, device: str | None, as_json: bool) -> None:
    """Print live telemetry from the cloud, one line a sample, until Ctrl-C.

    Reconnects by itself, resuming after the last sample it printed.
    """
    from edgewire import contract
    from edgewire.tail import tail

    if device is not None and not contract.is_device_id(device):
        raise click.BadParameter(f"{device!r} is not a device id", param_hint="--device")
    try:
        tail(cloud, device, as_json)
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
