"""SSH into workspaces with Debian's own OpenSSH client, through a real manager, real engines and real sandboxes.

Two users, each with a system account and a sandbox per workspace. `devyard config-ssh` writes
the block, then plain `ssh`, `scp`, `sftp` and `rsync` run as a developer's would (BatchMode:
any host-key or password prompt fails the run). The attacks are a real tenant's: reaching another
user's localhost server through `ssh -L`, opening another user's workspace, keeping a session
after the token it was opened with is revoked or the share it relied on is taken back.
"""

from __future__ import annotations

import base64
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from devyard import osaccounts as accounts
from devyard.ssh import client_config
from tests.browser import chromium, login, shot
from tests.sshclient import Dev, developer
from tests.support import DEVYARD, Manager, free_port, kill_tree, passable_dir, start_manager, wait_for

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="per-user OS accounts and sandboxes need root")


@pytest.fixture(scope="module")
def base() -> Iterator[Path]:
    with passable_dir("devyard-ssh-") as folder:
        yield folder


@pytest.fixture(scope="module")
def users() -> Iterator[tuple[str, str]]:
    names = (f"sa{secrets.token_hex(3)}", f"sb{secrets.token_hex(3)}")
    yield names
    for name in names:
        account = accounts.lookup(name)
        if account:
            accounts.kill_processes(account, Path("/"))
            subprocess.run(["userdel", account.name], check=False, capture_output=True)


@pytest.fixture(scope="module")
def m(base: Path, users: tuple[str, str]) -> Iterator[Manager]:
    env = {"DEVYARD_OS_ACCOUNTS": "on", "DEVYARD_SANDBOX": "on", "DEVYARD_ACTIVITY_FLUSH_S": "0.5"}
    with start_manager(base / "data", extra_env=env) as manager:
        for name in users:
            manager.add_user(name)
        yield manager


@pytest.fixture(scope="module")
def ann(m: Manager, base: Path, users: tuple[str, str]) -> Dev:
    dev = developer(m, base, users[0])
    with m.api(dev.token) as api:
        assert api.put("/secrets/SSH_TEST_SECRET", json={"value": "it's a 'secret' \"value\""}).status_code in (
            200,
            201,
        )
        assert api.post("/workspaces", json={"name": "proj"}).status_code == 201
    m.wait_status("proj", "running", dev.token, timeout=180)
    return dev


@pytest.fixture(scope="module")
def bob(m: Manager, base: Path, users: tuple[str, str]) -> Dev:
    dev = developer(m, base, users[1])
    with m.api(dev.token) as api:
        assert api.post("/workspaces", json={"name": "other"}).status_code == 201
    m.wait_status("other", "running", dev.token, timeout=180)
    return dev


def test_config_ssh_then_plain_ssh_is_the_workspace_terminal(m: Manager, ann: Dev) -> None:
    ann.config.parent.mkdir(mode=0o700, exist_ok=True)
    ann.config.write_text("Host example\n  User someone\n")
    done = ann.devyard("config-ssh")
    assert done.returncode == 0, done.stderr
    text = ann.config.read_text()
    assert text.startswith("Host example\n  User someone\n") and text.count(client_config.START) == 1
    assert "Host devyard--proj\n" in text and f"User dy-{ann.user}" in text
    again = ann.devyard("config-ssh")  # idempotent: the same section, nothing written
    assert again.returncode == 0 and "no changes" in again.stdout and ann.config.read_text() == text

    done = ann.run("devyard--proj", 'pwd; id -un; hostname; printf "%s\\n" "$SSH_TEST_SECRET"; echo "$HOME"')
    assert done.returncode == 0, done.stderr
    folder = m.data_dir / "workspaces" / ann.user / "proj"
    assert done.stdout.splitlines() == [
        str(folder / "files"),
        f"dy-{ann.user}",
        "proj",  # the sandbox's own host name
        "it's a 'secret' \"value\"",
        str(folder / "home"),
    ]
    # Pinned, never trusted on first use: devyard's known_hosts holds the host CA and nothing else.
    known = (ann.home / ".config" / "devyard" / "ssh" / "known_hosts").read_text().splitlines()
    assert len(known) == 1 and known[0].startswith("@cert-authority devyard--* ssh-ed25519 ")
    assert not (ann.home / ".ssh" / "known_hosts").exists()
    second = ann.run("devyard--proj", "true")  # BatchMode: a prompt would fail it
    assert second.returncode == 0, second.stderr
    with m.api() as api:
        entries = api.get("/audit", params={"action": "workspace.ssh"}).json()
    assert any(e["actor"] == ann.user and e["target"] == f"{ann.user}/proj" for e in entries)


