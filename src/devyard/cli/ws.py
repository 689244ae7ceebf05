"""`devyard ws ...`: workspaces through the manager's REST API."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, BinaryIO

import typer
from rich.console import Console
from rich.live import Live
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TransferSpeedColumn,
)
from rich.table import Table

from devyard.apiclient import Api
from devyard.errors import BackendError, Invalid

ws_app = typer.Typer(
    help="Manage workspaces (talks to the manager at DEVYARD_URL with DEVYARD_TOKEN).", no_args_is_help=True
)
console = Console()
err = Console(stderr=True)
SETTLED = {"running", "stopped", "failed"}
Wait = Annotated[bool, typer.Option("--wait/--no-wait", help="Wait until the workspace has settled.")]
ForUsers = Annotated[
    Path | None, typer.Option("--for-users", help="A file of user names, one per line: one workspace each (admins).")
]
OwnerOpt = Annotated[str | None, typer.Option("--owner", help="Another user's workspace (admins, or shared with you).")]


def _owner(owner: str | None) -> dict[str, str] | None:
    return {"owner": owner} if owner else None


def _api() -> Api:
    api = Api()
    api.require_token()
    return api


def _wait(api: Api, name: str, want: str, owner: str | None = None, timeout_s: float = 180.0) -> dict[str, Any]:
    """Poll until the workspace settles, with a progress bar while it provisions; BackendError when it fails or times out."""
    deadline = time.monotonic() + timeout_s
    columns = (
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=err, transient=True) as bar:
        task = bar.add_task(f"{name}: waiting", total=None)
        while True:
            ws: dict[str, Any] = api.request("GET", f"/workspaces/{name}", params=_owner(owner))
            if ws["status"] == want:
                return ws
            if ws["status"] == "failed":
                raise BackendError(
                    f"workspace {name} failed: {ws.get('error') or 'see `devyard ws logs ' + name + '`'}",
                    code="workspace_failed",
                )
            step = ws.get("progress")
            if step:
                bar.update(
                    task, description=f"{name}: {step['step']}", completed=step["current"], total=step["total"] or None
                )
                deadline = max(deadline, time.monotonic() + timeout_s)  # provisioning that moves is not stuck
            else:
                bar.update(task, description=f"{name}: {ws['status']}", total=None)
            if time.monotonic() > deadline:
                raise BackendError(f"workspace {name} is still {ws['status']} after {timeout_s:.0f} s", code="timeout")
            time.sleep(0.3)


def _show(api: Api, ws: dict[str, Any]) -> None:
    size = f"  size {ws['size']}" if ws.get("size") else ""
    console.print(f"{ws['name']}: [bold]{ws['status']}[/]  {api.url}{ws['url']}{size}")


@ws_app.command("ls")
def ls(all_users: Annotated[bool, typer.Option("--all", help="Every user's workspaces (admins).")] = False) -> None:
    """List your workspaces and those shared with you, with their status."""
    api = _api()
    rows = api.request("GET", "/workspaces", params={"all": "1"} if all_users else {"shared": "1"})
    table = Table("name", "owner", "status", "url", "created")
    for ws in rows:
        table.add_row(
            ws["name"], ws["owner"], ws["status"], api.url + ws["url"], ws["created_at"][:16].replace("T", " ")
        )
    console.print(table)


@ws_app.command("create")
def create(
    name: str,
    template: Annotated[
        str | None, typer.Option("--template", help="Template to start from (`devyard ws templates`).")
    ] = None,
    group: Annotated[list[str] | None, typer.Option("--group", help="Extension group (repeatable).")] = None,
    git: Annotated[
        str | None, typer.Option("--git", help="Git URL to clone (https://, ssh:// or an allowed file://).")
    ] = None,
    archive: Annotated[
        Path | None, typer.Option("--archive", help="A .zip, .tar or .tar.gz whose contents become the files.")
    ] = None,
    for_users: ForUsers = None,
    size: Annotated[
        str | None, typer.Option("--size", help="Size preset: memory, CPUs, disk (`devyard ws sizes`).")
    ] = None,
    start: Annotated[bool, typer.Option("--start/--no-start", help="Start it right away.")] = True,
    wait: Wait = True,
) -> None:
    """Create a workspace (and start it); with --for-users, one for each user in the file (admins)."""
    api = _api()
    if for_users is not None:
        if archive is not None:
            raise Invalid(
                "--for-users works with --template, --git and --group, not --archive", code="conflicting_sources"
            )
        body = {
            "users": _read_users(for_users),
            "name": name,
            "template": template,
            "git_url": git,
            "extension_groups": group or [],
            "start": start,
            "size": size,
        }
        outcomes = api.request("POST", "/workspaces/bulk", json=body)
        _follow_bulk(api, name, outcomes, "running" if start else "stopped", wait)
        return
    if archive is not None:
        if template or git:
            raise Invalid("--archive cannot be combined with --template or --git", code="conflicting_sources")
        ws = _upload(api, name, archive, group or [], start, size)
    else:
        body = {
            "name": name,
            "template": template,
            "extension_groups": group or [],
            "git_url": git,
            "start": start,
            "size": size,
        }
        ws = api.request("POST", "/workspaces", json=body)
    if wait:
        ws = _wait(api, name, "running" if start else "stopped")
    _show(api, ws)


def _read_users(path: Path) -> list[str]:
    """User names from a file: one per line; blank lines and # comments are skipped."""
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise Invalid(f"cannot read {path}: {exc.strerror}", code="users_file_unreadable") from exc
    users = [ln.split("#", 1)[0].strip() for ln in lines]
    users = [u for u in users if u]
    if not users:
        raise Invalid(f"{path} names no users (one per line)", code="no_users")
    return users


