"""Reading devyard.yaml and checking settings: the config file, and the Invalid errors settings raise.

It owns the file format (the `devyard:` block, plus Databricks DevBox's top-level keys read unchanged),
the keys a file holds that devyard has no use for (named once, never silently dropped), how a
refusal becomes one readable line naming where the value came from (the file and the key's path
in it, or the environment variable), and how command-line overrides are applied through the
model's own checks. It is kept apart from config.py, which holds the Settings fields themselves,
so that the model stays a list of documented fields; it needs no Settings import, so
config.load_settings calls into it without a cycle. config re-exports its names.
"""

from __future__ import annotations

import difflib
import os
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError
from pydantic_settings import SettingsError

from devyard.errors import Invalid

OVERRIDE_REFUSED = "invalid_override"  # the code of the Invalid load_settings raises for an override the model refuses
# Every code a refused configuration raises: the CLI exits 2 on them, as click does on a usage error.
CONFIG_ERRORS = frozenset({OVERRIDE_REFUSED, "invalid_settings", "config_invalid", "config_not_found"})
OWN_BLOCK = "devyard"
# Databricks DevBox's top-level keys, read unchanged, and `tools`, which sits beside them.
TOP_LEVEL = ("extension_groups", "packaged_assets", "ui", "server", "tools")
ENV_PREFIX = "DEVYARD_"

M = TypeVar("M", bound=BaseModel)


@dataclass
class Origin:
    """Where a model's values came from: to name the file's unused keys, and to read them again (reload)."""

    config_file: Path | None
    overrides: dict[str, Any]  # the command-line flags given (None: not given)
    ignored: list[str] = field(default_factory=list)  # the file's keys devyard has no use for


@dataclass
class ConfigFile:
    """A parsed devyard.yaml: the Settings keyword arguments it gives, and where in the file each came from."""

    path: Path
    values: dict[str, Any] = field(default_factory=dict)
    from_own_block: set[str] = field(default_factory=set)  # the names given under `devyard:`
    unknown_top_level: list[str] = field(default_factory=list)

    def key_path(self, path: str) -> str:
        """Where a setting's dotted path (`ui.workspace.default_type`, `port`) is in the file."""
        return f"{OWN_BLOCK}.{path}" if re.split(r"[. ]", path, maxsplit=1)[0] in self.from_own_block else path


def parse_config_file(path: Path) -> ConfigFile:
    """Parse a devyard.yaml; Invalid, naming the file, when it is missing or not a mapping of mappings."""
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError as exc:
        raise Invalid(f"config file {path} does not exist", code="config_not_found") from exc
    except OSError as exc:
        raise Invalid(f"config file {path} cannot be read: {exc.strerror}", code="config_not_found") from exc
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        line = f" (line {where.line + 1})" if where is not None else ""
        reason = " ".join(str(getattr(exc, "problem", None) or exc).split())
        raise Invalid(f"{path}: not valid YAML{line}: {reason}", code="config_invalid") from exc
    if not isinstance(raw, dict):
        raise Invalid(f"{path}: the file must be a mapping of keys to values", code="config_invalid")
    own = raw.get(OWN_BLOCK) or {}
    if not isinstance(own, dict):
        raise Invalid(f"{path}: {OWN_BLOCK}: must be a mapping of settings", code="config_invalid")
    parsed = ConfigFile(path, dict(own), set(own))
    for key, value in raw.items():
        if key in TOP_LEVEL:
            parsed.values[key] = value
            parsed.from_own_block.discard(key)
        elif key != OWN_BLOCK:
            parsed.unknown_top_level.append(str(key))
    return parsed


