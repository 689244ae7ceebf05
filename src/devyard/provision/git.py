"""Cloning a workspace's files from a git URL, refusing every URL form that could run a command.

git's own transports can run programs (`ext::sh -c ...`), read file descriptors (`fd::`), turn a
URL into an option (`-uupload-pack=...`) or hand ssh a host that is an option
(`ssh://-oProxyCommand=...`). Only https, ssh (URL or scp-like) and file:// below an allowed root
pass `check_url`; the clone also pins git's protocol allow-list, so a redirect or a submodule
cannot reach another transport. User text is always an argument after `--`, never shell text.

Credentials come from the owner's secrets (`Credentials.from_secrets`): a token goes to https
remotes as a header through git's environment-borne config, an SSH private key to ssh remotes as
a 0600 file in a private temporary folder that is removed when the clone ends. Neither is ever on a
command line (where `ps` shows it), in the URL, or in a log.

Nothing of the manager's own is used: the clone runs as the workspace's account, with an empty
home of its own, no system or global git config (so no credential helper of root's), no agent, no
~/.ssh and no ~/.netrc, and an environment built from scratch (PATH and the admin's `engine_env`).
"""

from __future__ import annotations

import base64
import os
import re
import select
import shlex
import subprocess
import sys
import tempfile
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit, urlunsplit

from devyard import osaccounts
from devyard.errors import Invalid, ProvisionError
from devyard.osaccounts import Account
from devyard.provision.progress import Progress

MAX_URL = 2048
_TRANSPORT = re.compile(r"^[A-Za-z0-9+.-]+::")
_SCP = re.compile(r"^(?:(?P<user>[A-Za-z0-9._-]+)@)?(?P<host>[A-Za-z0-9.-]+):(?P<path>[^/].*|/.*)$")
_HOST = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$|^\[[0-9A-Fa-f:.]+\]$")
GIT_TOKEN, GIT_USERNAME, GIT_SSH_KEY, GIT_KNOWN_HOSTS = "GIT_TOKEN", "GIT_USERNAME", "GIT_SSH_KEY", "GIT_KNOWN_HOSTS"
DEFAULT_PATH = "/usr/local/bin:/usr/bin:/bin"
_PROGRESS = re.compile(r"(Counting|Compressing|Receiving|Resolving) objects:\s+\d+% \((\d+)/(\d+)\)")


_HOST_PART = r"[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?(?::[0-9]{1,5})?"
_SEGMENT = r"(?!\.\.?(?:/|$))[A-Za-z0-9._~+-]+"


def url_pattern(file_roots: list[Path]) -> str:
    """The git URLs check_url takes, as one regular expression (the API schema's `pattern` for git_url).

    check_url says what is wrong in words; this is the same language, as JSON Schema states it: https
    and ssh URLs (a user name but no password), scp-like `user@host:path`, and file:// URLs below the
    allowed folders, in printable ASCII.
    """
    forms = [
        rf"https://(?:[A-Za-z0-9._~][A-Za-z0-9._~-]*@)?{_HOST_PART}(?:/[!-~]*)?",
        rf"ssh://(?:[A-Za-z0-9._~][A-Za-z0-9._~-]*@)?{_HOST_PART}(?:/[!-~]*)?",
        r"(?![!-~]*://)(?:[A-Za-z0-9._][A-Za-z0-9._-]*@)?[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?:[!-9;-~][!-~]*",
    ]
    roots = [re.escape(str(root.resolve())) for root in file_roots]
    if roots:
        forms.append(rf"file://(?:localhost)?(?:{'|'.join(roots)})(?:/{_SEGMENT})*/?")
    return f"^(?:{'|'.join(forms)})$"


def check_url(url: str, file_roots: list[Path]) -> str:
    """`url` when it is an https, ssh or allowed file:// git URL (url_pattern's language); Invalid naming the problem otherwise."""
    checked = _check_url(url, file_roots)
    if not re.fullmatch(url_pattern(file_roots), url):
        raise Invalid(
            "a git URL is https://host/path, ssh://[user@]host/path, user@host:path or file:///path, "
            "in printable ASCII (no query or fragment after a bare host)",
            code="invalid_git_url",
        )
    return checked