def _follow_bulk(
    api: Api, name: str, outcomes: list[dict[str, Any]], want: str, wait: bool, timeout_s: float = 600.0
) -> None:
    """A live table of each user's workspace until all settle; exit 1 when any failed."""
    errors = {o["user"]: o["error"] for o in outcomes if o["error"]}
    users = [o["user"] for o in outcomes]
    deadline = time.monotonic() + timeout_s

    def table() -> tuple[Table, bool]:
        rows = {w["owner"]: w for w in api.request("GET", "/workspaces", params={"all": "1"}) if w["name"] == name}
        out, settled = Table("user", "status", "progress", "detail"), True
        for user in users:
            w = rows.get(user)
            if user in errors or w is None:
                out.add_row(user, "[red]not created[/]", "", errors.get(user, "gone"))
                continue
            p = w.get("progress")
            step = f"{p['step']} {p['current']}/{p['total']}" if p and p["total"] else (p["step"] if p else "")
            settled &= w["status"] in (want, "failed")
            out.add_row(user, w["status"], step, w.get("error") or "")
        return out, settled

    with Live(console=console, auto_refresh=False) as live:
        while True:
            current, settled = table()
            live.update(current, refresh=True)
            if settled or not wait or time.monotonic() > deadline:
                break
            time.sleep(0.5)
    final = {
        w["owner"]: w["status"] for w in api.request("GET", "/workspaces", params={"all": "1"}) if w["name"] == name
    }
    if errors or any(final.get(u) == "failed" for u in users):
        raise typer.Exit(1)