def read_config_file(path: Path) -> dict[str, Any]:
    """Turn a devyard.yaml into Settings keyword arguments; raise Invalid on a malformed file."""
    return parse_config_file(path).values


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    """The models a field's type holds: `Ui`, `dict[str, ExtensionGroup]`, `list[Tool]`, `Size | None`."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    origin = typing.get_origin(annotation)
    if origin in (list, dict, typing.Union, types.UnionType):
        return [m for arg in typing.get_args(annotation) for m in _models_in(arg)]
    return []


def unused_keys(value: Any, model: type[BaseModel], path: str) -> list[str]:
    """Key paths in `value` that `model` (and the models below it) has no field for; `forbid` models refuse them."""
    if not isinstance(value, dict):
        return []
    fields = model.model_fields
    unused: list[str] = []
    for key, item in value.items():
        where = f"{path}.{key}" if path else str(key)
        if key not in fields:
            if model.model_config.get("extra") == "forbid":
                continue  # validation names it as an error instead
            close = difflib.get_close_matches(str(key), list(fields), n=1)
            unused.append(f"{where} (did you mean {close[0]}?)" if close else where)
            continue
        for sub in _models_in(fields[key].annotation):
            if isinstance(item, dict) and typing.get_origin(fields[key].annotation) is not dict:
                unused += unused_keys(item, sub, where)
            elif isinstance(item, dict):
                for name, entry in item.items():
                    unused += unused_keys(entry, sub, f"{where}.{name}")
            elif isinstance(item, list):
                for index, entry in enumerate(item):
                    label = entry.get("id") or entry.get("name") or index if isinstance(entry, dict) else index
                    unused += unused_keys(entry, sub, f"{where}.{label}")
            break
    return unused


def _env_variable(setting: str) -> str | None:
    """The DEVYARD_* variable that gives `setting` (or a part of it, `DEVYARD_UI__WORKSPACE__...`), if one does."""
    name = f"{ENV_PREFIX}{setting}".upper()
    for variable in os.environ:
        if variable.upper() == name or variable.upper().startswith(name + "__"):
            return variable
    return None


def describe(exc: ValidationError, source: ConfigFile | None = None) -> str:
    """One line naming each refused setting, where it came from and why.

    E.g. `port: Input should be less than or equal to 65535`, or with a source
    `/etc/devyard.yaml: extension_groups.python.extensions: Input should be a valid list`
    and `environment variable DEVYARD_PORT: Input should be a valid integer`.
    """
    problems, in_file = [], []
    for error in exc.errors():
        loc = error["loc"]
        reason = error["msg"].removeprefix("Value error, ")  # a model check's message names its setting itself
        path = ".".join(str(part) for part in loc)
        head, colon, rest = reason.partition(": ")
        if not loc and colon and re.fullmatch(r"[A-Za-z_][\w.]*", head):
            # A check across settings: its message starts with the setting it is about.
            loc, path, reason = tuple(head.split(".")), head, rest
        variable = _env_variable(str(loc[0])) if loc else None
        if variable is not None:
            rest = ".".join(str(part) for part in loc[1:])
            problems.append(f"environment variable {variable}: {rest + ': ' if rest else ''}{reason}")
        elif source is not None and loc and loc[0] in source.values:
            in_file.append(f"{source.key_path(path)}: {reason}")
        else:
            problems.append(f"{path}: {reason}" if path else reason)
    if in_file and source is not None:
        problems.append(f"{source.path}: {'; '.join(in_file)}")
    return "; ".join(problems)


def _environment_refusal(exc: SettingsError) -> str:
    """pydantic-settings' parse error of a DEVYARD_* variable (not JSON where a list or mapping is due) as one line."""
    found = re.search(r'field "([^"]+)"', str(exc))
    variable = _env_variable(found.group(1)) if found else None
    cause = exc.__cause__
    detail = " ".join(str(cause).split()) if cause else str(exc)
    if variable is None:
        return f"the environment: {detail}"
    return f"environment variable {variable}: not valid JSON, as a list or mapping setting needs ({detail})"


def load_model(model: type[M], config_file: Path | None, overrides: dict[str, Any]) -> M:
    """Build `model` (Settings) from an optional config file, the environment and explicit overrides.

    Overrides (command-line flags; None: not given) beat the environment and are checked by the
    model like every other value. A value it refuses raises Invalid naming the setting and where it
    came from: code `invalid_settings` from the file or the environment, OVERRIDE_REFUSED from an
    override. A model with an `_origin` private attribute gets an Origin: the file's keys devyard has
    no use for, to be named once, and what to read again on a reload.
    """
    source = parse_config_file(config_file) if config_file else None
    try:
        settings = model(**(source.values if source else {}))
    except ValidationError as exc:
        raise Invalid(describe(exc, source), code="invalid_settings") from exc
    except SettingsError as exc:
        raise Invalid(_environment_refusal(exc), code="invalid_settings") from exc
    for name, value in overrides.items():
        if value is None:
            continue
        try:
            # Assigned through the model's validator: the field's constraints, then the model's own checks.
            # (Building the model again would read the environment again, which beats init values.)
            model.__pydantic_validator__.validate_assignment(settings, name, value)
        except ValidationError as exc:
            raise Invalid(describe(exc), code=OVERRIDE_REFUSED) from exc
    if "_origin" in model.__private_attributes__:
        ignored = []
        if source is not None:
            ignored = source.unknown_top_level + [source.key_path(p) for p in unused_keys(source.values, model, "")]
        settings._origin = Origin(config_file and config_file.absolute(), dict(overrides), ignored)  # type: ignore[attr-defined]
    return settings
