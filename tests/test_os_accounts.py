"""Per-user OS accounts: one user's terminal cannot read, connect to or signal another user's workspace.

Run as root (the CI machines are), against a real manager whose engines run as `dy-<user>`
accounts, with the attack made from a real integrated terminal in headless Chromium.
"""

from __future__ import annotations

import os
import pwd
import secrets
import signal
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from devyard import osaccounts as accounts
from devyard.engine import install
from tests.browser import chromium, login, open_terminal, run_in_terminal
from tests.support import ADMIN_PASSWORD, DEVYARD, Manager, passable_dir, start_manager, wait_for

as_root = pytest.mark.skipif(os.geteuid() != 0, reason="per-user OS accounts need the manager to run as root")


@pytest.fixture
def passable() -> Iterator[Path]:
    """A folder every account may pass through."""
    with passable_dir("devyard-accounts-") as base:
        yield base


@pytest.fixture
def users() -> Iterator[list[str]]:
    """Two fresh user names; their system accounts are removed afterwards."""
    names = [f"osa{secrets.token_hex(3)}", f"osb{secrets.token_hex(3)}"]
    yield names
    for name in names:
        try:
            account = accounts.lookup(name)
        except Exception:
            continue
        if account:
            accounts.kill_processes(account, Path("/"))  # every process of the test's own fresh account
            subprocess.run(["userdel", account.name], check=False, capture_output=True)


def add_user(m: Manager, name: str) -> str:
    """Add user `name` with a known password; return the password."""
    return m.add_user(name)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def engine_of(m: Manager, user: str, name: str) -> psutil.Process:
    """The engine (code-server's node process) of workspace user/name, found from the backend's records (in its sandbox or not)."""
    for pid in m.engine_pids():
        for proc in [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]:
            cmdline = proc.cmdline()
            if (
                "--socket" in cmdline
                and Path(cmdline[0]).name == "node"
                and f"/workspaces/{user}/{name}/files" in " ".join(cmdline)
            ):
                return proc
    raise AssertionError(f"no engine for {user}/{name}")


@as_root
def test_terminal_cannot_reach_another_users_workspace(
    engine: install.Engine, passable: Path, users: list[str]
) -> None:
    a, b = users
    m = start_manager(passable / "data", extra_env={"DEVYARD_OS_ACCOUNTS": "on"})
    try:
        password = add_user(m, a)
        add_user(m, b)
        for user, ws in ((a, "wa"), (b, "wb")):
            with m.api(user) as api:
                assert api.post("/workspaces", json={"name": ws}).status_code == 201
            m.wait_status(ws, "running", token=user)
        acc_a, acc_b = accounts.lookup(a), accounts.lookup(b)
        assert acc_a and acc_b and acc_a.uid != acc_b.uid and 0 not in (acc_a.uid, acc_b.uid)

        # Each engine runs as its owner's account, with private folders and socket.
        engine_b = engine_of(m, b, "wb")
        assert engine_of(m, a, "wa").uids().real == acc_a.uid
        assert engine_b.uids().real == acc_b.uid and engine_b.gids().real == acc_b.gid
        root_b = m.data_dir / "workspaces" / b / "wb"
        for d in ("files", "home", "data", "extensions"):
            st = (root_b / d).lstat()
            assert (st.st_uid, mode(root_b / d)) == (acc_b.uid, 0o700), d
        assert ((root_b / "logs").lstat().st_uid, mode(root_b / "logs")) == (0, 0o700)
        for d in (root_b, root_b.parent):
            assert (d.lstat().st_uid, d.lstat().st_gid, mode(d)) == (0, acc_b.gid, 0o710)
        sock_b = Path(engine_b.cmdline()[engine_b.cmdline().index("--socket") + 1])
        assert (sock_b.lstat().st_uid, mode(sock_b), mode(sock_b.parent)) == (acc_b.uid, 0o600, 0o700)
        assert mode(m.data_dir) == 0o711 and mode(m.data_dir / "run") == 0o711
        assert mode(m.data_dir / "run" / "engines") == 0o700 and mode(m.data_dir / "secrets") == 0o700
        assert mode(m.data_dir / "devyard.db") == 0o600
        secret = root_b / "files" / "secret.txt"
        secret.write_text("b's secret\n")
        os.chown(secret, acc_b.uid, acc_b.gid)

        # A's own terminal, in the browser, tries to read B's file, connect to B's engine and signal it.
        files_a = m.data_dir / "workspaces" / a / "wa" / "files"
        probe = (
            f"id -un > r_id; cat {secret} > r_cat 2>&1; "
            f"/usr/bin/python3 -c 'import socket,sys; socket.socket(socket.AF_UNIX).connect(sys.argv[1])' {sock_b} > r_sock 2>&1; "
            f"kill -0 {engine_b.pid} > r_kill 2>&1; cat {m.data_dir / 'devyard.db'} > r_db 2>&1; echo done > r_done"
        )
        with chromium(passable / "profile") as browser:
            page = browser.new_page()
            login(page, m.url, a, password)
            open_terminal(page, m.url + f"/w/{a}/wa/")
            run_in_terminal(page, probe)
            wait_for(lambda: (files_a / "r_done").exists(), 60, "the terminal to run the probe")
            page.close()
        result = {name: (files_a / name).read_text() for name in ("r_id", "r_cat", "r_sock", "r_kill", "r_db")}
        assert result["r_id"].strip() == acc_a.name
        # Refused by the accounts' permissions, or (sandboxed) not even there to be refused.
        assert (
            any(e in result["r_cat"] for e in ("Permission denied", "No such file"))
            and "b's secret" not in result["r_cat"]
        )
        assert any(e in result["r_sock"] for e in ("PermissionError", "FileNotFoundError"))
        assert any(e in result["r_kill"] for e in ("Operation not permitted", "No such process"))
        assert any(e in result["r_db"] for e in ("Permission denied", "No such file"))
        assert (files_a / "r_id").stat().st_uid == acc_a.uid and mode(files_a / "r_id") == 0o600  # umask 077
        assert engine_b.is_running()
    finally:
        m.stop()


