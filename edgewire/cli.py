"""The `edgewire` command: one table of commands, one way to fail.

Every service command takes `--config FILE.toml` and one flag per setting of
its settings model (generated from the model, so the flags, the TOML keys and
the EDGEWIRE_* variables can never disagree). A bad flag or setting exits 2
with one line naming it; a runtime failure exits 1.
"""

import sys
from collections.abc import Callable
from enum import Enum
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click
import msgspec
import msgspec.inspect

from edgewire import __version__
from edgewire.errors import ConfigError, EdgewireError

F = TypeVar("F", bound=Callable[..., Any])


def settings_options(model: type[msgspec.Struct]) -> Callable[[F], F]:
    """A `--flag` for every field of `model`, each defaulting to "not given"."""

    def decorate(func: F) -> F:
        info = msgspec.inspect.type_info(model)
        assert isinstance(info, msgspec.inspect.StructType)
        for field in reversed(info.fields):
            if not _is_scalar(field.type):
                continue  # tables ([gpio], [[rules]]) live in the config file only
            description, kind = _describe(field.type)
            func = click.option(
                "--" + field.name.replace("_", "-"),
                field.name,
                default=None,
                metavar=kind,
                help=f"{description or field.name.replace('_', ' ')}"
                f" [{_default_text(field)}; env EDGEWIRE_{field.name.upper()}]",
            )(func)
        return click.option(
            "--config",
            "config_file",
            type=click.Path(path_type=Path, dir_okay=False),
            help="TOML file of settings (flags and EDGEWIRE_* variables override it)",
        )(func)

    return decorate


def _default_text(field: msgspec.inspect.Field) -> str:
    if field.required:
        return "required"
    if field.default is msgspec.NODEFAULT:  # a factory: its docstring says what it makes
        doc = (getattr(field.default_factory, "__doc__", None) or "computed").strip()
        return "default: " + doc.split(",")[0].rstrip(".").lower()
    value = _plain(field.default)
    if value is None or value == "":
        return "default: none"
    return f"default: {value}"


def _is_scalar(kind: msgspec.inspect.Type) -> bool:
    if isinstance(kind, msgspec.inspect.Metadata):
        kind = kind.type
    if isinstance(kind, msgspec.inspect.UnionType):
        return all(_is_scalar(t) for t in kind.types)
    return not isinstance(
        kind,
        msgspec.inspect.ListType | msgspec.inspect.DictType | msgspec.inspect.StructType,
    )


def _plain(value: object) -> object:
    return value.value if isinstance(value, Enum) else value


def _describe(kind: msgspec.inspect.Type) -> tuple[str, str]:
    """(description, metavar) of a field's type."""
    description = ""
    if isinstance(kind, msgspec.inspect.Metadata):
        description = (kind.extra_json_schema or {}).get("description", "")
        kind = kind.type
    if isinstance(kind, msgspec.inspect.IntType):
        return description, "INT"
    if isinstance(kind, msgspec.inspect.BoolType):
        return description, "[true|false]"
    if isinstance(kind, msgspec.inspect.FloatType):
        return description, "NUMBER"
    if isinstance(kind, msgspec.inspect.EnumType | msgspec.inspect.LiteralType):
        values = (
            [m.value for m in kind.cls]
            if isinstance(kind, msgspec.inspect.EnumType)
            else kind.values
        )
        return description, "[" + "|".join(str(v) for v in values) + "]"
    return description, "TEXT"


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="edgewire")
def cli() -> None:
    """edgewire: telemetry from sensor boards to the cloud and live dashboards,
    without losing a reading when Wi-Fi, power or the uplink fail.

    \b
    Start here:   edgewire demo
    On the Pi:    edgewire edge --config /etc/edgewire/edge.toml
    In the cloud: edgewire cloud --config cloud.toml
    """


def _register() -> None:
    # Imported here so `edgewire --help` stays fast and each command pulls in
    # only its own dependencies.
    from edgewire.board_commands import boards_command, flash_command
    from edgewire.ca_commands import ca_group
    from edgewire.commands import (
        cloud_command,
        demo_command,
        edge_group,
        sim_command,
        tail_command,
    )

    cli.add_command(demo_command)
    cli.add_command(edge_group)
    cli.add_command(cloud_command)
    cli.add_command(sim_command)
    cli.add_command(tail_command)
    cli.add_command(boards_command)
    cli.add_command(flash_command)
    cli.add_command(ca_group)


def main(argv: list[str] | None = None) -> NoReturn:
    _register()
    try:
        code = cli.main(args=argv, prog_name="edgewire", standalone_mode=False)
    except click.UsageError as exc:
        where = exc.ctx.command_path if exc.ctx is not None else "edgewire"
        click.echo(f"{where}: {exc.format_message()} (see {where} --help)", err=True)
        sys.exit(2)
    except click.Abort:
        sys.exit(130)
    except ConfigError as exc:
        click.echo(f"edgewire: {exc}", err=True)
        sys.exit(2)
    except EdgewireError as exc:
        click.echo(f"edgewire: {exc}", err=True)
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)
