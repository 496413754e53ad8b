"""Typed, validated configuration shared by every stage.

Every config file in the product (station, line controller, training run) is a YAML document validated
by a pydantic model derived from :class:`StrictModel`. Unknown keys are errors, not silently ignored,
because a misspelt key on a factory line (``treshold:``) would otherwise run with a default nobody chose.

Secrets stay out of files: ``${MQTT_PASSWORD}`` and ``${MQTT_PASSWORD:-fallback}`` are replaced from the
environment before parsing.

Example:
    >>> from pydantic import Field
    >>> class Mqtt(StrictModel):
    ...     host: str = Field("localhost", description="Broker host name")
    >>> Mqtt.model_validate({"host": "broker"}).host
    'broker'
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Mapping, Type, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

T = TypeVar("T", bound="StrictModel")

_ENV_PATTERN = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class ConfigError(ValueError):
    """A configuration file or value is wrong; the message names the file and the key."""


class StrictModel(BaseModel):
    """Base for all config models: unknown keys are rejected, values are validated on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False)


def substitute_env(text: str, env: Mapping[str, str] | None = None) -> str:
    """Replace ``${VAR}`` / ``${VAR:-default}`` with environment values; a missing variable is an error."""
    env = os.environ if env is None else env

    def repl(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if name in env:
            return env[name]
        if default is not None:
            return default
        raise ConfigError(f"environment variable {name} is not set (referenced as ${{{name}}})")

    return _ENV_PATTERN.sub(repl, text)


def format_validation_error(error: ValidationError, source: str) -> str:
    """One line per problem, each naming the dotted key, e.g. ``station.yaml: mqtt.prot: unknown key``."""
    lines = []
    for item in error.errors():
        key = ".".join(str(part) for part in item["loc"]) or "<root>"
        if item["type"] == "extra_forbidden":
            lines.append(f"{source}: unknown key '{key}'")
        elif item["type"] == "missing":
            lines.append(f"{source}: missing required key '{key}'")
        else:
            lines.append(f"{source}: key '{key}': {item['msg']} (got {item.get('input')!r})")
    return "\n".join(lines)


def validate(model: Type[T], data: Any, source: str = "<config>") -> T:
    """Validate ``data`` against ``model`` and raise :class:`ConfigError` naming ``source`` and the keys."""
    try:
        return model.model_validate(data if data is not None else {})
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, source)) from None


def load_yaml(path: str | os.PathLike[str]) -> Any:
    """Read a YAML file with environment substitution; syntax errors name the file and line."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config: {exc.strerror or exc}") from None
    try:
        return yaml.safe_load(substitute_env(text))
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML: {exc}") from None


def load_config(model: Type[T], path: str | os.PathLike[str], overrides: Mapping[str, Any] | None = None) -> T:
    """Load ``path`` into ``model``, then apply dotted ``overrides`` (``{"mqtt.host": "x"}``) from the CLI."""
    data = load_yaml(path) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of keys, got {type(data).__name__}")
    for dotted, value in (overrides or {}).items():
        set_dotted(data, dotted, value)
    return validate(model, data, str(path))


def set_dotted(data: dict[str, Any], dotted: str, value: Any) -> None:
    """Set ``a.b.c`` in nested dicts, creating levels; lets ``--set mqtt.port=1884`` reach any field."""
    parts = dotted.split(".")
    node = data
    for part in parts[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child
    node[parts[-1]] = value


def parse_override(text: str) -> tuple[str, Any]:
    """Parse ``key.path=value`` from the command line; the value is read as YAML (``1884`` is an int)."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like key.path=value")
    key, raw = text.split("=", 1)
    try:
        value = yaml.safe_load(raw) if raw != "" else ""
    except yaml.YAMLError:
        value = raw
    return key.strip(), value


def default_state_dir(line: str, name: str, env: Mapping[str, str] | None = None) -> Path:
    """Where a service (a station, the Sparkplug bridge) keeps its own files when its config names no place.

    systemd's ``StateDirectory=`` sets ``$STATE_DIRECTORY`` (the first of a colon-separated list is the
    unit's own); elsewhere the XDG base directory for state, per line and service ``name`` so that two
    stations on one machine never share an outbox.
    """
    env = os.environ if env is None else env
    given = env.get("STATE_DIRECTORY", "").split(":")[0]
    if given:
        return Path(given)
    base = env.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "inspector" / line / name
