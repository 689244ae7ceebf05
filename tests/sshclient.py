"""A developer's machine for SSH tests: their own HOME, token and ~/.ssh/config, and Debian's OpenSSH client."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from tests.support import DEVYARD, Manager


@dataclass
class Dev:
    """A developer's machine: their HOME, their token, their ~/.ssh/config."""

    user: str
    home: Path
    token: str
    manager: Manager

    @property
    def config(self) -> Path:
        """Their ~/.ssh/config."""
        return self.home / ".ssh" / "config"

    @property
    def env(self) -> dict[str, str]:
        """Their environment: this one without devyard's or an agent's variables, plus their HOME, URL and token."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("DEVYARD_", "SSH_AUTH_SOCK", "XDG_"))}
        return {**env, "HOME": str(self.home), "DEVYARD_URL": self.manager.url, "DEVYARD_TOKEN": self.token}

    def devyard(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Run the devyard CLI as them."""
        return subprocess.run([DEVYARD, *args], env=self.env, capture_output=True, text=True, timeout=180)

    def configured(self) -> Dev:
        """With devyard's section in ~/.ssh/config (config-ssh run now)."""
        done = self.devyard("config-ssh")
        assert done.returncode == 0, done.stderr
        return self

    def ssh_argv(self, *args: str, tool: str = "ssh") -> list[str]:
        """An OpenSSH command line on their config; BatchMode: any prompt fails it."""
        return [tool, "-F", str(self.config), "-o", "BatchMode=yes", "-o", "ConnectTimeout=120", *args]

    def run(self, *args: str, tool: str = "ssh", input: str | None = None) -> subprocess.CompletedProcess[str]:
        """Run ssh (or scp, sftp) to its end."""
        return subprocess.run(
            self.ssh_argv(*args, tool=tool), env=self.env, capture_output=True, text=True, timeout=180, input=input
        )

    def open(self, *args: str) -> subprocess.Popen[str]:
        """Start ssh and leave it running (stop it with end())."""
        return subprocess.Popen(
            self.ssh_argv(*args),
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )


def developer(m: Manager, base: Path, user: str) -> Dev:
    """A developer `user` with a home under `base` and a token of their own."""
    home = base / f"home-{user}"
    home.mkdir(exist_ok=True)
    with m.api(user) as api:
        token = api.post("/tokens", json={"name": "laptop"}).json()["token"]
    return Dev(user, home, token, m)
