"""`devyard ws backup` and `devyard ws restore`: a workspace to a .tar.gz file and back, streamed both ways."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import httpx
import typer
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

from devyard.apiclient import Api
from devyard.cli.ws import OwnerOpt, Wait, _api, _owner, _show, _wait, console, err, ws_app
from devyard.errors import DevyardError, Invalid

CHUNK = 1 << 20
COLUMNS = (TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn())


@ws_app.command("backup")
def backup(
    name: str,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="File to write (default: NAME-<UTC time>.tar.gz here).")
    ] = None,
    owner: OwnerOpt = None,
) -> None:
    """Write a backup of a workspace (files, user-data, extension list) to a .tar.gz, even while it runs."""
    api = _api()
    target: Path | None = output
    try:
        with api.http.stream(
            "POST", f"/workspaces/{name}/backup", params=_owner(owner), timeout=httpx.Timeout(60, read=600)
        ) as response:
            if response.status_code >= 400:
                response.read()
                Api.decode(response)
            disposition = response.headers.get("content-disposition", "")
            suggested = disposition.partition('filename="')[2].rstrip('"') or f"{name}.tar.gz"
            target = output or Path(suggested)
            partial = target.with_name(f".{target.name}.partial")
            with partial.open("wb") as f, Progress(*COLUMNS, console=err, transient=True) as bar:
                task = bar.add_task(f"backing up {name}", total=None)
                for chunk in response.iter_bytes(CHUNK):
                    f.write(chunk)
                    bar.advance(task, len(chunk))
            partial.replace(target)
    except httpx.TransportError as exc:
        if target is not None:
            target.with_name(f".{target.name}.partial").unlink(missing_ok=True)
        raise DevyardError(
            f"the backup of {name} did not complete ({exc}); nothing was written", code="backup_incomplete"
        ) from exc
    except OSError as exc:
        raise Invalid(f"cannot write {target}: {exc.strerror}", code="output_unwritable") from exc
    console.print(f"{target}: {target.stat().st_size / (1 << 20):.1f} MB")


@ws_app.command("restore")
def restore(
    file: Path,
    name: Annotated[
        str | None, typer.Option("--name", help="Name of the new workspace (default: the backed-up one's).")
    ] = None,
    start: Annotated[bool, typer.Option("--start/--no-start", help="Start it once restored.")] = True,
    wait: Wait = True,
) -> None:
    """Create a workspace from a backup file made by `devyard ws backup` (or a scheduled one)."""
    api = _api()
    try:
        size = file.stat().st_size
        f = file.open("rb")
    except OSError as exc:
        raise Invalid(f"cannot read {file}: {exc.strerror}", code="backup_unreadable") from exc
    with f, Progress(*COLUMNS, console=err, transient=True) as bar:
        task = bar.add_task(f"uploading {file.name}", total=size)

        def body() -> Iterator[bytes]:
            while chunk := f.read(CHUNK):
                bar.advance(task, len(chunk))
                yield chunk

        params = {"start": "true" if start else "false", **({"name": name} if name else {})}
        ws = api.request(
            "POST",
            "/workspaces/restore",
            params=params,
            content=body(),
            headers={"content-type": "application/gzip", "content-length": str(size)},
            timeout=httpx.Timeout(60, write=600, read=600),
        )
    if wait:
        ws = _wait(api, ws["name"], "running" if start else "stopped", timeout_s=600.0)
    _show(api, ws)
