"""Tool bundles: pinned npm and PyPI packages installed once per version into a shared cache, their
commands put on every workspace terminal's PATH.

Layout: <tools_dir>/<npm|pypi>-<package>-<version>/ with `bin/` (only the package's commands:
npm's node_modules/.bin, or links to the scripts a PyPI package added to its venv, never the
venv's own python or pip, which would shadow the system's) and `.installed`, written last. A file
lock makes concurrent provisionings wait for one install. npm runs with the engine's Node 24, so
the commands find the same `node` in the terminal.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from filelock import FileLock

from devyard.config import Tool
from devyard.engine.install import Engine
from devyard.engine.publish import mkdir_public
from devyard.errors import ProvisionError

MARKER = ".installed"
TIMEOUT_S = 900
_VENV_OWN = re.compile(r"^(python[0-9.]*|pip[0-9.]*|activate.*|Activate.*|pydoc.*)$")


def folder(tools_dir: Path, tool: Tool) -> Path:
    """Where `tool` is (or would be) installed."""
    spec = tool.npm or tool.pypi or ""
    kind = "npm" if tool.npm else "pypi"
    return tools_dir / f"{kind}-{re.sub(r'[^A-Za-z0-9._=-]+', '_', spec.lstrip('@'))}"


def bin_dirs(tools_dir: Path, tools: list[Tool]) -> list[str]:
    """The command folders of the installed tools, in configured order."""
    return [str(folder(tools_dir, t) / "bin") for t in tools if (folder(tools_dir, t) / MARKER).exists()]


def ensure(tools_dir: Path, tool: Tool, engine: Engine) -> Path:
    """Install `tool` unless it already is; its command folder. ProvisionError naming the tool on failure."""
    target = folder(tools_dir, tool)
    if (target / MARKER).exists():
        return target / "bin"
    mkdir_public(tools_dir)
    with FileLock(str(target.with_name(target.name + ".lock"))):
        if (target / MARKER).exists():
            return target / "bin"
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir()
        os.chmod(target, 0o755)
        try:
            if tool.npm:
                _npm(target, tool.npm, engine)
            else:
                _pypi(target, tool.pypi or "")
        except BaseException:
            shutil.rmtree(target, ignore_errors=True)
            raise
        (target / MARKER).write_text((tool.npm or tool.pypi or "") + "\n")
    return target / "bin"


def _npm(target: Path, spec: str, engine: Engine) -> None:
    env = {
        **os.environ,
        "PATH": f"{engine.bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        "npm_config_fund": "false",
        "npm_config_audit": "false",
        "npm_config_update_notifier": "false",
    }
    _run(["npm", "install", "--prefix", str(target), "--no-audit", "--no-fund", "--omit=dev", spec], env, spec)
    (target / "bin").symlink_to(Path("node_modules") / ".bin")
    if not (target / "node_modules" / ".bin").is_dir():
        raise ProvisionError(
            f"tool {spec}: the npm package has no commands (no bin entry)", code="tool_has_no_commands"
        )


def _pypi(target: Path, spec: str) -> None:
    python = shutil.which("python3") or sys.executable
    venv = target / "venv"
    _run([python, "-m", "venv", str(venv)], dict(os.environ), spec)
    before = {p.name for p in (venv / "bin").iterdir()}
    _run(
        [str(venv / "bin" / "pip"), "install", "--disable-pip-version-check", "--no-input", spec],
        dict(os.environ),
        spec,
    )
    added = sorted(p.name for p in (venv / "bin").iterdir() if p.name not in before and not _VENV_OWN.match(p.name))
    if not added:
        raise ProvisionError(f"tool {spec}: the PyPI package installs no commands", code="tool_has_no_commands")
    (target / "bin").mkdir()
    for name in added:
        (target / "bin" / name).symlink_to(Path("..") / "venv" / "bin" / name)


def _run(argv: list[str], env: dict[str, str], spec: str) -> None:
    try:
        done = subprocess.run(
            argv, env=env, capture_output=True, text=True, timeout=TIMEOUT_S, stdin=subprocess.DEVNULL
        )
    except subprocess.TimeoutExpired as exc:
        raise ProvisionError(
            f"tool {spec}: installing took more than {TIMEOUT_S} s", code="tool_install_failed"
        ) from exc
    if done.returncode != 0:
        lines = [ln for ln in (done.stderr or done.stdout).splitlines() if ln.strip() and "warn" not in ln.lower()]
        raise ProvisionError(
            f"tool {spec} did not install: {' / '.join(lines[-3:]) or done.returncode}", code="tool_install_failed"
        )