@as_root
def test_existing_workspace_moves_to_its_account_and_survives_restart(
    engine: install.Engine, passable: Path, users: list[str]
) -> None:
    user = users[0]
    data = passable / "data"
    m = start_manager(data)  # os_accounts off: engines run as root
    add_user(m, user)
    try:
        with m.api(user) as api:
            assert api.post("/workspaces", json={"name": "old"}).status_code == 201
        m.wait_status("old", "running", token=user)
        files = data / "workspaces" / user / "old" / "files"
        (files / "kept.txt").write_text("from before\n")
        assert engine_of(m, user, "old").uids().real == 0
    finally:
        m.stop()

    # The same data dir with accounts: the next start hands the workspace's folders to the account.
    m = start_manager(data, extra_env={"DEVYARD_OS_ACCOUNTS": "on"})
    stray: subprocess.Popen[bytes] | None = None
    other: subprocess.Popen[bytes] | None = None
    try:
        m.wait_status("old", "stopped", token=user)
        with m.api(user) as api:
            assert api.post("/workspaces/old/start").status_code == 202
        m.wait_status("old", "running", token=user)
        account = accounts.lookup(user)
        assert account is not None
        proc = engine_of(m, user, "old")
        assert proc.uids().real == account.uid
        assert (files / "kept.txt").stat().st_uid == account.uid and (files / "kept.txt").read_text() == "from before\n"

        # A restart adopts the engine (same process) under its account.
        m.stop(kill_engines=False)
        m = start_manager(data, extra_env={"DEVYARD_OS_ACCOUNTS": "on"})
        m.wait_status("old", "running", token=user)
        assert engine_of(m, user, "old").pid == proc.pid

        # A process the user left behind outside the engine's tree (a daemon started in a terminal,
        # so with the workspace's HOME) ends with their last workspace; the account's processes that
        # no workspace of this manager started (another manager's, with the same user name) do not.
        home = data / "workspaces" / user / "old" / "home"
        stray = subprocess.Popen(
            ["sleep", "600"],
            user=account.uid,
            group=account.gid,
            extra_groups=[],
            start_new_session=True,
            env={"HOME": str(home), "PATH": "/usr/bin:/bin"},
        )
        other = subprocess.Popen(
            ["sleep", "600"],
            user=account.uid,
            group=account.gid,
            extra_groups=[],
            start_new_session=True,
            env={"HOME": "/elsewhere", "PATH": "/usr/bin:/bin"},
        )
        with m.api(user) as api:
            assert api.post("/workspaces/old/stop").status_code == 202
        m.wait_status("old", "stopped", token=user)
        assert stray.wait(timeout=10) == -signal.SIGTERM
        assert other.poll() is None
    finally:
        for leftover in (stray, other):
            if leftover and leftover.poll() is None:
                leftover.kill()
                leftover.wait()
        m.stop()