def _check_url(url: str, file_roots: list[Path]) -> str:
    if not url or len(url) > MAX_URL:
        raise Invalid(f"a git URL is 1-{MAX_URL} characters", code="invalid_git_url")
    if any(ord(c) < 0x21 or ord(c) == 0x7F for c in url):
        raise Invalid("a git URL may not contain spaces or control characters", code="invalid_git_url")
    if url.startswith("-"):
        raise Invalid("a git URL may not start with '-' (git would read it as an option)", code="invalid_git_url")
    if _TRANSPORT.match(url):
        raise Invalid(
            "git transport helpers such as ext:: and fd:: are not allowed; use https://, ssh:// or file://",
            code="invalid_git_url",
        )
    if "://" not in url:
        scp = _SCP.match(url)
        if scp and _HOST.match(scp["host"]) and not scp["host"].startswith("-"):
            return url
        raise Invalid("a git URL must be https://, ssh://, user@host:path or file://", code="invalid_git_url")
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme == "https":
        if parts.password is not None:
            raise Invalid(
                "do not put a password or token in the git URL: it would end up in logs", code="git_url_credentials"
            )
        _check_host(parts.hostname)
        return url
    if scheme == "ssh":
        _check_host(parts.hostname)
        if parts.username and parts.username.startswith("-"):
            raise Invalid("an ssh user name may not start with '-'", code="invalid_git_url")
        return url
    if scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise Invalid("file:// git URLs name a path on this machine (file:///path)", code="invalid_git_url")
        path = Path(unquote(parts.path)).resolve()
        if not any(path.is_relative_to(root.resolve()) for root in file_roots):
            allowed = ", ".join(str(r) for r in file_roots) or "none are configured (git_file_roots)"
            raise Invalid(
                f"file:// git URLs must be below an allowed folder; allowed: {allowed}", code="git_url_not_allowed"
            )
        return url
    raise Invalid(
        f"git URLs with scheme '{scheme}' are not allowed; use https://, ssh:// or file://", code="invalid_git_url"
    )


def _check_host(host: str | None) -> None:
    if not host or host.startswith("-") or not _HOST.match(host):
        raise Invalid("the git URL has no valid host name", code="invalid_git_url")


def redact(url: str) -> str:
    """The URL without any user information, for logs and errors."""
    if "://" not in url:
        return url
    parts = urlsplit(url)
    if not parts.username and not parts.password:
        return url
    host = parts.hostname or ""
    netloc = host + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


@dataclass(frozen=True)
class Credentials:
    """What the owner's secrets give a clone: a token for https remotes, a private key for ssh ones."""

    user: str = field(default="x-access-token")
    token: str | None = field(default=None, repr=False)
    ssh_key: str | None = field(default=None, repr=False)
    known_hosts: str | None = field(
        default=None, repr=False
    )  # pinned host keys; without them the first key seen is trusted

    @classmethod
    def from_secrets(cls, env: Mapping[str, str]) -> Credentials | None:
        """The credentials in secrets GIT_TOKEN (+ GIT_USERNAME), GIT_SSH_KEY (+ GIT_KNOWN_HOSTS); None when there are none."""
        if not env.get(GIT_TOKEN) and not env.get(GIT_SSH_KEY):
            return None
        return cls(
            user=env.get(GIT_USERNAME) or "x-access-token",
            token=env.get(GIT_TOKEN) or None,
            ssh_key=env.get(GIT_SSH_KEY) or None,
            known_hosts=env.get(GIT_KNOWN_HOSTS) or None,
        )


def is_ssh(url: str) -> bool:
    """Whether git reaches `url` over ssh (ssh:// or the scp-like user@host:path)."""
    return url.lower().startswith("ssh://") or ("://" not in url and _SCP.match(url) is not None)


def _ssh_command(keys: Path, credentials: Credentials | None) -> str:
    """GIT_SSH_COMMAND: no config, agent or key of the host's; never prompt; only the owner's key; host keys in the clone's own file."""
    known = keys / "known_hosts"
    options = [
        "-F",
        "/dev/null",
        "-o",
        "IdentitiesOnly=yes",
        "-o",
        "IdentityAgent=none",
        "-o",
        "BatchMode=yes",
        "-o",
        f"UserKnownHostsFile={known}",
        "-o",
        "GlobalKnownHostsFile=/dev/null",
    ]
    if credentials and credentials.known_hosts:
        known.write_text(credentials.known_hosts.strip() + "\n")
        options += ["-o", "StrictHostKeyChecking=yes"]
    else:
        options += ["-o", "StrictHostKeyChecking=accept-new"]
    if credentials and credentials.ssh_key:
        key = keys / "id"
        # ssh refuses a key file others can read, and a key without its final newline.
        fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(credentials.ssh_key.strip() + "\n")
        options = ["-i", str(key), *options]
    return shlex.join(["ssh", *options])


