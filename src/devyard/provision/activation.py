"""Do installed extensions activate? Boot the engine on a scratch workspace, open it in headless Chromium.

VS Code starts a workspace's extension host only when a workbench connects, and activates
extensions only inside it, so there is no headless way to ask: this opens the real workbench in
Debian's Chromium (driven by Playwright) and reads the extension host's own log, where every
activation and every activation error is written. The engine listens on loopback for the few
seconds of the check, behind a random password nobody else sees.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from devyard.backends.base import WorkspaceSpec
from devyard.engine.command import engine_env
from devyard.engine.install import Engine

BROWSER_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ACTIVATED = re.compile(r"ExtensionService#_doActivateExtension (\S+), startup: \w+, activationEvent: '([^']*)'")
FAILED = re.compile(r"Activating extension '?([A-Za-z0-9][\w.-]*)'? failed(?: due to an error)?:?\s*(.*)")
LOG_PREFIX = re.compile(r"^\S+ \S+ \[\w+\] ")
STARTUP_DONE = "Eager extensions activated"
SETTLE_S = 3.0  # onStartupFinished extensions activate just after the eager ones


@dataclass(frozen=True, slots=True)
class Activation:
    """Whether one extension activated when a workbench opened: ok is False only for an error."""

    ok: bool
    detail: str


def check(
    engine: Engine, ws: WorkspaceSpec, ids: list[str], browser: Path, timeout_s: float = 90.0
) -> dict[str, Activation]:
    """Open `ws` in a real workbench and report, per id, whether it activated, failed, or waits for an event."""
    if not ids:
        return {}
    if not browser.is_file():
        return {i: Activation(True, f"activation not checked: no browser at {browser}") for i in ids}
    ws.files_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="dy-activate-") as tmp:
        port, password = _free_port(), secrets.token_urlsafe(32)
        engine_proc = _boot(engine, ws, Path(tmp), port, password)
        try:
            _wait_http(port, engine_proc, timeout_s)
            log = _open_workbench(port, password, browser, Path(tmp) / "profile", ws.data_dir, timeout_s)
        except (RuntimeError, TimeoutError) as exc:
            return {i: Activation(False, f"activation not checked: {exc}") for i in ids}
        finally:
            _stop(engine_proc)
    return _verdicts(ids, log, ws.extensions_dir)


def _boot(engine: Engine, ws: WorkspaceSpec, tmp: Path, port: int, password: str) -> subprocess.Popen[bytes]:
    runtime = tmp / "run"
    runtime.mkdir(mode=0o700)
    config = tmp / "config.yaml"
    config.write_text("auth: password\n")
    env = engine_env(engine, home=ws.home_dir, runtime_dir=runtime)
    env["PASSWORD"] = password
    argv = [
        str(engine.node),
        str(engine.entry),
        "--bind-addr",
        f"127.0.0.1:{port}",
        "--auth",
        "password",
        "--config",
        str(config),
        "--disable-telemetry",
        "--disable-update-check",
        "--disable-workspace-trust",
        "--user-data-dir",
        str(ws.data_dir),
        "--extensions-dir",
        str(ws.extensions_dir),
        str(ws.files_dir),
    ]
    return subprocess.Popen(
        argv,
        env=env,
        cwd=tmp,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def _stop(proc: subprocess.Popen[bytes]) -> None:
    # The engine's own children (extension host, terminals) share its session: end them all.
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    except ProcessLookupError:
        pass


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_http(port: int, proc: subprocess.Popen[bytes], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the engine exited with status {proc.returncode}")
        try:
            httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
            return
        except httpx.TransportError:
            time.sleep(0.1)
    raise TimeoutError(f"the engine did not answer within {timeout_s:.0f} s")


def _open_workbench(port: int, password: str, browser: Path, profile: Path, data_dir: Path, timeout_s: float) -> str:
    from playwright.sync_api import Error as PlaywrightError
    from playwright.sync_api import sync_playwright

    try:
        with sync_playwright() as p:
            context = p.chromium.launch_persistent_context(
                str(profile), executable_path=str(browser), headless=True, args=BROWSER_FLAGS
            )
            try:
                page = context.new_page()
                page.goto(f"http://127.0.0.1:{port}/login", timeout=timeout_s * 1000)
                page.fill("input[type=password]", password)
                page.press("input[type=password]", "Enter")
                page.wait_for_selector(".monaco-workbench", timeout=timeout_s * 1000)
                return _await_startup(data_dir, timeout_s)
            finally:
                context.close()
    except PlaywrightError as exc:
        raise RuntimeError(f"the browser failed: {str(exc).splitlines()[0]}") from exc
    finally:
        shutil.rmtree(profile, ignore_errors=True)


def _await_startup(data_dir: Path, timeout_s: float) -> str:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        text = "\n".join(
            p.read_text(errors="replace") for p in sorted(data_dir.glob("logs/*/exthost*/remoteexthost.log"))
        )
        if STARTUP_DONE in text:
            time.sleep(SETTLE_S)
            return "\n".join(
                p.read_text(errors="replace") for p in sorted(data_dir.glob("logs/*/exthost*/remoteexthost.log"))
            )
        time.sleep(0.2)
    raise TimeoutError(f"the extension host did not finish starting within {timeout_s:.0f} s")


def _verdicts(ids: list[str], log: str, extensions_dir: Path) -> dict[str, Activation]:
    activated = {m.group(1).lower(): m.group(2) for m in ACTIVATED.finditer(log)}
    failed: dict[str, str] = {}
    lines = log.splitlines()
    for n, line in enumerate(lines):
        m = FAILED.search(line)
        if m:
            reason = m.group(2).strip() or next((ln.strip() for ln in lines[n + 1 :] if ln.strip()), "no reason given")
            failed[m.group(1).lower()] = LOG_PREFIX.sub("", reason)
    out = {}
    for ext_id in ids:
        key = ext_id.lower()
        if key in failed:
            out[ext_id] = Activation(False, f"activation failed: {failed[key]}")
        elif key in activated:
            out[ext_id] = Activation(True, f"activated ({activated[key]})")
        else:
            out[ext_id] = Activation(True, _why_not(ext_id, extensions_dir))
    return out


def _why_not(ext_id: str, extensions_dir: Path) -> str:
    manifest = _manifest(ext_id, extensions_dir)
    if manifest is None:
        return "not activated"
    if not manifest.get("main") and not manifest.get("browser"):
        return "nothing to activate (contributions only)"
    declared = manifest.get("activationEvents")
    events = [e for e in declared if isinstance(e, str)] if isinstance(declared, list) else []
    return f"not activated at startup (activates on: {', '.join(events)})" if events else "not activated at startup"


def _manifest(ext_id: str, extensions_dir: Path) -> dict[str, object] | None:
    for folder in sorted(extensions_dir.glob(f"{ext_id.lower()}-*")) + sorted(extensions_dir.glob(f"{ext_id}-*")):
        try:
            data = json.loads((folder / "package.json").read_text())
        except (OSError, ValueError):
            continue
        if isinstance(data, dict):
            return data
    return None
