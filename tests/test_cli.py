"""The `devyard` CLI against a live manager: exit codes, output and one-line errors."""

from __future__ import annotations

import psutil

from tests.support import ADMIN_PASSWORD, Manager


def test_token_create_paths(manager: Manager) -> None:
    local = manager.cli("token", "create", "--data-dir", str(manager.data_dir), token=None)
    assert local.returncode == 0 and local.stdout.strip().startswith("dy_")
    via_password = manager.cli(
        "token",
        "create",
        "--password-stdin",
        "--name",
        "laptop",
        "--expires-in",
        "30d",
        token=None,
        input=ADMIN_PASSWORD + "\n",
    )
    assert via_password.returncode == 0, via_password.stderr
    tok = via_password.stdout.strip()
    with manager.api(tok) as api:
        assert api.get("/me").json()["name"] == "admin"
    wrong = manager.cli("token", "create", "--password-stdin", token=None, input="nope\n")
    assert wrong.returncode == 1 and wrong.stderr.strip() == "error: wrong user name or password"
    bad = manager.cli("token", "create", "--expires-in", "forever", "--data-dir", str(manager.data_dir), token=None)
    assert bad.returncode == 1 and "not a duration" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1


def test_workspace_lifecycle(manager: Manager) -> None:
    out = manager.cli("ws", "create", "cli-demo")
    assert out.returncode == 0, out.stderr
    assert "cli-demo: running" in out.stdout and "/w/admin/cli-demo/" in out.stdout
    ls = manager.cli("ws", "ls")
    assert ls.returncode == 0 and "cli-demo" in ls.stdout and "running" in ls.stdout

    stop = manager.cli("ws", "stop", "cli-demo")
    assert stop.returncode == 0 and "cli-demo: stopped" in stop.stdout
    assert not [p for p in manager.engine_pids() if psutil.pid_exists(p)]
    start = manager.cli("ws", "start", "cli-demo")
    assert start.returncode == 0 and "cli-demo: running" in start.stdout
    restart = manager.cli("ws", "restart", "cli-demo")
    assert restart.returncode == 0 and "cli-demo: running" in restart.stdout

    logs = manager.cli("ws", "logs", "cli-demo", "-n", "400")
    assert logs.returncode == 0 and "HTTP server listening on" in logs.stdout

    opened = manager.cli("ws", "open", "cli-demo")
    assert opened.returncode == 0 and opened.stdout.strip().splitlines()[0] == manager.url + "/w/admin/cli-demo/"

    root = manager.data_dir / "workspaces" / "admin" / "cli-demo"
    rm = manager.cli("ws", "rm", "cli-demo")
    assert rm.returncode == 0 and "deleted cli-demo" in rm.stdout
    assert not root.exists() and not manager.engine_pids()
    assert "cli-demo" not in manager.cli("ws", "ls").stdout


def test_errors_are_one_line_and_nonzero(manager: Manager) -> None:
    for args, message in [
        (("ws", "start", "missing"), "error: no workspace 'missing'"),
        (("ws", "rm", "missing"), "error: no workspace 'missing'"),
        (("ws", "logs", "missing"), "error: no workspace 'missing'"),
    ]:
        out = manager.cli(*args)
        assert out.returncode == 1 and out.stderr.strip() == message, out.stderr
    bad = manager.cli("ws", "create", "Bad_Name")
    assert bad.returncode == 1 and bad.stderr.startswith("error: name:") and len(bad.stderr.strip().splitlines()) == 1
    manager.cli("ws", "create", "twice", "--no-start")
    dup = manager.cli("ws", "create", "twice")
    assert dup.returncode == 1 and dup.stderr.strip() == "error: you already have a workspace named 'twice'"
    no_token = manager.cli("ws", "ls", token=None)
    assert no_token.returncode == 1 and "DEVYARD_TOKEN" in no_token.stderr
    forged = manager.cli("ws", "ls", token="dy_forged")
    assert forged.returncode == 1 and forged.stderr.startswith("error: log in or send an API token")


def test_unreachable_manager(manager: Manager) -> None:
    out = manager.cli("ws", "ls", token="dy_x")
    assert out.returncode == 1
    import os
    import subprocess

    from tests.support import DEVYARD

    env = {**os.environ, "DEVYARD_URL": "http://127.0.0.1:9", "DEVYARD_TOKEN": "dy_x"}
    out2 = subprocess.run([DEVYARD, "ws", "ls"], env=env, capture_output=True, text=True, timeout=60)
    assert out2.returncode == 1 and "cannot reach the manager at http://127.0.0.1:9" in out2.stderr


def test_users(manager: Manager) -> None:
    add = manager.cli("user", "add", "gina", "--data-dir", str(manager.data_dir), token=None, input="")
    assert add.returncode == 0 and "added user gina" in add.stdout and "password:" in add.stdout
    again = manager.cli("user", "add", "gina", "--data-dir", str(manager.data_dir), token=None, input="")
    assert again.returncode == 1 and again.stderr.strip() == "error: user 'gina' already exists"
    via_api = manager.cli("user", "add", "hank", "--admin", "--password-stdin", input="hank-password\n")
    assert via_api.returncode == 0, via_api.stderr
    ls = manager.cli("user", "ls")
    assert ls.returncode == 0 and "gina" in ls.stdout and "hank" in ls.stdout
    short = manager.cli(
        "user", "add", "ivan", "--password-stdin", "--data-dir", str(manager.data_dir), token=None, input="short\n"
    )
    assert short.returncode == 1 and "password" in short.stderr


def test_doctor_and_version(manager: Manager) -> None:
    out = manager.cli("doctor", token=None)
    assert out.returncode == 0 and "engine" in out.stdout and "code-server" in out.stdout
    assert "path mode: every workspace shares the dashboard's origin" in " ".join(
        out.stdout.split()
    )  # the suite runs in path mode
    assert manager.cli("--version", token=None).stdout.strip()
