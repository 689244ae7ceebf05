"""The SSH server of a workspace: OpenSSH's own sshd, one per connection, as the workspace's account in its sandbox.

The manager runs `sshd -i` (inetd mode: one connection on stdin and stdout, no listening socket at
all) for each SSH connection the gateway admits, and relays the WebSocket's bytes to it. Run
unprivileged, sshd can log in only the account it runs as, needs neither /run/sshd nor an sshd
account, and still separates its pre-authentication work into a seccomp-sandboxed child. The
reference server means scp, sftp, rsync, VS Code's Remote-SSH and JetBrains Gateway all work as
they do anywhere; a server of our own (asyncssh) would have meant our own PTY, exec and sftp.

Its files are written by the manager into a folder of its own per workspace (root's, readable by
the account's group only), bound read-only into the sandbox at each start:
- `sshd_config`: only certificates from devyard's user CA log in (no authorized_keys, no
  passwords); `-L` only to the sandbox's own loopback, which is this workspace's and nobody
  else's (the sandbox has a network namespace of its own); no `-R`, no unix-socket forwarding,
  no X11, agent forwarding only when an admin allows it; the session's variables are the engine's
  (secrets included), set with SetEnv, so a shell over SSH is the browser terminal's twin;
- `host_key` and its certificate (keys.py);
- `passwd` and `group`, bound over the sandbox's /etc files: the account's home is the workspace's
  folder (where a session starts) with a real shell, and no `tty` group (unprivileged sshd hands a
  PTY to that group, which the sandbox's /dev/pts cannot, and the session would end).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from pathlib import Path, PurePath

from devyard.osaccounts import Account
from devyard.ssh.keys import Authority, workspace_principal

SSHD = "/usr/sbin/sshd"
PACKAGE = "openssh-server"
SHELL = "/bin/bash"
FILES = ("sshd_config", "host_key", "host_key-cert.pub", "user_ca.pub", "principals", "passwd", "group")


def available() -> str | None:
    """Why workspaces cannot serve SSH on this host (one plain sentence), or None."""
    if not Path(SSHD).is_file():
        return f"{SSHD} is not installed (apt-get install -y {PACKAGE})"
    return None


def _quoted(value: str) -> str:
    """A value as sshd_config's SetEnv reads it: in double quotes, with quotes and backslashes escaped."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def config(folder: PurePath, env: Mapping[str, str], agent_forwarding: bool) -> str:
    """The sshd_config of a workspace whose files are in `folder` (as seen in the sandbox)."""
    # sshd refuses a SetEnv value with a newline in it, and a session cannot carry a NUL: such a
    # variable reaches the engine's terminals only.
    setenv = " ".join(
        f"{name}={_quoted(value)}" for name, value in env.items() if "\n" not in value and "\0" not in value
    )
    lines = [
        f"HostKey {folder / 'host_key'}",
        f"HostCertificate {folder / 'host_key-cert.pub'}",
        f"TrustedUserCAKeys {folder / 'user_ca.pub'}",
        f"AuthorizedPrincipalsFile {folder / 'principals'}",  # this workspace's principal: a certificate opens one workspace
        "PidFile none",
        "UsePAM no",
        "StrictModes no",  # its files are root's, readable by the account's group: what sshd expects of a user's own
        "PubkeyAuthentication yes",
        "AuthorizedKeysFile none",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        "HostbasedAuthentication no",
        f"AllowAgentForwarding {'yes' if agent_forwarding else 'no'}",
        "AllowTcpForwarding local",
        "PermitOpen localhost:* 127.0.0.1:* [::1]:*",
        "AllowStreamLocalForwarding no",
        "GatewayPorts no",
        "X11Forwarding no",
        "PermitTunnel no",
        "PermitUserRC no",
        "PermitUserEnvironment no",
        "PrintMotd no",
        "PrintLastLog no",
        "UseDNS no",
        "LogLevel INFO",
        # No keep-alives: SSH traffic is activity for the idle policy, and an idle session must not look busy.
        "ClientAliveInterval 0",
        "Subsystem sftp internal-sftp",
    ]
    if setenv:
        lines.append(f"SetEnv {setenv}")
    return "\n".join(lines) + "\n"


def passwd(account: Account, folder: Path, source: str) -> str:
    """/etc/passwd as the sandbox sees it: the host's, with the account's home in its workspace folder and a shell."""
    out = [line for line in source.splitlines() if line and not line.startswith(f"{account.name}:")]
    out.append(f"{account.name}:x:{account.uid}:{account.gid}:devyard workspace:{folder}:{SHELL}")
    return "\n".join(out) + "\n"


def group(source: str) -> str:
    """/etc/group as the sandbox sees it: the host's without `tty`."""
    return "\n".join(line for line in source.splitlines() if line and not line.startswith("tty:")) + "\n"


def write(
    folder: Path,
    authority: Authority,
    *,
    uid: str,
    owner: str,
    name: str,
    account: Account,
    files_dir: Path,
    env: Mapping[str, str],
    agent_forwarding: bool,
) -> None:
    """Make `folder` (root's, 0750 to the account's group) hold the workspace's sshd files, afresh."""
    shutil.rmtree(folder, ignore_errors=True)
    os.mkdir(folder, 0o750)
    os.chown(folder, 0, account.gid)
    host = authority.host_key(uid, owner, name)
    contents = {
        "sshd_config": (config(folder, env, agent_forwarding), 0o640),
        "host_key": (host.private, 0o640),
        "host_key-cert.pub": (host.certificate, 0o644),
        "user_ca.pub": (authority.user_ca_public + "\n", 0o644),
        "principals": (workspace_principal(uid) + "\n", 0o644),
        "passwd": (passwd(account, files_dir, Path("/etc/passwd").read_text()), 0o644),
        "group": (group(Path("/etc/group").read_text()), 0o644),
    }
    for file, (text, mode) in contents.items():
        fd = os.open(folder / file, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chown(folder / file, 0, account.gid, follow_symlinks=False)


def argv(folder: Path) -> list[str]:
    """sshd serving one connection on stdin and stdout, logging to stderr (the sandbox has no syslog)."""
    return [SSHD, "-i", "-e", "-f", str(folder / "sshd_config")]
