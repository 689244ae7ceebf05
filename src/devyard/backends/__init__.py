"""Where engines run; the manager knows only the Backend protocol in base.py."""

from __future__ import annotations

from importlib.metadata import entry_points
from typing import TYPE_CHECKING

from devyard.errors import Invalid

if TYPE_CHECKING:
    from devyard.backends.base import Backend
    from devyard.config import Settings


def load_backend(settings: Settings) -> Backend:
    """The backend named by settings.backend, found through the `devyard.backends` entry points."""
    found = {ep.name: ep for ep in entry_points(group="devyard.backends")}
    if settings.backend not in found:
        raise Invalid(
            f"unknown backend '{settings.backend}'; available: {', '.join(sorted(found)) or 'none'}",
            code="unknown_backend",
        )
    factory = found[settings.backend].load()
    backend: Backend = factory(settings)
    return backend
