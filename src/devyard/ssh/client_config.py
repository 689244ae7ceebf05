"""devyard's block in a developer's ~/.ssh/config: rendered, found, replaced in place, written atomically.

As `coder config-ssh` does (coder/coder cli/configssh.go): one section between fixed markers,
regenerated whole and compared, so a second run with nothing new changes nothing; the rest of the
file is left byte for byte; a file with a marker missing, doubled or out of order is refused
rather than guessed at. Unlike Coder, host keys are pinned (a host CA in devyard's own
known_hosts file, StrictHostKeyChecking yes) instead of not checked.

ssh reads IdentityFile and CertificateFile when it connects, before the ProxyCommand could write
them; so a `Match ... exec` line runs `devyard ssh --prepare %n` while the configuration is read,
which makes a key for the session and has the manager certify it (valid minutes).
"""

from __future__ import annotations

import os
import shlex
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from devyard.errors import Invalid
from devyard.ssh.keys import ALIAS_PREFIX

START = "# ------------START-DEVYARD------------"
END = "# ------------END-DEVYARD--------------"
HEADER = "# This section is managed by devyard (`devyard config-ssh`). DO NOT EDIT: run it again instead."


@dataclass(frozen=True, slots=True)
class Entry:
    """One workspace the user may open: its alias and the account its sessions log in as."""

    alias: str
    login: str
    shown: str  # owner/name


def command_line(argv: Sequence[str]) -> str:
    """`argv` as one line ssh runs through /bin/sh (ProxyCommand, Match exec), its own % escaped; refused with a newline."""
    if any("\n" in a or "\r" in a for a in argv):
        raise Invalid("the devyard command holds a newline; ssh cannot run it", code="invalid_path")
    return " ".join(shlex.quote(a) for a in argv).replace("%", "%%")


def render(devyard: Sequence[str], url: str, entries: Sequence[Entry], cache: Path, known_hosts: Path) -> str:
    """The whole managed section, markers included, for `entries` (sorted by alias: stable across runs)."""
    run = command_line(devyard)
    lines = [START, HEADER, f"# Manager: {url}", ""]
    for entry in sorted(entries, key=lambda e: e.alias):
        lines += [f"Host {entry.alias}", f"  # {entry.shown}", f"  User {entry.login}", ""]
    lines += [
        f'Match host {ALIAS_PREFIX}* exec "{run} ssh --prepare %n"',
        "",
        f"Host {ALIAS_PREFIX}*",
        f"  ProxyCommand {run} ssh --stdio %n",
        f"  IdentityFile {cache}/%n/id_ed25519",
        f"  CertificateFile {cache}/%n/id_ed25519-cert.pub",
        "  IdentitiesOnly yes",
        f"  UserKnownHostsFile {known_hosts}",
        "  GlobalKnownHostsFile /dev/null",
        "  StrictHostKeyChecking yes",
        "  ForwardAgent no",
        "  LogLevel ERROR",
        END,
    ]
    return "\n".join(lines) + "\n"


def split(text: str) -> tuple[str, str | None, str]:
    """The file around devyard's section: (before, section or None, after); Invalid when the markers are broken."""
    starts = [i for i, line in enumerate(text.splitlines(keepends=True)) if line.rstrip("\r\n") == START]
    ends = [i for i, line in enumerate(text.splitlines(keepends=True)) if line.rstrip("\r\n") == END]
    if not starts and not ends:
        return text, None, ""
    if len(starts) != 1 or len(ends) != 1 or ends[0] < starts[0]:
        raise Invalid(
            f"the SSH config has {len(starts)} start and {len(ends)} end marker(s) of devyard's section"
            + (" in the wrong order" if len(starts) == len(ends) == 1 else "")
            + "; mend it by hand (one of each, start first) and run again",
            code="ssh_config_markers",
        )
    lines = text.splitlines(keepends=True)
    return "".join(lines[: starts[0]]), "".join(lines[starts[0] : ends[0] + 1]), "".join(lines[ends[0] + 1 :])


def updated(text: str, section: str) -> str:
    """`text` with devyard's section replaced by `section`, or appended (after a blank line) when it had none."""
    before, _, after = split(text)
    if _ is None:
        if before and not before.endswith("\n"):
            before += "\n"
        return before + ("\n" if before.strip() else "") + section
    if not section.endswith("\n") and after:
        section += "\n"
    return before + section + after


def write_atomically(path: Path, text: str, mode: int = 0o600) -> None:
    """Replace `path` with `text` at once (a temporary file beside it, renamed), keeping its mode when it exists."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        mode = path.stat().st_mode & 0o777
    except FileNotFoundError:
        pass
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(tmp, mode)
        os.replace(tmp, path.resolve() if path.is_symlink() else path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
