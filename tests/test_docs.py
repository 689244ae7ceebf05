"""Docs that must not drift from the code."""

from __future__ import annotations

import dataclasses
import importlib
import pkgutil
import re
from pathlib import Path
from typing import Any, get_args, get_type_hints

from fastapi import APIRouter
from fastapi.routing import APIRoute
from pydantic import BaseModel

from devyard import api
from devyard.clidoc import render
from devyard.config import Settings

DOCS = Path(__file__).parent.parent / "docs"


def test_cli_reference_is_current() -> None:
    assert (DOCS / "cli.md").read_text() == render(), (
        "docs/cli.md is stale: run `python -m devyard.clidoc > docs/cli.md`"
    )


def test_every_setting_is_documented() -> None:
    text = (DOCS / "config.md").read_text()
    missing = [name for name in Settings.model_fields if f"`{name}`" not in text]
    assert not missing, f"docs/config.md does not document: {missing}"
    undescribed = [name for name, field in Settings.model_fields.items() if not field.description]
    assert not undescribed


def response_models() -> set[type]:
    """Every model an /api/v1 route returns (its `response_model`), and the models inside those.

    The routers of devyard/api/*.py, read directly rather than through create_app: the same routes,
    without a data dir, keys or a backend. Models are pydantic models or plain dataclasses.
    """
    found: set[type] = set()

    def visit(shape: Any) -> None:
        for inner in get_args(shape):  # list[X], X | None, ...
            visit(inner)
        if not isinstance(shape, type) or shape in found:
            return
        if issubclass(shape, BaseModel):
            found.add(shape)
            for field in shape.model_fields.values():
                visit(field.annotation)
        elif dataclasses.is_dataclass(shape):
            found.add(shape)
            hints = get_type_hints(shape)
            for field in dataclasses.fields(shape):
                visit(hints[field.name])

    for module in pkgutil.iter_modules(api.__path__):
        router = getattr(importlib.import_module(f"{api.__name__}.{module.name}"), "router", None)
        for route in router.routes if isinstance(router, APIRouter) else []:
            if isinstance(route, APIRoute) and route.response_model is not None:
                visit(route.response_model)
    return found


def field_names(model: type) -> list[str]:
    if issubclass(model, BaseModel):
        return list(model.model_fields)
    return [field.name for field in dataclasses.fields(model)]


def test_api_docs_name_every_response_field() -> None:
    """docs/api.md names each field the API answers with, in backticks (`{name, owner}` counts for both)."""
    text = (DOCS / "api.md").read_text()
    named = {word for span in re.findall(r"`([^`]+)`", text) for word in re.findall(r"[A-Za-z_][A-Za-z0-9_]*", span)}
    models = response_models()
    assert {"Workspace", "User", "TokenInfo"} <= {m.__name__ for m in models}  # the walk finds the routes
    missing = sorted(f"{m.__name__}.{name}" for m in models for name in field_names(m) if name not in named)
    assert not missing, f"docs/api.md does not name: {missing}"
