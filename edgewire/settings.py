"""Configuration: one typed model per service, merged flag > environment > file.

A service declares a pydantic model whose field names are its settings; this
module reads the TOML file given by `--config`, the `EDGEWIRE_<FIELD>`
environment variables and the flags the user actually typed, and validates
the merge once, before start-up. A bad value raises ConfigError with one line
naming the field, the value and where it came from.
"""

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

import pydantic

from edgewire.errors import ConfigError

ENV_PREFIX = "EDGEWIRE_"

ModelT = TypeVar("ModelT", bound=pydantic.BaseModel)


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
    for name in model.model_fields:
        env_name = ENV_PREFIX + name.upper()
        if env_name in environ:
            merged[name] = environ[env_name]
            origin[name] = env_name
    for name, value in flags.items():
        if value is not None:
            merged[name] = value
            origin[name] = "--" + name.replace("_", "-")
    try:
        return model.model_validate(merged)
    except pydantic.ValidationError as exc:
        raise ConfigError(_one_line(exc, merged, origin)) from None


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except OSError as exc:
        raise ConfigError(f"config file {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None


def _one_line(exc: pydantic.ValidationError, merged: dict[str, Any], origin: dict[str, str]) -> str:
    error = exc.errors()[0]
    field = ".".join(str(part) for part in error["loc"]) or "?"
    top = str(error["loc"][0]) if error["loc"] else ""
    if error["type"] == "extra_forbidden":
        return f"unknown setting {field!r} (from {origin.get(top, '?')})"
    where = origin.get(top, "default")
    if top in merged:
        return f"setting {field!r} has value {merged[top]!r} (from {where}): {error['msg']}"
    return f"setting {field!r} (from {where}): {error['msg']}"
