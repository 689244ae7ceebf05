"""`devyard ws ...`: workspaces through the manager's REST API."""

from __future__ import annotations

import time
import webbrowser
from typing import Annotated, Any

import httpx
import typer
from rich.console import Console
from rich.table import Table

from devyard.cli.client import Api
from devyard.errors import BackendError, DevyardError

ws_app = typer.Typer(help="Manage workspaces (talks to the manager at DEVYARD_URL with DEVYARD_TOKEN).", no_args_is_help=True)
console = Console()
err = Console(stderr=True)
SETTLED = {"running", "stopped", "failed"}
Wait = Annotated[bool, typer.Option("--wait/--no-wait", help="Wait until the workspace has settled.")]
OwnerOpt = Annotated[str | None, typer.Option("--owner", help="Another user's workspace (admins, or shared with you).")]


def _owner(owner: str | None) -> dict[str, str] | None:
    return {"owner": owner} if owner else None


def _api() -> Api:
    api = Api()
    api.require_token()
    return api


def _wait(api: Api, name: str, want: str, owner: str | None = None, timeout_s: float = 180.0) -> dict[str, Any]:
    """Poll until the workspace settles; BackendError when it fails or does not reach `want` in time."""
    deadline = time.monotonic() + timeout_s
    with err.status(f"waiting for {name} to be {want}…"):
        while True:
            ws: dict[str, Any] = api.request("GET", f"/workspaces/{name}", params=_owner(owner))
            if ws["status"] == want:
                return ws
            if ws["status"] == "failed":
                raise BackendError(f"workspace {name} failed: {ws.get('error') or 'see `devyard ws logs ' + name + '`'}", code="workspace_failed")
            if time.monotonic() > deadline:
                raise BackendError(f"workspace {name} is still {ws['status']} after {timeout_s:.0f} s", code="timeout")
            time.sleep(0.3)


def _show(api: Api, ws: dict[str, Any]) -> None:
    console.print(f"{ws['name']}: [bold]{ws['status']}[/]  {api.url}{ws['url']}")


@ws_app.command("ls")
def ls(all_users: Annotated[bool, typer.Option("--all", help="Every user's workspaces (admins).")] = False) -> None:
    """List your workspaces and those shared with you, with their status."""
    api = _api()
    rows = api.request("GET", "/workspaces", params={"all": "1"} if all_users else {"shared": "1"})
    table = Table("name", "owner", "status", "url", "created")
    for ws in rows:
        table.add_row(ws["name"], ws["owner"], ws["status"], api.url + ws["url"], ws["created_at"][:16].replace("T", " "))
    console.print(table)


@ws_app.command("create")
def create(
    name: str,
    template: Annotated[str | None, typer.Option("--template", help="Template to start from.")] = None,
    group: Annotated[list[str] | None, typer.Option("--group", help="Extension group (repeatable).")] = None,
    git: Annotated[str | None, typer.Option("--git", help="Git URL to clone.")] = None,
    start: Annotated[bool, typer.Option("--start/--no-start", help="Start it right away.")] = True,
    wait: Wait = True,
) -> None:
    """Create a workspace (and start it)."""
    api = _api()
    body = {"name": name, "template": template, "extension_groups": group or [], "git_url": git, "start": start}
    ws = api.request("POST", "/workspaces", json=body)
    if wait:
        ws = _wait(api, name, "running" if start else "stopped")
    _show(api, ws)


def _action(name: str, action: str, want: str, wait: bool, owner: str | None) -> None:
    api = _api()
    ws = api.request("POST", f"/workspaces/{name}/{action}", params=_owner(owner))
    if wait:
        ws = _wait(api, name, want, owner)
    _show(api, ws)


@ws_app.command("start")
def start(name: str, wait: Wait = True, owner: OwnerOpt = None) -> None:
    """Start a workspace's engine."""
    _action(name, "start", "running", wait, owner)


@ws_app.command("stop")
def stop(name: str, wait: Wait = True, owner: OwnerOpt = None) -> None:
    """Stop a workspace's engine (its files stay)."""
    _action(name, "stop", "stopped", wait, owner)


@ws_app.command("restart")
def restart(name: str, wait: Wait = True, owner: OwnerOpt = None) -> None:
    """Stop and start a workspace's engine."""
    _action(name, "restart", "running", wait, owner)


@ws_app.command("rm")
def rm(name: str, keep_files: Annotated[bool, typer.Option("--keep-files", help="Keep the workspace folder.")] = False, owner: OwnerOpt = None) -> None:
    """Delete a workspace (and its files unless --keep-files)."""
    api = _api()
    api.request("DELETE", f"/workspaces/{name}", params={**({"keep_files": "1"} if keep_files else {}), **(_owner(owner) or {})})
    console.print(f"deleted {name}" + (" (files kept)" if keep_files else ""))


@ws_app.command("share")
def share(name: str, user: str) -> None:
    """Let another user open your workspace."""
    _api().request("POST", f"/workspaces/{name}/shares", json={"user": user})
    console.print(f"{name} is shared with {user}")


@ws_app.command("unshare")
def unshare(name: str, user: str) -> None:
    """Stop sharing your workspace with a user."""
    _api().request("DELETE", f"/workspaces/{name}/shares/{user}")
    console.print(f"{name} is no longer shared with {user}")


@ws_app.command("logs")
def logs(
    name: str,
    follow: Annotated[bool, typer.Option("-f", "--follow", help="Keep printing new lines.")] = False,
    lines: Annotated[int, typer.Option("-n", "--lines", help="How many lines from the end.")] = 200,
) -> None:
    """Print the engine's log."""
    api = _api()
    if not follow:
        for line in api.request("GET", f"/workspaces/{name}/logs", params={"lines": lines})["lines"]:
            print(line)
        return
    try:
        with api.http.stream("GET", f"/workspaces/{name}/logs/stream", params={"lines": lines}, timeout=httpx.Timeout(10, read=None)) as response:
            if response.status_code >= 400:
                response.read()
                Api.decode(response)
            for line in response.iter_lines():
                if line.startswith("data: "):
                    print(line[6:], flush=True)
    except KeyboardInterrupt:
        pass
    except httpx.TransportError as exc:
        raise DevyardError(f"lost the log stream: {exc}", code="stream_lost") from exc


@ws_app.command("open")
def open_(name: str) -> None:
    """Print a workspace's URL and open it in a browser when there is one."""
    api = _api()
    ws = api.request("GET", f"/workspaces/{name}")
    url = api.url + ws["url"]
    print(url)
    try:
        webbrowser.open(url)
    except webbrowser.Error:
        pass