def _upload(
    api: Api, name: str, archive: Path, groups: list[str], start: bool, preset: str | None = None
) -> dict[str, Any]:
    """POST the archive as multipart, streamed from disk, with an upload progress bar."""
    try:
        size = archive.stat().st_size
        f = archive.open("rb")
    except OSError as exc:
        raise Invalid(f"cannot read {archive}: {exc.strerror}", code="archive_unreadable") from exc
    columns = (TextColumn("uploading {task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn())
    with f, Progress(*columns, console=err, transient=True) as bar:
        task = bar.add_task(archive.name, total=size)
        reader = _Counting(f, lambda n: bar.advance(task, n))
        data = {
            "name": name,
            "start": "true" if start else "false",
            "extension_groups": ",".join(groups),
            **({"size": preset} if preset else {}),
        }
        result: dict[str, Any] = api.request(
            "POST",
            "/workspaces/upload",
            data=data,
            files={"archive": (archive.name, reader, "application/octet-stream")},
        )
        return result


class _Counting:
    """A file object that reports each read's size (httpx reads the multipart file part in chunks)."""

    def __init__(self, f: BinaryIO, on_read: Callable[[int], None]) -> None:
        self.f, self.on_read = f, on_read

    def read(self, size: int = -1) -> bytes:
        """Read like the wrapped file, reporting how much."""
        data = self.f.read(size)
        self.on_read(len(data))
        return data

    def __getattr__(self, attr: str) -> Any:
        return getattr(self.f, attr)


@ws_app.command("retry-provision")
def retry_provision(name: str, wait: Wait = True, owner: OwnerOpt = None) -> None:
    """Provision again a workspace whose provisioning failed."""
    _action(name, "retry-provision", "running", wait, owner)


@ws_app.command("add-groups")
def add_groups(name: str, groups: list[str]) -> None:
    """Add extension groups to your workspace: their settings (yours win) and extensions."""
    api = _api()
    with err.status(f"installing the extensions of {', '.join(groups)}…"):
        result = api.request("POST", f"/workspaces/{name}/extension-groups", json={"groups": groups})
    for o in result["extensions"]:
        console.print(
            ("[green]installed[/] " if o["installed"] else "[red]failed[/]    ") + f"{o['id']}  {o['detail']}",
            highlight=False,
        )
    if not all(o["installed"] for o in result["extensions"]):
        raise typer.Exit(1)


@ws_app.command("set")
def set_(
    name: str,
    size: Annotated[
        str | None,
        typer.Option("--size", help="Size preset (the workspace must be stopped); `default`: the manager's default."),
    ] = None,
    idle_timeout: Annotated[
        int | None,
        typer.Option(
            "--idle-timeout", help="Seconds without use before it is stopped (0: never; -1: the manager's default)."
        ),
    ] = None,
    owner: OwnerOpt = None,
) -> None:
    """Change a workspace's size or idle timeout."""
    body: dict[str, Any] = {}
    if size is not None:
        body["size"] = None if size == "default" else size
    if idle_timeout is not None:
        body["idle_timeout_s"] = None if idle_timeout < 0 else idle_timeout
    if not body:
        raise Invalid("give --size or --idle-timeout", code="nothing_to_change")
    api = _api()
    _show(api, api.request("PATCH", f"/workspaces/{name}", json=body, params=_owner(owner)))


@ws_app.command("sizes")
def list_sizes() -> None:
    """List the size presets (memory, CPUs, disk, processes) a workspace can have."""
    api = _api()
    table = Table("name", "memory", "CPUs", "disk", "processes", "description")
    for s in api.request("GET", "/sizes"):
        table.add_row(
            s["name"] + (" (default)" if s["default"] else ""),
            f"{s['memory_mb']} MB" if s["memory_mb"] else "no limit",
            f"{s['cpus']:g}" if s["cpus"] else "no limit",
            f"{s['disk_mb']} MB" if s["disk_mb"] else "no limit",
            str(s["pids_max"]),
            s["description"],
        )
    console.print(table)


@ws_app.command("templates")
def list_templates() -> None:
    """List the templates a workspace can be created from."""
    api = _api()
    table = Table("name", "tab", "extension groups", "git", "description")
    for t in api.request("GET", "/templates"):
        table.add_row(t["name"], t["tab"], ", ".join(t["extension_groups"]), t["git_url"] or "", t["description"])
    console.print(table)


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
def rm(
    name: str,
    keep_files: Annotated[bool, typer.Option("--keep-files", help="Keep the workspace folder.")] = False,
    owner: OwnerOpt = None,
    for_users: ForUsers = None,
) -> None:
    """Delete a workspace (and its files unless --keep-files); with --for-users, each listed user's (admins)."""
    api = _api()
    if for_users is not None:
        outcomes = api.request(
            "POST",
            "/workspaces/bulk/delete",
            json={"users": _read_users(for_users), "name": name, "keep_files": keep_files},
        )
        for o in outcomes:
            console.print(f"{o['user']:<24} " + (f"[red]{o['error']}[/]" if o["error"] else "deleted"), highlight=False)
        if any(o["error"] for o in outcomes):
            raise typer.Exit(1)
        return
    api.request(
        "DELETE", f"/workspaces/{name}", params={**({"keep_files": "1"} if keep_files else {}), **(_owner(owner) or {})}
    )
    console.print(f"deleted {name}" + (" (files kept)" if keep_files else ""))
