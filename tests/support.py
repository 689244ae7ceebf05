"""Test support: a real `devyard up` in a subprocess, its CLI, its API, and process cleanup by pid."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil

from devyard.processes import terminate_tree

DEVYARD = str(Path(sys.executable).parent / "devyard")
ADMIN_PASSWORD = "admin-password-for-tests"
START_DEADLINE_S = 60.0


def wait_for(predicate: Any, timeout: float, what: str, interval: float = 0.05) -> Any:
    """Poll `predicate` until it returns something truthy; fail naming `what` after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def kill_tree(pid: int, timeout: float = 10.0) -> None:
    """SIGTERM a process, its group and its descendants; SIGKILL what is left after `timeout`."""
    try:
        terminate_tree(psutil.Process(pid), timeout, (signal.SIGTERM, signal.SIGKILL))
    except psutil.NoSuchProcess:
        pass


@contextmanager
def peer(argv: list[str], env: dict[str, str] | None = None, cwd: Path | None = None) -> Iterator[str]:
    """Run a test peer server that prints one line when ready; yield that line; stop it (and its children) after."""
    proc = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env, cwd=cwd, start_new_session=True
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        assert line.startswith("ready"), f"{argv[1] if len(argv) > 1 else argv[0]} did not start: {line!r}"
        yield line
    finally:
        kill_tree(proc.pid)
        proc.wait()
        if proc.stdout:
            proc.stdout.close()


@dataclass
class Manager:
    """A running manager started by a test."""

    data_dir: Path
    proc: subprocess.Popen[bytes]
    url: str = ""
    ca: str | None = None  # the self-signed certificate to trust, under --tls self-signed
    env: dict[str, str] = field(default_factory=dict)
    _token: str | None = None

    @property
    def log(self) -> str:
        """What the manager wrote to stderr so far."""
        return (self.data_dir.parent / f"{self.data_dir.name}-manager.log").read_text(errors="replace")

    def engine_pids(self) -> list[int]:
        """Pids of engines the local backend recorded under this data dir."""
        pids = []
        for record in (self.data_dir / "run" / "engines").glob("*.json"):
            try:
                data = json.loads(record.read_text())
            except (OSError, ValueError):
                continue
            if "create_time" in data:
                pids.append(int(data["pid"]))
        return pids

    def token(self, user: str = "admin") -> str:
        """An API token for `user`, made with the CLI on the local database."""
        if user == "admin" and self._token:
            return self._token
        out = self.cli("token", "create", "--user", user, "--data-dir", str(self.data_dir), token=None)
        assert out.returncode == 0, out.stderr
        tok = out.stdout.strip()
        if user == "admin":
            self._token = tok
        return tok

    def add_user(self, name: str, password: str | None = None) -> str:
        """Add user `name` with the CLI on the local database; its password (`<name>-password` unless given)."""
        password = password or f"{name}-password"
        out = self.cli(
            "user", "add", name, "--password-stdin", "--data-dir", str(self.data_dir), token=None, input=password + "\n"
        )
        assert out.returncode == 0, out.stderr
        return password

    def api(self, token: str | None = "admin") -> httpx.Client:
        """An httpx client for /api/v1 (token: a user name to make a token for, a token, or None)."""
        headers = {}
        if token:
            tok = token if token.startswith("dy_") else self.token(token)
            headers["authorization"] = f"Bearer {tok}"
        return httpx.Client(base_url=self.url + "/api/v1", headers=headers, timeout=60, verify=self.verify)

    @property
    def verify(self) -> ssl.SSLContext | bool:
        """What httpx should verify this manager's certificate with."""
        return ssl.create_default_context(cafile=self.ca) if self.ca else True

    def cli(
        self, *args: str, token: str | None = "admin", input: str | None = None, timeout: float = 240
    ) -> subprocess.CompletedProcess[str]:
        """Run `devyard ARGS` against this manager."""
        env = {
            **os.environ,
            **self.env,
            "DEVYARD_URL": self.url,
            "COLUMNS": "200",
            "NO_COLOR": "1",
            **({"DEVYARD_CA_CERT": self.ca} if self.ca else {}),
        }
        env.pop("DEVYARD_TOKEN", None)
        if token:
            env["DEVYARD_TOKEN"] = token if token.startswith("dy_") else self.token(token)
        return subprocess.run([DEVYARD, *args], env=env, input=input, capture_output=True, text=True, timeout=timeout)

    def wait_status(self, name: str, want: str, token: str = "admin", timeout: float = 120) -> dict[str, Any]:
        """Poll the API until workspace `name` has status `want`; fail early if it fails."""
        with self.api(token) as api:

            def check() -> dict[str, Any] | None:
                ws: dict[str, Any] = api.get(f"/workspaces/{name}").json()
                if ws.get("status") == "failed" and want != "failed":
                    raise AssertionError(f"workspace {name} failed: {ws.get('error')}")
                return ws if ws.get("status") == want else None

            result: dict[str, Any] = wait_for(check, timeout, f"{name} to be {want}", interval=0.1)
            return result

    def __enter__(self) -> Manager:
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    def stop(self, kill_engines: bool = True) -> None:
        """Stop the manager (SIGTERM, like Ctrl-C) and, unless told otherwise, every engine it left."""
        engines = self.engine_pids()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                kill_tree(self.proc.pid)
                self.proc.wait()
        if kill_engines:
            for pid in engines:
                kill_tree(pid)


