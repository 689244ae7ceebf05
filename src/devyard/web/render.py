"""Rendering the web templates (autoescaped Jinja2)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape

from devyard import __version__

_env = Environment(
    loader=FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=select_autoescape(["html"]),
    enable_async=False,
)
_env.globals["version"] = __version__
_env.globals["base"] = (
    ""  # the dashboard's URL where a page is served on a workspace's origin (the gateway's own pages)
)


def render(template: str, **context: Any) -> str:
    """Render a template from web/templates with `context`."""
    return _env.get_template(template).render(**context)
