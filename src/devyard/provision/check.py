"""`devyard extensions check`: does each configured group install and activate, here, from the configured sources?

What teams otherwise script around code-server by hand: every group is installed into a scratch
workspace (its own extensions and user-data folders, removed afterwards), the workspace is opened
in a real workbench, and each extension's outcome reported, so a broken id, an extension the
mirror lacks or one that throws when it activates shows up before users hit it.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from devyard.backends.base import WorkspaceSpec
from devyard.config import ExtensionGroup, Settings
from devyard.engine import install
from devyard.errors import Invalid
from devyard.provision import activation, extensions
from devyard.provision.extensions import Outcome


def check_group(settings: Settings, group: ExtensionGroup, say: Callable[[str], None]) -> list[Outcome]:
    """Install `group` into a scratch workspace and open it; one Outcome per extension (refused ones included)."""
    engine = install.require(settings.engine_dir)
    with tempfile.TemporaryDirectory(prefix="devyard-check-") as scratch:
        ws = WorkspaceSpec(uid="check", owner="check", name=f"check-{group.id}", root=Path(scratch))
        ws.extensions_dir.mkdir()
        allowed, refused = [], []
        for ext_id in group.extensions:
            try:
                extensions.check_allowed([ext_id], settings.extensions)
                allowed.append(ext_id)
            except Invalid as exc:  # malformed, or outside the allow-list
                refused.append(Outcome(ext_id, False, exc.message))
        say(f"checking group {group.id}: {len(group.extensions)} extension(s)")
        installed = extensions.install(engine, ws, allowed, settings.extensions)
        say(f"opening group {group.id} in a workbench to see its extensions activate")
        verdicts = activation.check(engine, ws, [o.id for o in installed if o.installed], settings.extensions.browser)
        checked = [
            replace(o, activated=verdicts[o.id].ok, detail=f"{o.detail}, {verdicts[o.id].detail}")
            if o.id in verdicts
            else o
            for o in installed
        ]
        return refused + checked
