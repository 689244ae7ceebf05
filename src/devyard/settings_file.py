"""Reading devyard.yaml and checking settings: the config file, and the Invalid errors settings raise.

It owns the file format (the `devyard:` block, plus Databricks DevBox's top-level keys read unchanged),
how a pydantic refusal becomes one readable line, and how command-line overrides are applied
through the model's own checks. It is kept apart from config.py, which holds the Settings fields
themselves, so that the model stays a list of documented fields; it needs no Settings import, so
config.load_settings calls into it without a cycle. config re-exports its names.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from devyard.errors import Invalid

OVERRIDE_REFUSED = "invalid_override"  # the code of the Invalid load_settings raises for an override the model refuses

M = TypeVar("M", bound=BaseModel)


def read_config_file(path: Path) -> dict[str, Any]:
    """Turn a devyard.yaml into Settings keyword arguments; raise Invalid on a malformed file."""
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError as exc:
        raise Invalid(f"config file {path} does not exist", code="config_not_found") from exc
    except yaml.YAMLError as exc:
        raise Invalid(f"config file {path} is not valid YAML: {exc}", code="config_invalid") from exc
    if not isinstance(raw, dict):
        raise Invalid(f"config file {path} must be a mapping at the top level", code="config_invalid")
    own = raw.get("devyard") or {}
    if not isinstance(own, dict):
        raise Invalid(f"config file {path}: `devyard:` must be a mapping", code="config_invalid")
    values: dict[str, Any] = dict(own)
    for key in ("extension_groups", "packaged_assets", "ui", "tools"):  # DevBox's top-level keys, and tools
        if key in raw:
            values[key] = raw[key]
    return values


def describe(exc: ValidationError) -> str:
    """One line naming each refused setting and why, e.g. `port: Input should be less than or equal to 65535`."""
    problems = []
    for error in exc.errors():
        where = ".".join(str(part) for part in error["loc"])
        reason = error["msg"].removeprefix("Value error, ")  # a model check's message names its setting itself
        problems.append(f"{where}: {reason}" if where else reason)
    return "; ".join(problems)


def load_model(model: type[M], config_file: Path | None, overrides: dict[str, Any]) -> M:
    """Build `model` (Settings) from an optional config file, the environment and explicit overrides.

    Overrides (command-line flags; None: not given) beat the environment and are checked by the
    model like every other value. A value it refuses raises Invalid naming the setting: code
    `invalid_settings` from the file or the environment, OVERRIDE_REFUSED from an override.
    """
    values = read_config_file(config_file) if config_file else {}
    try:
        settings = model(**values)
    except ValidationError as exc:
        raise Invalid(f"invalid settings: {describe(exc)}", code="invalid_settings") from exc
    for name, value in overrides.items():
        if value is None:
            continue
        try:
            # Assigned through the model's validator: the field's constraints, then the model's own checks.
            # (Building the model again would read the environment again, which beats init values.)
            model.__pydantic_validator__.validate_assignment(settings, name, value)
        except ValidationError as exc:
            raise Invalid(describe(exc), code=OVERRIDE_REFUSED) from exc
    return settings
