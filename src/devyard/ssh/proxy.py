"""The two halves of `devyard ssh` that OpenSSH runs itself, kept light: they start for every connection.

`--prepare ALIAS` (ssh's `Match exec`, while it reads its configuration): a new Ed25519 key for
the session and the manager's certificate for it, valid minutes, written where the configuration
points ssh's IdentityFile and CertificateFile (ssh reads them before a ProxyCommand could write
them), with the workspace it names remembered beside them. `--stdio ALIAS` (ssh's ProxyCommand):
stdin and stdout relayed over the manager's WebSocket, a stopped workspace's start reported on
stderr. `devyard` runs these without importing the rest of the CLI (devyard/__main__.py): the
developer waits for each at every connection.
"""

from __future__ import annotations

import asyncio
import json
import os
import ssl
import sys
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from devyard.apiclient import Api, ca_bundle
from devyard.errors import ApiError, DevyardError, Invalid, NotFound
from devyard.ssh import client_config
from devyard.ssh.keys import ALIAS_PREFIX

CHUNK = 256 * 1024
TARGET = "workspace.json"  # beside the key: the workspace an alias named when the key was made


def _xdg(variable: str, default: str) -> Path:
    return Path(os.environ.get(variable) or Path.home() / default)


def cache_dir() -> Path:
    """Where session keys and certificates are kept (one folder per host alias)."""
    return _xdg("XDG_CACHE_HOME", ".cache") / "devyard" / "ssh"


def known_hosts_file() -> Path:
    """devyard's own known_hosts file: the host CA's line."""
    return _xdg("XDG_CONFIG_HOME", ".config") / "devyard" / "ssh" / "known_hosts"


def devyard_argv() -> list[str]:
    """How ssh should run this command: the installed `devyard` script, or this Python with -m devyard."""
    script = Path(sys.argv[0])
    if script.name == "devyard" and script.exists():
        return [str(script.resolve())]
    return [sys.executable, "-m", "devyard"]


def resolve(api: Api, target: str) -> tuple[str, str]:
    """(owner, name) of `[OWNER/]NAME` or a host alias (devyard--NAME, devyard--OWNER--NAME), among what the caller may open."""
    me = api.request("GET", "/me")["name"]
    if "/" in target:
        owner, _, name = target.partition("/")
        return owner, name
    rest = target.removeprefix(ALIAS_PREFIX)
    workspaces = api.request("GET", "/workspaces", params={"shared": "1"})
    known = {(w["owner"], w["name"]) for w in workspaces}
    if (me, rest) in known or (not target.startswith(ALIAS_PREFIX)):
        return me, rest
    # devyard--OWNER--NAME: names may hold "--" too, so every split is tried against what exists.
    parts = rest.split("--")
    for i in range(1, len(parts)):
        owner, name = "--".join(parts[:i]), "--".join(parts[i:])
        if (owner, name) in known:
            return owner, name
    raise NotFound(f"no workspace you may open is called {target}", code="workspace_not_found")


def prepare(api: Api, owner: str, name: str, host_alias: str) -> dict[str, Any]:
    """A new key for this session and the manager's certificate for it, in the cache folder of `host_alias`; the answer."""
    key = Ed25519PrivateKey.generate()
    public = key.public_key().public_bytes(Encoding.OpenSSH, PublicFormat.OpenSSH).decode()
    answer: dict[str, Any] = api.request(
        "POST", f"/workspaces/{name}/ssh/certificate", json={"public_key": public}, params={"owner": owner}
    )
    folder = cache_dir() / host_alias
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    private = key.private_bytes(Encoding.PEM, PrivateFormat.OpenSSH, NoEncryption()).decode()
    client_config.write_atomically(folder / "id_ed25519", private, 0o600)
    client_config.write_atomically(folder / "id_ed25519.pub", public + "\n", 0o644)
    client_config.write_atomically(folder / "id_ed25519-cert.pub", answer["certificate"] + "\n", 0o644)
    client_config.write_atomically(folder / TARGET, json.dumps({"owner": owner, "name": name}) + "\n", 0o600)
    pin(answer["known_hosts"])
    return answer


