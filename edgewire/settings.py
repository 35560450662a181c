"""Configuration: one typed model per service, merged flag > environment > file.

A service declares a msgspec Struct whose field names are its settings; this
module reads the TOML file given by `--config`, the `EDGEWIRE_<FIELD>`
environment variables and the flags the user actually typed, and validates
the merge once, before start-up. A bad value raises ConfigError with one line
naming the field, the value and where it came from. (msgspec rather than
pydantic: the edge is meant for a Pi Zero, and pydantic cost it 8.5 MB.)
"""

import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

import msgspec

from edgewire.errors import ConfigError
from edgewire.urls import redact_url

ENV_PREFIX = "EDGEWIRE_"

ModelT = TypeVar("ModelT", bound=msgspec.Struct)

_AT_FIELD = re.compile(r" - at `\$\.(\w+)([^`]*)`")
_UNKNOWN = re.compile(r"unknown field `(\w+)`")


def field_names(model: type[msgspec.Struct]) -> tuple[str, ...]:
    return model.__struct_fields__


def load_settings(
    model: type[ModelT],
    config_file: Path | None,
    flags: Mapping[str, Any],
    environ: Mapping[str, str] | None = None,
) -> ModelT:
    """Build `model` from file, environment and flags (None flags are unset)."""
    environ = os.environ if environ is None else environ
    merged: dict[str, Any] = {}
    origin: dict[str, str] = {}
    if config_file is not None:
        for key, value in _read_toml(config_file).items():
            merged[key] = value
            origin[key] = str(config_file)
    for name in field_names(model):
        env_name = ENV_PREFIX + name.upper()
        if env_name in environ:
            merged[name] = environ[env_name]
            origin[name] = env_name
    for name, value in flags.items():
        if value is not None:
            merged[name] = value
            origin[name] = "--" + name.replace("_", "-")
    try:
        return msgspec.convert(merged, model, strict=False)
    except msgspec.ValidationError as exc:
        # One line, whatever a key holds (a quoted TOML key may hold a newline).
        line = _one_line(str(exc), merged, origin)
        raise ConfigError(line.replace("\r", "\\r").replace("\n", "\\n")) from None


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except OSError as exc:
        raise ConfigError(f"config file {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    # What tomllib raises besides TOMLDecodeError (found by the fuzzer):
    except UnicodeDecodeError:
        raise ConfigError(f"config file {path} is not UTF-8 text") from None
    except RecursionError:
        raise ConfigError(f"config file {path}: arrays or tables nested too deep") from None
    except ValueError as exc:  # e.g. an integer of thousands of digits
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None


def _one_line(message: str, merged: dict[str, Any], origin: dict[str, str]) -> str:
    unknown = _UNKNOWN.search(message)
    if unknown:
        name = unknown.group(1)
        return f"unknown setting {name!r} (from {origin.get(name, '?')})"
    at = _AT_FIELD.search(message)
    path = ""
    if at:
        name, path, problem = at.group(1), at.group(2), message[: at.start()]
    else:
        # A check across the whole model says "<field>: <problem>" itself.
        name, _, problem = message.partition(": ")
        if name not in merged:
            return f"settings: {message}"
    where = origin.get(name, "default")
    value = merged.get(name)
    if path or isinstance(value, dict | list):
        # A table or an array of tables ([gpio], [[rules]]): name the part,
        # not the whole value.
        return f"setting {name + path!r} (from {where}): {problem}"
    if name in merged:
        shown = redact_url(value) if isinstance(value, str) else value  # never echo a password
        return f"setting {name!r} has value {shown!r} (from {where}): {problem}"
    return f"setting {name!r} (from {where}): {problem}"