@as_root
def test_data_dir_accounts_cannot_reach_is_refused(tmp_path: Path) -> None:
    data = tmp_path / "data"  # below pytest's 0700 folders
    env = {**os.environ, "DEVYARD_OS_ACCOUNTS": "on", "DEVYARD_DATA_DIR": str(data)}
    out = subprocess.run(
        [DEVYARD, "up", "--port", "0", "--no-install-engine"], env=env, capture_output=True, text=True, timeout=60
    )
    assert out.returncode != 0
    assert (
        "is closed to other accounts" in out.stderr
        and "/var/lib/devyard" in out.stderr
        and "Traceback" not in out.stderr
    )
    doctor = subprocess.run([DEVYARD, "doctor"], env=env, capture_output=True, text=True, timeout=60)
    assert "isolation" in doctor.stdout and "closed to other accounts" in doctor.stdout


def test_shared_account_is_said_plainly(manager: Manager) -> None:
    """Without per-user accounts, doctor and the dashboard say that everyone shares one OS account."""
    me = pwd.getpwuid(os.geteuid()).pw_name
    env = {**os.environ, "DEVYARD_DATA_DIR": str(manager.data_dir), "NO_COLOR": "1", "COLUMNS": "250"}
    doctor = subprocess.run([DEVYARD, "doctor"], env=env, capture_output=True, text=True, timeout=60)
    line = next(line for line in doctor.stdout.splitlines() if "isolation" in line)
    assert "warn" in line and f"All users share one OS account ({me})" in line
    with httpx.Client(base_url=manager.url) as c:
        assert c.post("/api/v1/auth/login", json={"username": "admin", "password": ADMIN_PASSWORD}).status_code == 200
        page = c.get("/").text
    assert 'id="isolation-notice"' in page and f"one OS account ({me})" in page
    # This manager runs in path mode (the suite's default): the dashboard says what that means.
    assert 'id="path-mode-notice"' in page and "only users who trust each other" in page


@as_root
def test_folders_are_private_from_creation_and_a_missing_sandbox_is_said(
    engine: install.Engine, passable: Path, users: list[str]
) -> None:
    user = users[0]
    env = {"DEVYARD_OS_ACCOUNTS": "on", "DEVYARD_SANDBOX": "off"}
    m = start_manager(passable / "data", extra_env=env)
    try:
        add_user(m, user)
        with m.api(user) as api:
            assert api.post("/workspaces", json={"name": "early", "start": False}).status_code == 201
        m.wait_status("early", "stopped", token=user)
        # Never started, yet private: provisioning made the folders as they will stay.
        account = accounts.lookup(user)
        assert account is not None
        root = m.data_dir / "workspaces" / user / "early"
        for d in ("files", "home", "data", "extensions"):
            assert ((root / d).lstat().st_uid, mode(root / d)) == (account.uid, 0o700), d
        for d in (root, root.parent):
            assert (d.lstat().st_uid, d.lstat().st_gid, mode(d)) == (0, account.gid, 0o710)
        assert ((root / "logs").lstat().st_uid, mode(root / "logs")) == (0, 0o700)
        # Without the sandbox, everyone is told in one sentence: doctor, the dashboard, the manager's log.
        doctor = subprocess.run(
            [DEVYARD, "doctor"],
            env={**os.environ, **env, "DEVYARD_DATA_DIR": str(m.data_dir), "NO_COLOR": "1", "COLUMNS": "250"},
            capture_output=True,
            text=True,
            timeout=60,
        )
        lines = {line.split()[1]: line for line in doctor.stdout.splitlines() if len(line.split()) > 1}
        assert "warn" in lines["sandbox"] and "engines are not sandboxed: sandbox: off" in lines["sandbox"]
        assert "warn" in lines["isolation"] and "Workspaces are not sandboxed (sandbox: off)" in lines["isolation"]
        with httpx.Client(base_url=m.url) as c:
            assert (
                c.post("/api/v1/auth/login", json={"username": "admin", "password": ADMIN_PASSWORD}).status_code == 200
            )
            for page in ("/", "/admin/users"):
                text = c.get(page).text
                assert (
                    'id="isolation-notice"' in text
                    and "not sandboxed (sandbox: off)" in text
                    and "reach other users&#39; ports" in text
                )
        assert "NOT sandboxed (sandbox: off)" in m.log
    finally:
        m.stop()