def clone(
    url: str,
    dest: Path,
    *,
    timeout_s: float,
    progress: Progress,
    allow_file: bool,
    env: Mapping[str, str] | None = None,
    credentials: Credentials | None = None,
    account: Account | None = None,
) -> None:
    """Shallow-clone `url` into the empty folder `dest` as `account` (None: the manager's own), reporting git's object counts.

    ProvisionError on failure. An https remote gets `credentials.token` as a Basic authorization
    header through git's environment-borne config; an ssh remote gets `credentials.ssh_key` as a
    private key file. `env` adds variables (the admin's engine_env: a proxy, say) to the clean environment.
    """
    protocols = ["-c", "protocol.allow=never", "-c", "protocol.https.allow=always", "-c", "protocol.ssh.allow=always"]
    if allow_file:
        protocols += ["-c", "protocol.file.allow=always"]
    argv = [
        "git",
        *protocols,
        "-c",
        "transfer.fsckObjects=true",
        "-c",
        "core.hooksPath=/dev/null",
        "-c",
        "credential.helper=",
        "clone",
        "--depth",
        "1",
        "--single-branch",
        "--no-recurse-submodules",
        "--progress",
        "--",
        url,
        str(dest),
    ]
    with tempfile.TemporaryDirectory(prefix="devyard-git-") as scratch:  # 0700, removed with the key in it
        home = Path(scratch)
        if account is not None:
            os.chown(home, account.uid, account.gid)
        run_env = {
            "PATH": os.environ.get("PATH") or DEFAULT_PATH,
            **(env or {}),
            "HOME": str(home),
            "XDG_CONFIG_HOME": str(home),
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_CONFIG_GLOBAL": "/dev/null",
            "GIT_TERMINAL_PROMPT": "0",
            "GIT_ASKPASS": "/bin/false",
            "SSH_ASKPASS": "/bin/false",
            "LC_ALL": "C",
        }
        if credentials and credentials.token and url.lower().startswith("https://"):
            parts = urlsplit(url)
            origin = f"https://{parts.hostname}" + (f":{parts.port}" if parts.port else "") + "/"
            basic = base64.b64encode(f"{credentials.user}:{credentials.token}".encode()).decode()
            run_env.update(
                GIT_CONFIG_COUNT="1",
                GIT_CONFIG_KEY_0=f"http.{origin}.extraHeader",
                GIT_CONFIG_VALUE_0=f"Authorization: Basic {basic}",
            )
        if is_ssh(url):
            run_env["GIT_SSH_COMMAND"] = _ssh_command(home, credentials)
            if account is not None:
                for item in home.iterdir():
                    os.chown(item, account.uid, account.gid)
        _run(argv, run_env, url, timeout_s, progress, account)


def _run(
    argv: list[str], run_env: dict[str, str], url: str, timeout_s: float, progress: Progress, account: Account | None
) -> None:
    """Run the clone as `account`, following its progress, within `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    as_account = osaccounts.popen_args(account)
    proc = subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=run_env,
        start_new_session=True,
        cwd="/",
        **as_account,
    )
    assert proc.stderr is not None
    said: deque[str] = deque(maxlen=6)  # git's and ssh's last messages, the reason of a failure
    try:
        buffer = b""
        os.set_blocking(proc.stderr.fileno(), False)
        while True:
            chunk = _read_some(proc, deadline)
            if chunk is None:
                raise ProvisionError(
                    f"git clone of {redact(url)} did not finish within {timeout_s:.0f} s", code="git_clone_timeout"
                )
            buffer += chunk
            *lines, buffer = re.split(rb"[\r\n]", buffer)
            for raw in [*lines, *([buffer] if chunk == b"" else [])]:
                line = raw.decode("utf-8", "replace").strip()
                found = _PROGRESS.search(line)
                if found:
                    progress(f"clone: {found[1].lower()} objects", int(found[2]), int(found[3]))
                elif line and not line.startswith(("Cloning into", "Warning: Permanently added")):
                    said.append(line)
            if chunk == b"":
                break
    finally:
        proc.stderr.close()
        if sys.exc_info()[0] is not None:  # a timeout, or the caller's progress callback failed
            proc.kill()
            proc.wait()
    code = proc.wait()
    if code != 0:
        detail = (" ".join(said) or f"git exited with status {code}").replace(url, redact(url))
        raise ProvisionError(f"git clone of {redact(url)} failed: {detail}", code="git_clone_failed")


def _read_some(proc: subprocess.Popen[bytes], deadline: float) -> bytes | None:
    """Some of git's stderr; b"" at its end; None when the deadline passed."""
    assert proc.stderr is not None
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        ready, _, _ = select.select([proc.stderr], [], [], min(left, 1.0))
        if ready:
            data = proc.stderr.read(65536)
            if data is None:
                continue
            return bytes(data)