def remembered(host_alias: str) -> tuple[str, str] | None:
    """The workspace the last `--prepare` of `host_alias` found, so that `--stdio` need not ask again."""
    try:
        found = json.loads((cache_dir() / host_alias / TARGET).read_text())
        return str(found["owner"]), str(found["name"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def pin(line: str) -> None:
    """Make devyard's known_hosts file hold the host CA line (kept with any others, for other managers)."""
    path = known_hosts_file()
    lines = path.read_text().splitlines() if path.exists() else []
    if line not in lines:
        client_config.write_atomically(path, "\n".join([*lines, line]) + "\n", 0o644)


def _ws_url(api: Api, owner: str, name: str) -> str:
    base = api.url.replace("https://", "wss://", 1).replace("http://", "ws://", 1)
    return f"{base}/api/v1/workspaces/{name}/ssh?owner={owner}"


def _denied(exc: InvalidStatus) -> str:
    try:
        return str(json.loads(exc.response.body or b"")["error"]["message"])
    except (ValueError, KeyError, TypeError):
        return f"the manager refused the connection (HTTP {exc.response.status_code})"


async def relay(api: Api, owner: str, name: str) -> int:
    """Relay this process's stdin and stdout to the workspace's SSH server; the exit status (ssh then reports the end)."""
    verify = ca_bundle()
    context: ssl.SSLContext | None = None
    if api.url.startswith("https://"):
        context = ssl.create_default_context(cafile=verify) if isinstance(verify, str) else ssl.create_default_context()
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=CHUNK)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(0, "rb", buffering=0))
    out_transport, out_protocol = await loop.connect_write_pipe(
        lambda: asyncio.streams.FlowControlMixin(), os.fdopen(1, "wb", buffering=0)
    )
    out = asyncio.StreamWriter(out_transport, out_protocol, None, loop)
    try:
        async with connect(
            _ws_url(api, owner, name),
            additional_headers={"authorization": f"Bearer {api.token}"},
            ssl=context,
            max_size=None,
            compression=None,
            ping_interval=20,
            open_timeout=30,
        ) as ws:
            while True:  # progress, then ready (or an error)
                message = await ws.recv()
                if isinstance(message, bytes):
                    raise Invalid("the manager sent SSH bytes before saying the session is ready", code="protocol")
                said = json.loads(message)
                if "progress" in said:
                    print(f"devyard: {said['progress']}", file=sys.stderr, flush=True)
                elif "error" in said:
                    print(f"devyard: {said['error']['message']}", file=sys.stderr, flush=True)
                    return 1
                elif "ready" in said:
                    break

            async def upstream() -> None:
                while data := await reader.read(CHUNK):
                    await ws.send(data)
                await ws.close()

            async def downstream() -> None:
                async for message in ws:
                    if isinstance(message, bytes):
                        out.write(message)
                        await out.drain()

            tasks = [asyncio.ensure_future(upstream()), asyncio.ensure_future(downstream())]
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if ws.close_code == 4403:
                print("devyard: the session was ended: access to the workspace was taken away", file=sys.stderr)
                return 1
            return 0
    except InvalidStatus as exc:
        print(f"devyard: {_denied(exc)}", file=sys.stderr, flush=True)
        return 1
    except (OSError, ConnectionClosed, TimeoutError) as exc:
        print(f"devyard: cannot reach the manager at {api.url}: {exc}", file=sys.stderr, flush=True)
        return 1


def main(mode: str, args: list[str]) -> int:
    """`devyard ssh --stdio|--prepare ALIAS`: the exit status; errors are one line on stderr (ssh shows it)."""
    if len(args) != 1:
        print(f"usage: devyard ssh {mode} HOST_ALIAS", file=sys.stderr)
        return 2
    try:
        api = Api()
        api.require_token()
        target = args[0]
        if mode == "--stdio":
            owner, name = remembered(target) or resolve(api, target)
            return asyncio.run(relay(api, owner, name))
        known = remembered(target)
        if known is not None:  # the workspace this alias named last time: one call, not three
            try:
                prepare(api, *known, target)
                return 0
            except ApiError as exc:
                if exc.status != 404:  # gone or renamed since: find it again
                    raise
        prepare(api, *resolve(api, target), target)
        return 0
    except DevyardError as exc:
        print(f"devyard: {exc.message}", file=sys.stderr)
        return 1
