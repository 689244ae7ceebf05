"""Docs that must not drift from the code."""

from __future__ import annotations

from pathlib import Path

from devyard.clidoc import render
from devyard.config import Settings

DOCS = Path(__file__).parent.parent / "docs"


def test_cli_reference_is_current() -> None:
    assert (DOCS / "cli.md").read_text() == render(), "docs/cli.md is stale: run `python -m devyard.clidoc > docs/cli.md`"


def test_every_setting_is_documented() -> None:
    text = (DOCS / "config.md").read_text()
    missing = [name for name in Settings.model_fields if f"`{name}`" not in text]
    assert not missing, f"docs/config.md does not document: {missing}"
    undescribed = [name for name, field in Settings.model_fields.items() if not field.description]
    assert not undescribed
