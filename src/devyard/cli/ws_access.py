"""`devyard ws share|unshare|ports|port|logs|open`: reaching a workspace once it exists.

Who else may open it, which of its ports are forwarded and to whom, its engine's log, and its URL. Registered on
`ws_app` from cli/ws.py; cli/__init__.py imports this module before cli/backups.py, so `ws --help` keeps its order.
"""

from __future__ import annotations

import webbrowser
from typing import Annotated

import httpx
import typer
from rich.table import Table

from devyard.apiclient import Api
from devyard.cli.ws import OwnerOpt, _api, _owner, console, ws_app
from devyard.errors import DevyardError, Invalid

GroupOpt = Annotated[bool, typer.Option("--group", help="WHO is a group: each member, as members come and go.")]


@ws_app.command("share")
def share(name: str, who: Annotated[str, typer.Argument(metavar="WHO")], group: GroupOpt = False) -> None:
    """Let another user (or, with --group, a group's members) open your workspace."""
    if group:
        _api().request("POST", f"/workspaces/{name}/group-shares", json={"group": who})
    else:
        _api().request("POST", f"/workspaces/{name}/shares", json={"user": who})
    console.print(f"{name} is shared with {'group ' if group else ''}{who}")


@ws_app.command("unshare")
def unshare(name: str, who: Annotated[str, typer.Argument(metavar="WHO")], group: GroupOpt = False) -> None:
    """Stop sharing your workspace with a user (or, with --group, a group)."""
    _api().request("DELETE", f"/workspaces/{name}/{'group-shares' if group else 'shares'}/{who}")
    console.print(f"{name} is no longer shared with {'group ' if group else ''}{who}")


@ws_app.command("ports")
def ports(name: str, owner: OwnerOpt = None) -> None:
    """List a workspace's forwarded ports: listening now, or given a visibility, with their URLs."""
    found = _api().request("GET", f"/workspaces/{name}/ports", params=_owner(owner))
    if not found:
        console.print(f"{name}: nothing listens on a TCP port, and no port has a visibility chosen")
        return
    table = Table("port", "visibility", "listening", "url")
    for p in found:
        table.add_row(str(p["port"]), p["visibility"], "yes" if p["listening"] else "no", p["url"])
    console.print(table)


@ws_app.command("port")
def port(
    name: str,
    number: Annotated[int, typer.Argument(metavar="PORT", help="The TCP port inside the workspace.", min=1, max=65535)],
    visibility: Annotated[
        str,
        typer.Option(
            "--visibility",
            help="private (you), shared (you and the workspace's shares) or public (anyone with the link, where allowed).",
        ),
    ],
) -> None:
    """Choose who may open one of your workspace's ports at its own origin."""
    if visibility not in ("private", "shared", "public"):
        raise Invalid(f"--visibility takes private, shared or public, not '{visibility}'", code="invalid_visibility")
    changed = _api().request("PUT", f"/workspaces/{name}/ports/{number}", json={"visibility": visibility})
    console.print(f"{name}: port {number} is {changed['visibility']}: {changed['url']}", highlight=False)


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
        with api.http.stream(
            "GET", f"/workspaces/{name}/logs/stream", params={"lines": lines}, timeout=httpx.Timeout(10, read=None)
        ) as response:
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
    url = ws["url"] if "://" in ws["url"] else api.url + ws["url"]  # its own origin, or a path on the manager's
    print(url)
    try:
        webbrowser.open(url)
    except webbrowser.Error:
        pass
