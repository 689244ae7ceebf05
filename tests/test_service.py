"""devyard as a service on a host: the wheel installed like a Python tool, and the systemd unit.

The wheel is built from this checkout and installed into a fresh virtual environment outside the
source tree (what `pipx install devyard-*.whl` does), then `devyard --version`, `devyard doctor`
and a short `devyard up` run from it, with SIGHUP reloading its config as `systemctl reload` does.
deploy/systemd/devyard.service is checked by `systemd-analyze verify`, pointed at that installation.
"""

from __future__ import annotations

import configparser
import os
import re
import signal
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from devyard.engine import install
from tests.support import start_manager, wait_for

ROOT = Path(__file__).parent.parent
UNIT = ROOT / "deploy" / "systemd" / "devyard.service"
INSTALLED = "/opt/devyard/bin/devyard"  # where docs/service.md installs it, and the unit runs it from


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The `devyard` command of a fresh virtual environment that has only the wheel (and its dependencies)."""
    where = tmp_path_factory.mktemp("wheel")
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(where / "dist"), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert build.returncode == 0, build.stderr
    (wheel,) = (where / "dist").glob("devyard-*.whl")
    subprocess.run([sys.executable, "-m", "venv", str(where / "venv")], check=True, timeout=120)
    pip = [str(where / "venv" / "bin" / "pip"), "install", "--quiet", "--disable-pip-version-check"]
    # The locked versions, as CI tests them (they are in pip's cache after `make setup`).
    done = subprocess.run(
        [*pip, "-c", str(ROOT / "requirements.lock"), str(wheel)], capture_output=True, text=True, timeout=900
    )
    assert done.returncode == 0, done.stderr
    yield where / "venv" / "bin" / "devyard"


def run(command: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    """Run an installed command from outside the source tree, with no project variables."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEVYARD_") and k != "PYTHONPATH"}
    return subprocess.run(command, cwd="/", env=env, capture_output=True, text=True, timeout=120, **kwargs)  # type: ignore[call-overload, no-any-return]


def test_the_wheel_installs_and_runs_outside_the_tree(installed: Path, engine: install.Engine, tmp_path: Path) -> None:
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert run([str(installed), "--version"]).stdout.strip() == version
    where = run([str(installed.parent / "python"), "-c", "import devyard; print(devyard.__file__)"]).stdout
    assert where.startswith(str(installed.parent.parent)) and str(ROOT) not in where  # the wheel's copy, not this tree
    doctor = run([str(installed), "doctor"])
    assert doctor.returncode == 0, doctor.stdout + doctor.stderr
    assert re.search(r"^ok\s+engine\s+code-server", doctor.stdout, re.M), doctor.stdout

    config = tmp_path / "devyard.yaml"
    config.write_text("extension_groups: {python: {name: Python, extensions: []}}\n")
    m = start_manager(tmp_path / "data", args=("--config", str(config)), devyard=str(installed))
    try:
        # The dashboard's pages and static files are in the wheel.
        login = httpx.get(m.url + "/login")
        assert login.status_code == 200 and "/static/devyard.css" in login.text
        assert httpx.get(m.url + "/static/devyard.css").status_code == 200
        with m.api() as api:
            assert [g["id"] for g in api.get("/extension-groups").json()] == ["python"]
            config.write_text("extension_groups: {python: {name: Python}, go: {name: Go}}\n")
            m.proc.send_signal(signal.SIGHUP)  # systemctl reload
            wait_for(lambda: len(api.get("/extension-groups").json()) == 2, 10, "the reload to apply")
        m.proc.send_signal(signal.SIGTERM)  # systemctl stop
        # uvicorn ends by raising the signal again: systemd counts an end by SIGTERM as clean.
        assert m.proc.wait(timeout=30) in (0, -signal.SIGTERM), m.log
        assert "Finished server process" in m.log
    finally:
        m.stop()


def unit() -> configparser.RawConfigParser:
    parser = configparser.RawConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment, method-assign]
    parser.read_string(UNIT.read_text())
    return parser


def test_the_unit_is_hardened_and_keeps_the_sandbox_working() -> None:
    service = unit()["Service"]
    assert service["KillMode"] == "process"  # engines outlive a restart: the next manager adopts them
    assert service["Restart"] == "on-failure"
    assert service["EnvironmentFile"] == "-/etc/devyard/devyard.env"
    assert service["ExecReload"] == "/bin/kill -HUP $MAINPID"
    assert service["ExecStart"].startswith(INSTALLED + " up --config /etc/devyard/devyard.yaml")
    for kept in ("NoNewPrivileges", "PrivateTmp", "ProtectKernelModules", "ProtectSystem", "ProtectHome"):
        assert service.get(kept), f"{kept} is not set"
    # What would break bubblewrap, slirp4netns, the engines' cgroups or Node: never set.
    for breaking in (
        "PrivateUsers",
        "RestrictNamespaces",
        "ProtectKernelTunables",
        "ProtectControlGroups",
        "MemoryDenyWriteExecute",
        "SystemCallFilter",
    ):
        assert breaking not in service, f"{breaking} breaks the sandbox"


def test_systemd_analyze_verifies_the_unit(installed: Path, tmp_path: Path) -> None:
    copy = tmp_path / "devyard.service"
    copy.write_text(UNIT.read_text().replace(INSTALLED, str(installed)))
    out = subprocess.run(["systemd-analyze", "verify", str(copy)], capture_output=True, text=True, timeout=60)
    # A misspelt key or a bad value is only a warning to systemd: any output fails the check.
    assert (out.returncode, out.stdout + out.stderr) == (0, "")
