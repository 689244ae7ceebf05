"""`devyard extensions check`: does each configured group install, here, from the configured sources?

What teams otherwise script around code-server by hand: every group is installed into a scratch
workspace (its own extensions and user-data folders, removed afterwards) and each extension's
outcome reported, so a broken id or an extension the mirror lacks shows up before users hit it.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

from devyard.backends.base import WorkspaceSpec
from devyard.config import ExtensionGroup, Settings
from devyard.engine import install
from devyard.provision import extensions
from devyard.provision.extensions import Outcome
from devyard.errors import Invalid


def check_group(settings: Settings, group: ExtensionGroup, say: Callable[[str], None]) -> list[Outcome]:
    """Install `group` into a scratch workspace; one Outcome per extension (refused ones included)."""
    engine = install.require(settings.engine_dir)
    with tempfile.TemporaryDirectory(prefix="devyard-check-") as scratch:
        ws = WorkspaceSpec(uid="check", owner="check", name=group.name, root=Path(scratch))
        allowed, refused = [], []
        for ext_id in group.extensions:
            try:
                extensions.check_allowed([ext_id], settings.extensions)
                allowed.append(ext_id)
            except Invalid as exc:  # malformed, or outside the allow-list
                refused.append(Outcome(ext_id, False, exc.message))
        say(f"checking group {group.name}: {len(group.extensions)} extension(s)")
        return refused + extensions.install(engine, ws, allowed, settings.extensions)