def test_with_a_token_file_ssh_needs_none_of_devyards_variables(ann: Dev) -> None:
    """As a desktop IDE started from a launcher runs it: no DEVYARD_URL, no DEVYARD_TOKEN in ssh's environment."""
    token = ann.home / "devyard-token"
    token.write_text(ann.token + "\n")
    token.chmod(0o600)
    try:
        done = ann.devyard("config-ssh", "--token-file", str(token))
        assert done.returncode == 0, done.stderr
        bare = {k: v for k, v in ann.env.items() if k not in ("DEVYARD_URL", "DEVYARD_TOKEN")}
        ran = subprocess.run(
            ann.ssh_argv("devyard--proj", "echo from a launcher"), env=bare, capture_output=True, text=True, timeout=120
        )
        assert ran.returncode == 0 and ran.stdout == "from a launcher\n", ran.stderr
    finally:
        ann.configured()


def test_a_pty_session_and_devyard_ssh(ann: Dev) -> None:
    ann.configured()
    done = ann.run("-tt", "devyard--proj", "tty; stat -c %U /proc/self/fd/0")  # a PTY, the account's own
    assert done.returncode == 0 and "/dev/pts/" in done.stdout and f"dy-{ann.user}" in done.stdout, done.stdout
    done = ann.devyard("ssh", "proj", "--", "echo", "from devyard ssh")
    assert done.returncode == 0 and done.stdout == "from devyard ssh\n", done.stderr


