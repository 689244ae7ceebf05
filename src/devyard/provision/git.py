"""Cloning a workspace's files from a git URL, refusing every URL form that could run a command.

git's own transports can run programs (`ext::sh -c ...`), read file descriptors (`fd::`), turn a
URL into an option (`-uupload-pack=...`) or hand ssh a host that is an option
(`ssh://-oProxyCommand=...`). Only https, ssh (URL or scp-like) and file:// below an allowed root
pass `check_url`; the clone also pins git's protocol allow-list, so a redirect or a submodule
cannot reach another transport. User text is always an argument after `--`, never shell text.
"""

from __future__ import annotations

import base64
import os
import re
import select
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import unquote, urlsplit, urlunsplit

from devyard.errors import Invalid, ProvisionError
from devyard.provision.progress import Progress

MAX_URL = 2048
_TRANSPORT = re.compile(r"^[A-Za-z0-9+.-]+::")
_SCP = re.compile(r"^(?:(?P<user>[A-Za-z0-9._-]+)@)?(?P<host>[A-Za-z0-9.-]+):(?P<path>[^/].*|/.*)$")
_HOST = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$|^\[[0-9A-Fa-f:.]+\]$")
_PROGRESS = re.compile(r"(Counting|Compressing|Receiving|Resolving) objects:\s+\d+% \((\d+)/(\d+)\)")


def check_url(url: str, file_roots: list[Path]) -> str:
    """`url` when it is an https, ssh or allowed file:// git URL; Invalid naming the problem otherwise."""
    if not url or len(url) > MAX_URL:
        raise Invalid(f"a git URL is 1-{MAX_URL} characters", code="invalid_git_url")
    if any(ord(c) < 0x21 or ord(c) == 0x7F for c in url):
        raise Invalid("a git URL may not contain spaces or control characters", code="invalid_git_url")
    if url.startswith("-"):
        raise Invalid("a git URL may not start with '-' (git would read it as an option)", code="invalid_git_url")
    if _TRANSPORT.match(url):
        raise Invalid("git transport helpers such as ext:: and fd:: are not allowed; use https://, ssh:// or file://",
                      code="invalid_git_url")
    if "://" not in url:
        scp = _SCP.match(url)
        if scp and _HOST.match(scp["host"]) and not scp["host"].startswith("-"):
            return url
        raise Invalid("a git URL must be https://, ssh://, user@host:path or file://", code="invalid_git_url")
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme == "https":
        if parts.password is not None:
            raise Invalid("do not put a password or token in the git URL: it would end up in logs", code="git_url_credentials")
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
            raise Invalid(f"file:// git URLs must be below an allowed folder; allowed: {allowed}", code="git_url_not_allowed")
        return url
    raise Invalid(f"git URLs with scheme '{scheme}' are not allowed; use https://, ssh:// or file://", code="invalid_git_url")


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


def clone(url: str, dest: Path, *, timeout_s: float, progress: Progress, allow_file: bool, env: dict[str, str] | None = None,
          credentials: tuple[str, str] | None = None) -> None:
    """Shallow-clone `url` into the empty folder `dest`, reporting git's object counts; ProvisionError on failure.

    `credentials` (user, token) go to an https remote as a Basic authorization header through git's
    environment-borne config, never on the command line (where `ps` shows it) nor in the URL.
    """
    protocols = ["-c", "protocol.allow=never", "-c", "protocol.https.allow=always", "-c", "protocol.ssh.allow=always"]
    if allow_file:
        protocols += ["-c", "protocol.file.allow=always"]
    argv = ["git", *protocols, "-c", "transfer.fsckObjects=true", "-c", "core.hooksPath=/dev/null",
            "clone", "--depth", "1", "--single-branch", "--no-recurse-submodules", "--progress", "--", url, str(dest)]
    run_env = {**(env if env is not None else os.environ),
               "GIT_TERMINAL_PROMPT": "0", "GIT_ASKPASS": "/bin/false", "SSH_ASKPASS": "/bin/false",
               "GIT_SSH_COMMAND": "ssh -o BatchMode=yes -o StrictHostKeyChecking=accept-new", "LC_ALL": "C"}
    if credentials and url.lower().startswith("https://"):
        parts = urlsplit(url)
        origin = f"https://{parts.hostname}" + (f":{parts.port}" if parts.port else "") + "/"
        basic = base64.b64encode(f"{credentials[0]}:{credentials[1]}".encode()).decode()
        run_env.update(GIT_CONFIG_COUNT="1", GIT_CONFIG_KEY_0=f"http.{origin}.extraHeader", GIT_CONFIG_VALUE_0=f"Authorization: Basic {basic}")
    deadline = time.monotonic() + timeout_s
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=run_env,
                            start_new_session=True)
    assert proc.stderr is not None
    try:
        last_line = ""
        buffer = b""
        os.set_blocking(proc.stderr.fileno(), False)
        while True:
            chunk = _read_some(proc, deadline)
            if chunk is None:
                raise ProvisionError(f"git clone of {redact(url)} did not finish within {timeout_s:.0f} s", code="git_clone_timeout")
            if chunk == b"":
                break
            buffer += chunk
            *lines, buffer = re.split(rb"[\r\n]", buffer)
            for raw in lines:
                line = raw.decode("utf-8", "replace").strip()
                if not line:
                    continue
                last_line = line
                found = _PROGRESS.search(line)
                if found:
                    progress(f"clone: {found[1].lower()} objects", int(found[2]), int(found[3]))
    finally:
        proc.stderr.close()
        if sys.exc_info()[0] is not None:  # a timeout, or the caller's progress callback failed
            proc.kill()
            proc.wait()
    code = proc.wait()
    if code != 0:
        detail = (buffer.decode("utf-8", "replace").strip() or last_line).replace(url, redact(url))
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
