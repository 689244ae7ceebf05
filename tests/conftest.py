"""Fixtures: the installed engine, managers on temp data dirs, and a guard against leaked processes."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from filelock import FileLock

from devyard.config import load_settings
from devyard.engine import install
from tests.pg import Postgres, postgres
from tests.support import Manager, kill_tree, start_manager

# pytest's temp folders are private (0700), where per-user accounts could not reach their files:
# every manager runs with one shared account unless a test (test_os_accounts.py) says otherwise.
os.environ["DEVYARD_OS_ACCOUNTS"] = "off"
# The suite at large runs in path mode (/w/<owner>/<name>/), which must keep working; the tests of
# workspace origins (test_origins.py) start managers with a workspace domain of their own.
os.environ["DEVYARD_WORKSPACE_DOMAIN"] = "none"


@pytest.fixture(scope="session")
def engine() -> install.Engine:
    """The cached engine (installed by `make test` before pytest runs; installed here otherwise)."""
    return install.install(load_settings().engine_dir, lambda m: print(m, flush=True))


@pytest.fixture(scope="session", autouse=True)
def no_leaked_processes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Fail the run if any process started under the test temp dir outlives the tests."""
    base = str(tmp_path_factory.getbasetemp())
    yield
    leaked = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        try:
            if proc.pid != os.getpid() and base in " ".join(proc.info["cmdline"] or []):
                cmdline = proc.info["cmdline"]
                # The engine's socket names the test that started it (its temp folder): show that part whole.
                socket = cmdline[cmdline.index("--socket") + 1] if "--socket" in cmdline[:-1] else ""
                started = time.strftime("%H:%M:%S", time.localtime(proc.create_time()))
                leaked.append(
                    f"{proc.pid} (started {started}): {' '.join(cmdline)[:200]}"
                    + (f" [socket {socket}]" if socket else "")
                )
                kill_tree(proc.pid)
        except psutil.Error:
            continue
    assert not leaked, "processes left running by the tests:\n" + "\n".join(leaked)


@pytest.fixture(scope="module")
def manager(engine: install.Engine, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Manager]:
    """A manager shared by the tests of one module."""
    m = start_manager(tmp_path_factory.mktemp("m") / "data")
    try:
        yield m
    finally:
        m.stop()


@pytest.fixture
def fresh_manager(engine: install.Engine, tmp_path: Path) -> Iterator[Manager]:
    """A manager of the test's own."""
    m = start_manager(tmp_path / "data")
    try:
        yield m
    finally:
        m.stop()


@pytest.fixture(scope="session")
def pg() -> Iterator[Postgres]:
    """A real PostgreSQL server for the session (Debian's postgresql, stopped by pid at the end)."""
    with postgres() as server:
        yield server


# Modules of the fast tier that predate the marker: in-process unit tests, no engine, manager or browser.
FAST_MODULES = {"test_auth_units", "test_origins_units", "test_accounts_units", "test_gateway_units"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark the fast tier's older unit-test modules, so `pytest -m fast` (make test-fast) runs them too."""
    for item in items:
        if item.path.stem in FAST_MODULES:
            item.add_marker(pytest.mark.fast)


OIDC_PROVIDER_VERSION = "9.13.3"
PEERS = Path(os.environ.get("DEVYARD_TEST_PEERS", Path.home() / ".cache" / "devyard" / "test-peers"))


@pytest.fixture(scope="session")
def oidc_provider_dir() -> Path:
    """oidc-provider from the npm registry, installed once into the test-peers cache."""
    folder = PEERS / f"oidc-provider-{OIDC_PROVIDER_VERSION}"
    folder.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(folder) + ".lock"):
        if not (folder / "node_modules" / "oidc-provider" / "package.json").exists():
            folder.mkdir(exist_ok=True)
            (folder / "package.json").write_text(
                json.dumps(
                    {
                        "name": "devyard-oidc-peer",
                        "private": True,
                        "dependencies": {"oidc-provider": OIDC_PROVIDER_VERSION},
                    }
                )
            )
            subprocess.run(
                ["npm", "install", "--no-audit", "--no-fund"], cwd=folder, check=True, capture_output=True, timeout=300
            )
    return folder
