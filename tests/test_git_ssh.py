"""Cloning over ssh with the owner's GIT_SSH_KEY secret, against a real OpenSSH server.

The server is Debian's sshd (package openssh-server, installed by `make test-deps`), run on a free
loopback port with its own host key and an authorized_keys file made here; it serves the test
repository to the user running the tests. Skipped, with the reason, where there is no sshd.
"""

from __future__ import annotations

import getpass
import os
import shutil
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from devyard.engine import install
from devyard.provision.git import Credentials
from tests.support import Manager, free_port, kill_tree, make_repo, start_manager, wait_for

SSHD = Path("/usr/sbin/sshd")


@dataclass
class SshServer:
    """A running sshd and what a client needs: its port, host key line and one authorized private key."""

    port: int
    host_key_line: str
    client_key: str


def keygen(path: Path) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "devyard-test", "-f", str(path)], check=True)


@pytest.fixture(scope="module")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshServer]:
    if not SSHD.exists() or shutil.which("ssh-keygen") is None:
        pytest.skip("no OpenSSH server here (install Debian's openssh-server; `make test-deps` does as root)")
    root = tmp_path_factory.mktemp("sshd")
    keygen(root / "host")
    keygen(root / "client")
    (root / "authorized_keys").write_text((root / "client.pub").read_text())
    port = free_port()
    (root / "sshd_config").write_text(
        "\n".join(
            [
                f"Port {port}",
                "ListenAddress 127.0.0.1",
                f"HostKey {root / 'host'}",
                f"AuthorizedKeysFile {root / 'authorized_keys'}",
                f"PidFile {root / 'sshd.pid'}",
                "UsePAM no",
                "StrictModes no",
                "PasswordAuthentication no",
                "KbdInteractiveAuthentication no",
                "PermitRootLogin prohibit-password",
                "",
            ]
        )
    )
    if os.geteuid() == 0:
        Path("/run/sshd").mkdir(
            mode=0o755, exist_ok=True
        )  # sshd's privilege separation folder (systemd makes it at boot)
    log = (root / "sshd.log").open("wb")
    proc = subprocess.Popen(
        [str(SSHD), "-D", "-e", "-f", str(root / "sshd_config")],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:

        def listening() -> bool:
            with socket.socket() as s:
                return s.connect_ex(("127.0.0.1", port)) == 0

        wait_for(lambda: listening() or proc.poll() is not None, 20, "sshd listening")
        assert proc.poll() is None, (root / "sshd.log").read_text()
        host_key = (root / "host.pub").read_text().split()
        yield SshServer(port, f"[127.0.0.1]:{port} {host_key[0]} {host_key[1]}", (root / "client").read_text())
    finally:
        kill_tree(proc.pid)
        proc.wait()
        log.close()


def test_clone_over_ssh_with_the_owners_key(engine: install.Engine, sshd: SshServer, tmp_path: Path) -> None:
    repos = tmp_path / "repos"
    make_repo(repos / "starter.git", {"README.md": "# over ssh\n"})
    url = f"ssh://{getpass.getuser()}@127.0.0.1:{sshd.port}{repos / 'starter.git'}"
    manager: Manager = start_manager(tmp_path / "data")
    try:
        with manager.api() as api:
            # No key: the server refuses, and the workspace says why without prompting anyone.
            assert api.post("/workspaces", json={"name": "no-key", "git_url": url, "start": False}).status_code == 201
            failed = manager.wait_status("no-key", "failed")
            assert "Permission denied" in failed["error"] and "publickey" in failed["error"]
            # A pinned host key that does not match: refused, never trusted on first sight.
            wrong = (
                sshd.host_key_line.rsplit(" ", 1)[0]
                + " AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"
            )
            assert api.put("/secrets/GIT_SSH_KEY", json={"value": sshd.client_key}).status_code == 201
            assert api.put("/secrets/GIT_KNOWN_HOSTS", json={"value": wrong}).status_code == 201
            assert (
                api.post("/workspaces", json={"name": "wrong-host", "git_url": url, "start": False}).status_code == 201
            )
            assert "Host key verification failed" in manager.wait_status("wrong-host", "failed")["error"]
            # The right pinned host key and the owner's key: cloned.
            assert api.put("/secrets/GIT_KNOWN_HOSTS", json={"value": sshd.host_key_line}).status_code in (200, 201)
            assert (
                api.post("/workspaces", json={"name": "ssh-clone", "git_url": url, "start": False}).status_code == 201
            )
            manager.wait_status("ssh-clone", "stopped")
            # Without pinned host keys the first key seen is accepted.
            assert api.delete("/secrets/GIT_KNOWN_HOSTS").status_code == 204
            scp_like = (
                f"{getpass.getuser()}@127.0.0.1:{repos / 'starter.git'}"  # port 22: nothing listens, a clear failure
            )
            assert (
                api.post("/workspaces", json={"name": "first-sight", "git_url": url, "start": False}).status_code == 201
            )
            assert (
                api.post("/workspaces", json={"name": "scp-like", "git_url": scp_like, "start": False}).status_code
                == 201
            )
            manager.wait_status("first-sight", "stopped")
            assert "could not read from remote repository" in manager.wait_status("scp-like", "failed")["error"].lower()
        files = manager.data_dir / "workspaces" / "admin" / "ssh-clone" / "files"
        assert (files / "README.md").read_text() == "# over ssh\n" and (files / ".git" / "shallow").exists()
        logs = manager.log + "".join(
            p.read_text() for p in (manager.data_dir / "workspaces" / "admin").glob("*/logs/engine.log")
        )
        key_body = sshd.client_key.splitlines()[1]
        assert key_body not in logs and key_body not in (files / ".git" / "config").read_text()
        assert not [p for p in Path(os.environ.get("TMPDIR", "/tmp")).glob("devyard-ssh-*")]  # the key file is gone
    finally:
        manager.stop()


def test_which_urls_go_over_ssh_and_which_secrets_count() -> None:
    from devyard.provision.git import is_ssh

    assert is_ssh("ssh://git@example.com/a.git") and is_ssh("git@github.com:a/b.git") and is_ssh("SSH://h/x")
    assert not is_ssh("https://example.com/a.git") and not is_ssh("file:///srv/a.git")
    assert Credentials.from_secrets({"OTHER": "x"}) is None
    ssh = Credentials.from_secrets({"GIT_SSH_KEY": "-----BEGIN KEY-----"})
    assert ssh is not None and ssh.token is None and "BEGIN" not in repr(ssh)
    https = Credentials.from_secrets({"GIT_TOKEN": "t0k", "GIT_USERNAME": "bot"})
    assert https is not None and (https.user, https.token) == ("bot", "t0k") and "t0k" not in repr(https)
