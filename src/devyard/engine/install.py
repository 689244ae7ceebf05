"""Installing the pinned code-server engine and Node 24 into devyard's cache, once per version.

Layout: <engine_dir>/<CODE_SERVER_VERSION>/{node,code-server}/ each an npm project of its own
(npm walks up to the nearest node_modules otherwise), install.log, and engine.json written last:
its presence is what "installed" means. A file lock makes concurrent installs wait for one another;
an interrupted install (no engine.json) is wiped and redone. Nothing is fetched outside the npm
registry: Node 24 comes from the npm package `node`, whose install script fetches its platform
package from the same registry.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from filelock import FileLock

from devyard.engine import prereqs
from devyard.errors import EngineError
from devyard.versions import CODE_SERVER_VERSION as CODE_SERVER_VERSION  # pinned there for settings too; re-exported
from devyard.versions import NODE_VERSION as NODE_VERSION

MARKER = "engine.json"
Progress = Callable[[str], None]


@dataclass(frozen=True)
class Engine:
    """An installed engine: the Node 24 binary and code-server's entry script."""

    version: str
    root: Path
    node: Path
    entry: Path

    @property
    def bin_dir(self) -> Path:
        """Folder holding Node 24, put first on PATH for every engine start."""
        return self.node.parent

    @property
    def static_root(self) -> Path:
        """VS Code's folder in code-server (lib/vscode): what its `stable-<commit>/static/` URLs serve."""
        return self.entry.parents[2] / "lib" / "vscode"


def engine_root(engine_dir: Path, version: str = CODE_SERVER_VERSION) -> Path:
    """Where `version` is (or would be) installed."""
    return engine_dir / version


def locate(engine_dir: Path, version: str = CODE_SERVER_VERSION) -> Engine | None:
    """The installed engine of `version`, or None when it is not (completely) installed."""
    marker = engine_root(engine_dir, version) / MARKER
    try:
        data = json.loads(marker.read_text())
        engine = Engine(
            version=data["version"], root=Path(data["root"]), node=Path(data["node"]), entry=Path(data["entry"])
        )
    except (OSError, ValueError, KeyError):
        return None
    return engine if engine.node.exists() and engine.entry.exists() else None


def require(engine_dir: Path, version: str = CODE_SERVER_VERSION) -> Engine:
    """The installed engine, or EngineError telling how to install it."""
    engine = locate(engine_dir, version)
    if engine is None:
        raise EngineError(
            f"code-server {version} is not installed in {engine_dir}; run `devyard engine install`",
            code="engine_not_installed",
        )
    return engine


def install(engine_dir: Path, progress: Progress, version: str = CODE_SERVER_VERSION) -> Engine:
    """Install `version` unless it already is; safe to call from several processes at once."""
    engine_dir.mkdir(parents=True, exist_ok=True)
    found = locate(engine_dir, version)
    if found:
        progress(f"code-server {version} already installed in {found.root}")
        return found
    with FileLock(str(engine_dir / f"{version}.lock")):
        found = locate(engine_dir, version)  # another process may have finished while we waited
        if found:
            progress(f"code-server {version} installed by another process in {found.root}")
            return found
        prereqs.ensure(prereqs.missing(), progress)
        if shutil.which("npm") is None:
            raise EngineError(
                "npm is not on PATH; install Node.js with npm (Debian: apt-get install -y nodejs npm)",
                code="npm_missing",
            )
        root = engine_root(engine_dir, version)
        shutil.rmtree(root, ignore_errors=True)
        root.mkdir(parents=True)
        started = time.monotonic()
        try:
            engine = _install_into(root, version, progress)
        except BaseException:
            # Keep the log for diagnosis, drop the half-built tree.
            for child in root.iterdir():
                if child.name != "install.log":
                    shutil.rmtree(child, ignore_errors=True) if child.is_dir() else child.unlink(missing_ok=True)
            raise
        (root / MARKER).write_text(json.dumps({k: str(v) for k, v in asdict(engine).items()}, indent=2))
        progress(f"code-server {version} installed in {time.monotonic() - started:.0f} s ({root})")
        return engine


def _install_into(root: Path, version: str, progress: Progress) -> Engine:
    log_path = root / "install.log"
    node_dir, cs_dir = root / "node", root / "code-server"
    progress(f"[1/3] Node {NODE_VERSION} from the npm package `node`")
    _npm_project(node_dir, {"node": NODE_VERSION}, {"node": True})
    _npm_install(node_dir, os.environ.copy(), log_path, progress)
    node = node_dir / "node_modules" / "node" / "bin" / "node"
    headers = _find_headers(node_dir)
    if not node.exists() or headers is None:
        raise EngineError(
            f"the npm package node@{NODE_VERSION} did not provide a Node binary and headers; see {log_path}"
        )

    progress(f"[2/3] code-server {version} (compiles native modules: a few minutes)")
    _npm_project(cs_dir, {"code-server": version}, {"code-server": True, "argon2": True})
    env = os.environ.copy()
    env["PATH"] = f"{node.parent}{os.pathsep}{env.get('PATH', '')}"
    # ~/.npmrc may point node-gyp at the system Node's headers; the engine needs Node 24's.
    env["npm_config_nodedir"] = str(headers)
    _npm_install(cs_dir, env, log_path, progress)
    entry = cs_dir / "node_modules" / "code-server" / "out" / "node" / "entry.js"
    if not entry.exists():
        raise EngineError(f"code-server's entry script is missing after install; see {log_path}")

    progress("[3/3] checking the engine runs")
    check = subprocess.run([str(node), str(entry), "--version"], capture_output=True, text=True, env=env, timeout=120)
    if check.returncode != 0 or version not in check.stdout:
        raise EngineError(f"the installed engine does not run: {(check.stderr or check.stdout).strip()[-300:]}")
    return Engine(version=version, root=root, node=node, entry=entry)


def _npm_project(path: Path, deps: dict[str, str], allow_scripts: dict[str, bool]) -> None:
    path.mkdir(parents=True, exist_ok=True)
    manifest = {"name": f"devyard-{path.name}", "private": True, "dependencies": deps, "allowScripts": allow_scripts}
    (path / "package.json").write_text(json.dumps(manifest, indent=2))


def _find_headers(node_dir: Path) -> Path | None:
    """The folder holding include/node/node.h (its nesting depends on the npm version)."""
    for header in node_dir.glob("node_modules/**/include/node/node.h"):
        return header.parent.parent.parent
    return None


def _npm_install(cwd: Path, env: dict[str, str], log_path: Path, progress: Progress) -> None:
    env = {**env, "npm_config_fund": "false", "npm_config_audit": "false", "npm_config_update_notifier": "false"}
    argv = ["npm", "install", "--no-audit", "--no-fund", "--foreground-scripts", "--loglevel=http"]
    started = last_report = time.monotonic()
    tail: list[str] = []
    with log_path.open("a") as log:
        log.write(f"\n$ (cd {cwd} && {' '.join(argv)})\n")
        log.flush()
        proc = subprocess.Popen(
            argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace"
        )
        assert proc.stdout is not None
        for line in proc.stdout:
            log.write(line)
            line = line.strip()
            if line:
                tail = (tail + [line])[-20:]
            now = time.monotonic()
            if now - last_report >= 10:
                last_report = now
                progress(f"      … {now - started:4.0f} s  {tail[-1][:100] if tail else ''}")
        code = proc.wait()
    if code != 0:
        raise EngineError(f"npm install in {cwd} failed (exit {code}): {' / '.join(tail[-3:])}; full log: {log_path}")
