"""`devyard doctor`: is this machine ready to run (and test) devyard?"""

from __future__ import annotations

import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from devyard.engine import install, prereqs

CHROMIUM = Path("/usr/bin/chromium")


@dataclass(frozen=True)
class Check:
    """One line of the report."""

    name: str
    ok: bool
    detail: str
    required: bool = True


def run_checks(engine_dir: Path) -> list[Check]:
    """Every check, in report order."""
    engine = install.locate(engine_dir)
    missing = prereqs.missing()
    cgroup = Path("/sys/fs/cgroup")
    cgroup_kind = "v2" if (cgroup / "cgroup.controllers").exists() else "v1" if (cgroup / "memory").is_dir() else "none"
    return [
        Check("python", sys.version_info >= (3, 11), sys.version.split()[0]),
        Check("npm", shutil.which("npm") is not None, shutil.which("npm") or "not on PATH: install Node.js and npm"),
        Check("build tools", not missing, "all present" if not missing else f"missing {', '.join(missing)}: {prereqs.apt_command(missing)}"),
        Check("engine", engine is not None,
              f"code-server {engine.version} at {engine.root}" if engine else f"code-server {install.CODE_SERVER_VERSION} not installed: run `devyard engine install`"),
        Check("root", os.geteuid() == 0, "running as root" if os.geteuid() == 0 else "not root: resource limits (cgroups) unavailable", required=False),
        Check("cgroups", cgroup_kind != "none", f"cgroup {cgroup_kind}", required=False),
        Check("chromium (tests)", CHROMIUM.exists(), str(CHROMIUM) if CHROMIUM.exists() else "not installed: apt-get install -y chromium chromium-driver", required=False),
    ]
