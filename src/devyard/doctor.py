"""`devyard doctor`: is this machine ready to run (and test) devyard?"""

from __future__ import annotations

import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from devyard.backends import cgroups, load_backend, sandbox
from devyard.backends.base import WorkspaceSpec
from devyard.config import Settings
from devyard.engine import install, prereqs
from devyard.errors import DevyardError
from devyard.origins import resolve_domain

CHROMIUM = Path("/usr/bin/chromium")


@dataclass(frozen=True)
class Check:
    """One line of the report."""

    name: str
    ok: bool
    detail: str
    required: bool = True


def run_checks(settings: Settings) -> list[Check]:
    """Every check, in report order."""
    engine = install.locate(settings.engine_dir)
    missing = prereqs.missing()
    limits = cgroups.detect()
    return [
        Check("python", sys.version_info >= (3, 11), sys.version.split()[0]),
        Check("npm", shutil.which("npm") is not None, shutil.which("npm") or "not on PATH: install Node.js and npm"),
        Check(
            "build tools",
            not missing,
            "all present" if not missing else f"missing {', '.join(missing)}: {prereqs.apt_command(missing)}",
        ),
        Check(
            "engine",
            engine is not None,
            f"code-server {engine.version} at {engine.root}"
            if engine
            else f"code-server {install.CODE_SERVER_VERSION} not installed: run `devyard engine install`",
        ),
        isolation_check(settings),
        sandbox_check(settings),
        ssh_check(settings),
        origins_check(settings),
        Check(
            "limits",
            limits.available,
            f"memory, CPU{' and pids' if limits.pids else ''} limits of sizes enforced through {limits.detail}"
            if limits.available
            else f"memory, CPU and pids limits are unavailable, sizes will not be enforced: {limits.detail}",
            required=False,
        ),
        Check(
            "chromium (tests)",
            CHROMIUM.exists(),
            str(CHROMIUM) if CHROMIUM.exists() else "not installed: apt-get install -y chromium chromium-driver",
            required=False,
        ),
    ]


def origins_check(settings: Settings) -> Check:
    """Whether each workspace gets an origin of its own, or all share the dashboard's (path mode)."""
    domain = resolve_domain(settings)
    if domain is not None:
        return Check(
            "origins",
            True,
            f"each workspace and port on a host of its own: NAME--OWNER.{domain}, PORT--NAME--OWNER.{domain}",
        )
    return Check(
        "origins",
        False,
        "path mode: every workspace shares the dashboard's origin (/w/OWNER/NAME/), which suits only users who "
        "trust each other; set workspace_domain (a wildcard DNS name) and public_url",
        required=False,
    )


def sandbox_check(settings: Settings) -> Check:
    """Whether engines run in sandboxes of their own here (bubblewrap and slirp4netns), and why not."""
    found = sandbox.detect(settings)
    if found.available:
        return Check("sandbox", True, found.detail)
    return Check("sandbox", False, f"engines are not sandboxed: {found.detail}", required=settings.sandbox == "on")


def ssh_check(settings: Settings) -> Check:
    """Whether workspaces take SSH sessions here (`devyard ssh`, desktop IDEs), and why not."""
    try:
        load_backend(settings).ssh_login(WorkspaceSpec(uid="", owner="doctor", name="", root=Path("/")))
    except DevyardError as exc:
        return Check("ssh", False, f"no SSH into workspaces: {exc.message}", required=False)
    return Check("ssh", True, "workspaces take SSH sessions through the manager (devyard ssh, config-ssh)")


def isolation_check(settings: Settings) -> Check:
    """Whether one user's terminal is kept out of other users' workspaces, said plainly when it is not."""
    try:
        missing = load_backend(settings).missing_isolation
    except DevyardError as exc:
        return Check("isolation", False, exc.message)
    if missing is None:
        return Check(
            "isolation",
            True,
            "each user's engines run as a system account of their own (dy-<user>), each in a sandbox of its own"
            if settings.backend == "local"
            else f"each engine in a pod of its own ({settings.backend} backend)",
        )
    return Check("isolation", False, missing, required=False)