def test_scp_sftp_and_rsync(ann: Dev, base: Path, m: Manager) -> None:
    ann.configured()
    payload = base / "payload.bin"
    payload.write_bytes(os.urandom(3 << 20))
    up = ann.run(str(payload), "devyard--proj:uploaded.bin", tool="scp")
    assert up.returncode == 0, up.stderr
    files = m.data_dir / "workspaces" / ann.user / "proj" / "files"
    assert (files / "uploaded.bin").read_bytes() == payload.read_bytes()
    assert (files / "uploaded.bin").stat().st_uid == accounts.lookup(ann.user).uid  # type: ignore[union-attr]
    back = base / "back.bin"
    down = ann.run("devyard--proj:uploaded.bin", str(back), tool="scp")
    assert down.returncode == 0, down.stderr
    assert back.read_bytes() == payload.read_bytes()

    listed = ann.run("-b", "-", "devyard--proj", tool="sftp", input="pwd\nls -1\n")
    assert listed.returncode == 0, listed.stderr
    assert f"Remote working directory: {files}" in listed.stdout and "uploaded.bin" in listed.stdout

    tree = base / "tree"
    (tree / "sub").mkdir(parents=True)
    (tree / "sub" / "a.txt").write_text("alpha\n")
    synced = subprocess.run(
        ["rsync", "-a", "-e", f"ssh -F {ann.config} -o BatchMode=yes", f"{tree}/", "devyard--proj:synced/"],
        env=ann.env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert synced.returncode == 0, synced.stderr
    assert (files / "synced" / "sub" / "a.txt").read_text() == "alpha\n"


def _serve(dev: Dev, alias: str, port: int, word: str) -> subprocess.Popen[str]:
    """A one-line TCP server on the workspace's own localhost, started over SSH (the session keeps it running)."""
    script = (
        "import socket\ns = socket.socket()\ns.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
        f"s.bind(('127.0.0.1', {port}))\ns.listen()\nprint('listening', flush=True)\n"
        f"while True:\n    c, _ = s.accept()\n    c.sendall({(word + chr(10)).encode()!r})\n    c.close()\n"
    )
    encoded = base64.b64encode(script.encode()).decode()
    proc = dev.open(alias, f"echo {encoded} | base64 -d > /tmp/serve.py && exec python3 /tmp/serve.py")
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    if line != "listening":
        end(proc)
        raise AssertionError(f"the server did not start: {line} {proc.stderr.read() if proc.stderr else ''}")
    return proc


def end(proc: subprocess.Popen[str]) -> None:
    """Stop an ssh client this test started, by pid, and close its pipes."""
    kill_tree(proc.pid)
    proc.wait()
    for pipe in (proc.stdout, proc.stderr):
        if pipe is not None:
            pipe.close()


def _read(port: int) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        return s.recv(100)


def test_a_session_cannot_climb_out_of_the_sandbox(ann: Dev) -> None:
    """Every process of a session, sshd's own included, is inside the sandbox's root: no working folder leads to the host's."""
    canary = Path(tempfile.mkdtemp(prefix="devyard-canary-", dir="/tmp"))
    (canary / "host-only").write_text("the host's /tmp\n")
    canary.chmod(0o755)
    (canary / "host-only").chmod(0o644)
    try:
        attack = (
            'for p in /proc/[0-9]*; do (cd "$p/cwd" 2>/dev/null && cd ../../../../../../../../../../.. '
            f'&& cat "tmp/{canary.name}/host-only" 2>/dev/null); (cat "$p/root/tmp/{canary.name}/host-only" 2>/dev/null); done; echo done'
        )
        done = ann.configured().run("devyard--proj", attack)
        assert done.returncode == 0, done.stderr
        assert done.stdout == "done\n", f"a session read the host's /tmp: {done.stdout!r}"
    finally:
        shutil.rmtree(canary)


def test_a_certificate_opens_only_the_workspace_it_was_made_for(m: Manager, ann: Dev) -> None:
    """A certificate minted for one workspace, presented to another of the same owner (same account), is refused."""
    with m.api(ann.token) as api:
        assert api.post("/workspaces", json={"name": "second"}).status_code == 201
    m.wait_status("second", "running", ann.token, timeout=180)
    ann.configured()
    assert ann.run("devyard--proj", "true").returncode == 0  # a fresh certificate for proj in the cache
    cache = ann.home / ".cache" / "devyard" / "ssh"
    known = ann.home / ".config" / "devyard" / "ssh" / "known_hosts"

    def with_key_of(made_for: str, target: str) -> subprocess.CompletedProcess[str]:
        argv = [
            *("ssh", "-F", "/dev/null", "-o", f"ProxyCommand={DEVYARD} ssh --stdio {target}"),
            *("-o", f"IdentityFile={cache / made_for / 'id_ed25519'}", "-o", "IdentitiesOnly=yes"),
            *("-o", f"CertificateFile={cache / made_for / 'id_ed25519-cert.pub'}", "-o", "BatchMode=yes"),
            *("-o", f"UserKnownHostsFile={known}", "-o", "StrictHostKeyChecking=yes", "-o", f"HostKeyAlias={target}"),
            *("-l", f"dy-{ann.user}", target, "echo in"),
        ]
        return subprocess.run(argv, env=ann.env, capture_output=True, text=True, timeout=120)

    assert with_key_of("devyard--proj", "devyard--proj").stdout == "in\n"
    refused = with_key_of("devyard--proj", "devyard--second")
    assert refused.returncode == 255 and "Permission denied" in refused.stderr, refused.stdout + refused.stderr
    with m.api(ann.token) as api:
        assert api.delete("/workspaces/second").status_code == 204


def test_port_forwarding_reaches_only_the_workspaces_own_ports(ann: Dev, bob: Dev) -> None:
    theirs = _serve(bob.configured(), "devyard--other", 7811, "bob's")
    mine = _serve(ann.configured(), "devyard--proj", 7812, "ann's")
    tunnels: list[subprocess.Popen[str]] = []
    try:
        local_mine, local_theirs, host = free_port(), free_port(), free_port()
        manager_port = int(ann.manager.url.rsplit(":", 1)[1])
        tunnels.append(
            ann.open(
                "-N",
                *("-L", f"{local_mine}:localhost:7812"),
                *("-L", f"{local_theirs}:localhost:7811"),
                *("-L", f"{host}:localhost:{manager_port}"),
                "devyard--proj",
            )
        )
        assert wait_for(lambda: _try(local_mine), 60, "the tunnel to ann's own port") == b"ann's\n"
        # Bob's server listens on 7811 of his own sandbox; from ann's, 7811 is nobody's.
        assert _try(local_theirs) in (b"", None)
        # Nor does "localhost" mean this host's: the manager itself listens on its loopback.
        assert _http(host) == b""
        # Nor can -R open anything, nor a tunnel go anywhere but localhost.
        refused = ann.run("-o", "ExitOnForwardFailure=yes", "-R", "7900:localhost:22", "devyard--proj", "true")
        assert refused.returncode != 0
        far = free_port()
        tunnels.append(ann.open("-N", "-L", f"{far}:example.com:80", "devyard--proj"))
        time.sleep(1)
        assert _try(far) in (b"", None)
    finally:
        for proc in [*tunnels, theirs, mine]:
            end(proc)


def _http(port: int) -> bytes:
    """What an HTTP server answers through a tunnel to `port` (b"": nothing there)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.sendall(b"GET /healthz HTTP/1.0\r\nHost: localhost\r\n\r\n")
            return s.recv(100)
    except OSError:
        return b""


def _try(port: int) -> bytes | None:
    try:
        return _read(port)
    except OSError:
        return None


def test_agent_forwarding_is_off(ann: Dev, base: Path) -> None:
    ann.configured()
    agent = subprocess.run(["ssh-agent", "-s"], capture_output=True, text=True, check=True).stdout
    sock = agent.split("SSH_AUTH_SOCK=")[1].split(";")[0]
    pid = int(agent.split("SSH_AGENT_PID=")[1].split(";")[0])
    try:
        env = {**ann.env, "SSH_AUTH_SOCK": sock}
        done = subprocess.run(
            ann.ssh_argv("-A", "devyard--proj", 'echo "agent:${SSH_AUTH_SOCK:-none}"'),
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0 and done.stdout.strip() == "agent:none", done.stdout + done.stderr
    finally:
        os.kill(pid, signal.SIGTERM)


def test_another_users_workspace_is_refused(ann: Dev, bob: Dev) -> None:
    done = bob.devyard("ssh", "--stdio", f"devyard--{ann.user}--proj")
    assert done.returncode != 0 and "no workspace you may open" in done.stderr
    done = bob.devyard("ssh", "--stdio", f"{ann.user}/proj")  # named outright: the manager refuses it
    assert done.returncode != 0 and "no workspace" in done.stderr and "proj" in done.stderr
    with ann.manager.api(bob.token) as api:
        r = api.post(f"/workspaces/proj/ssh/certificate?owner={ann.user}", json={"public_key": "ssh-ed25519 AAAA"})
        assert r.status_code == 404


def test_a_stopped_workspace_wakes_and_ssh_is_activity(m: Manager, ann: Dev) -> None:
    ann.configured()
    with m.api(ann.token) as api:
        assert api.post("/workspaces/proj/stop").status_code == 202
    m.wait_status("proj", "stopped", ann.token)
    done = ann.run("devyard--proj", "echo awake")
    assert done.returncode == 0 and done.stdout == "awake\n", done.stderr
    assert "is stopped: starting it" in done.stderr and "is running" in done.stderr
    with m.api(ann.token) as api:
        before = api.get("/workspaces/proj").json()["last_activity_at"]
        time.sleep(1.2)
        assert ann.run("devyard--proj", "true").returncode == 0
        after = wait_for(
            lambda: (a := api.get("/workspaces/proj").json()["last_activity_at"]) != before and a, 10, "activity noted"
        )
    assert after > (before or "")


def test_revoking_the_token_ends_an_open_session(m: Manager, ann: Dev) -> None:
    ann.configured()
    with m.api(ann.token) as api:
        created = api.post("/tokens", json={"name": "short-lived"}).json()
    dev = Dev(ann.user, ann.home, created["token"], m)
    session = dev.open("devyard--proj", "echo started; sleep 300")
    try:
        assert session.stdout is not None and session.stdout.readline() == "started\n"
        began = time.monotonic()
        with m.api(ann.token) as api:
            assert api.delete(f"/tokens/{created['id']}").status_code == 204
        session.wait(timeout=10)
        took = time.monotonic() - began
        print(f"session ended {took:.2f} s after the token was revoked")
        assert session.returncode != 0
    finally:
        end(session)


def test_unsharing_ends_the_sharees_session(m: Manager, ann: Dev, bob: Dev) -> None:
    with m.api(ann.token) as api:
        assert api.post("/workspaces/proj/shares", json={"user": bob.user}).status_code == 201
    done = bob.devyard("config-ssh")
    assert done.returncode == 0 and f"devyard--{ann.user}--proj" in done.stdout, done.stdout + done.stderr
    shared = bob.run(f"devyard--{ann.user}--proj", "id -un; pwd")
    assert shared.returncode == 0, shared.stderr
    assert shared.stdout.split() == [
        f"dy-{ann.user}",
        str(m.data_dir / "workspaces" / ann.user / "proj" / "files"),
    ], shared.stderr
    session = bob.open(f"devyard--{ann.user}--proj", "echo started; sleep 300")
    try:
        assert session.stdout is not None and session.stdout.readline() == "started\n"
        with m.api(ann.token) as api:
            assert api.delete(f"/workspaces/proj/shares/{bob.user}").status_code == 204
        session.wait(timeout=10)
        assert session.returncode != 0
    finally:
        end(session)
    again = bob.run(f"devyard--{ann.user}--proj", "true")
    assert again.returncode != 0


def test_the_workspace_page_offers_vs_code_desktop_and_the_ssh_line(m: Manager, ann: Dev, base: Path) -> None:
    """In Chromium: the owner's page links VS Code Desktop to the workspace's folder over SSH, and shows the line to copy."""
    with chromium(base / "chromium") as context:
        page = context.new_page()
        login(page, m.url, ann.user, f"{ann.user}-password")
        page.goto(f"{m.url}/workspaces/proj")
        link = page.locator("#ssh-vscode")
        folder = m.data_dir / "workspaces" / ann.user / "proj" / "files"
        assert link.get_attribute("href") == f"vscode://vscode-remote/ssh-remote+devyard--proj{folder}"
        assert page.locator("#ssh-lines").inner_text().splitlines() == ["devyard config-ssh", "ssh devyard--proj"]
        assert f"dy-{ann.user}" in page.locator("#ssh-state").inner_text()
        shot(page, "ssh-card")