def start_manager(
    data_dir: Path, extra_env: dict[str, str] | None = None, args: tuple[str, ...] = (), devyard: str = DEVYARD
) -> Manager:
    """Run `devyard up` on `data_dir` with port 0 and wait until it serves (`devyard`: another installation's)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    record = data_dir / "run" / "manager.json"
    record.unlink(missing_ok=True)
    env = {**os.environ, "DEVYARD_ADMIN_PASSWORD": ADMIN_PASSWORD, **(extra_env or {})}
    env.pop("DEVYARD_TOKEN", None)
    log = (data_dir.parent / f"{data_dir.name}-manager.log").open("ab")
    proc = subprocess.Popen(
        [devyard, "up", "--data-dir", str(data_dir), "--port", "0", "--no-install-engine", *args],
        env=env,
        stdout=log,
        stderr=log,
        stdin=subprocess.DEVNULL,
    )
    log.close()
    manager = Manager(
        data_dir=data_dir, proc=proc, env=dict(extra_env or {})
    )  # the CLI on its data dir needs them too (database_url)

    def ready() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"devyard up exited with {proc.returncode}:\n{manager.log[-3000:]}")
        try:
            found = json.loads(record.read_text())
            manager.url, manager.ca = found["url"], found.get("ca")
        except (OSError, ValueError, KeyError):
            return False
        try:
            return httpx.get(manager.url + "/healthz", timeout=2, verify=manager.verify).status_code == 200
        except httpx.TransportError:
            return False

    try:
        wait_for(ready, START_DEADLINE_S, "the manager to serve /healthz")
    except BaseException:
        manager.stop()
        raise
    return manager


def free_port() -> int:
    """A loopback TCP port nobody listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def make_repo(path: Path, files: Mapping[str, str | bytes], executable: tuple[str, ...] = ()) -> Path:
    """A bare repository at `path` holding one commit with `files` (text or bytes; those in `executable` mode 0755)."""
    work = path.with_name(path.name + "-work")
    work.mkdir(parents=True)
    for name, text in files.items():
        (work / name).parent.mkdir(parents=True, exist_ok=True)
        if isinstance(text, bytes):
            (work / name).write_bytes(text)
        else:
            (work / name).write_text(text)
        if name in executable:
            (work / name).chmod(0o755)
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", "-c", "init.defaultBranch=main"]
    subprocess.run([*git, "init", "-q", str(work)], check=True)
    subprocess.run([*git, "-C", str(work), "add", "."], check=True)
    subprocess.run([*git, "-C", str(work), "commit", "-q", "-m", "first"], check=True)
    subprocess.run([*git, "clone", "-q", "--bare", str(work), str(path)], check=True)
    return path


@contextmanager
def passable_dir(prefix: str) -> Iterator[Path]:
    """A folder every account may pass through, as /var/lib is (pytest's own are 0700, and reset by any pytest run)."""
    base = Path(tempfile.mkdtemp(prefix=prefix, dir="/var/tmp"))
    os.chmod(base, 0o711)
    try:
        yield base
    finally:
        shutil.rmtree(base, ignore_errors=True)
