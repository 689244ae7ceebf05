"""`devyard ssh` and `devyard config-ssh`: OpenSSH into workspaces through the manager, for terminals and desktop IDEs.

`devyard ssh NAME` runs the system's `ssh` with devyard's options; `config-ssh` writes the same
options into ~/.ssh/config (ssh/client_config.py), so plain `ssh devyard--NAME`, scp, sftp, rsync,
VS Code's Remote-SSH and JetBrains Gateway work. Both go through two hidden modes of this command:
`--prepare ALIAS` (a fresh key for the session and a certificate for it from the manager, valid
minutes; ssh reads them when it connects) and `--stdio ALIAS` (ssh's ProxyCommand: its bytes over
the manager's WebSocket, with a stopped workspace's start reported on stderr).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from devyard.apiclient import Api
from devyard.cli.ws import console
from devyard.errors import DevyardError
from devyard.ssh import client_config, proxy
from devyard.ssh.client_config import Entry
from devyard.ssh.keys import alias
from devyard.ssh.proxy import cache_dir, devyard_argv, known_hosts_file, pin, prepare, resolve


def ssh_options(devyard: list[str], host_alias: str, login: str) -> list[str]:
    """The `ssh -o` options `devyard ssh` gives, as config-ssh writes them."""
    folder = cache_dir() / host_alias
    run = client_config.command_line(devyard)
    return [
        "-o", f"ProxyCommand={run} ssh --stdio %n",
        "-o", f"IdentityFile={folder}/id_ed25519",
        "-o", f"CertificateFile={folder}/id_ed25519-cert.pub",
        "-o", "IdentitiesOnly=yes",
        "-o", f"UserKnownHostsFile={known_hosts_file()}",
        "-o", "GlobalKnownHostsFile=/dev/null",
        "-o", "StrictHostKeyChecking=yes",
        "-o", "ForwardAgent=no",
        "-o", "LogLevel=ERROR",
        "-l", login,
    ]  # fmt: skip


def ssh(
    target: Annotated[str, typer.Argument(help="The workspace: NAME, OWNER/NAME, or a host alias (devyard--NAME).")],
    command: Annotated[list[str] | None, typer.Argument(help="A command to run instead of a shell (after --).")] = None,
    stdio: Annotated[bool, typer.Option("--stdio", help="Relay stdin and stdout (ssh's ProxyCommand).")] = False,
    prepare_only: Annotated[
        bool, typer.Option("--prepare", help="Make this session's key and certificate, then exit (ssh's Match exec).")
    ] = False,
) -> None:
    """Open a shell in a workspace over SSH, or run a command in it (starting it when stopped)."""
    if stdio or prepare_only:  # as ssh runs them (devyard/__main__.py runs these without the rest of the CLI)
        sys.exit(proxy.main("--stdio" if stdio else "--prepare", [target]))
    api = Api()
    api.require_token()
    owner, name = resolve(api, target)
    me = api.request("GET", "/me")["name"]
    host_alias = alias(owner, name, me)
    answer = prepare(api, owner, name, host_alias)
    argv = ["ssh", *ssh_options(devyard_argv(), host_alias, answer["login"]), host_alias]
    argv += command or []  # ssh stops reading options at the host: the rest is the remote command
    try:
        os.execvp("ssh", argv)
    except FileNotFoundError as exc:
        raise DevyardError("ssh is not installed (Debian: apt-get install openssh-client)", code="no_ssh") from exc


def config_ssh(
    ssh_config: Annotated[
        Path | None, typer.Option("--ssh-config", help="The file to write (default ~/.ssh/config).")
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the section, change nothing.")] = False,
    token_file: Annotated[
        Path | None,
        typer.Option(
            "--token-file",
            exists=True,
            dir_okay=False,
            help="A file holding your API token, for ssh run without DEVYARD_TOKEN (a desktop IDE started from a launcher).",
        ),
    ] = None,
) -> None:
    """Write (or update) a host entry per workspace you may open into ~/.ssh/config: `ssh devyard--NAME` then works."""
    api = Api()
    api.require_token()
    info = api.request("GET", "/ssh")
    if not info["available"]:
        raise DevyardError(f"workspaces on this manager do not serve SSH: {info['detail']}", code="ssh_unavailable")
    me = api.request("GET", "/me")["name"]
    workspaces = api.request("GET", "/workspaces", params={"shared": "1"})
    entries = [Entry(alias(w["owner"], w["name"], me), w["ssh_login"], f"{w['owner']}/{w['name']}") for w in workspaces]
    path = ssh_config or Path.home() / ".ssh" / "config"
    # The manager's URL (and how to trust it, and where the token is) go with the command: ssh may run without this shell's variables.
    given = {"DEVYARD_URL": api.url, "DEVYARD_CA_CERT": os.environ.get("DEVYARD_CA_CERT")}
    given["DEVYARD_TOKEN_FILE"] = str(token_file.resolve()) if token_file else None
    run = ["env", *(f"{k}={v}" for k, v in given.items() if v), *devyard_argv()]
    section = client_config.render(run, api.url, entries, cache_dir(), known_hosts_file())
    text = path.read_text() if path.exists() else ""
    new = client_config.updated(text, section)
    if dry_run:
        sys.stdout.write(section)
        return
    pin(info["known_hosts"])
    if new == text:
        console.print(f"{path}: no changes to make ({len(entries)} workspace(s))")
        return
    client_config.write_atomically(path, new, 0o600)
    console.print(f"{path}: {len(entries)} workspace(s): " + (", ".join(e.alias for e in entries) or "none yet"))
