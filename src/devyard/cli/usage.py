"""`devyard usage`: running hours, CPU, memory, disk, starts and estimated cost per user or workspace."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from devyard.cli.ws import _api, console


def usage(
    start: Annotated[
        str | None, typer.Option("--from", help="Start: a date or date-time (default: 30 days ago).")
    ] = None,
    end: Annotated[str | None, typer.Option("--to", help="End: a date or date-time (default: now).")] = None,
    group_by: Annotated[str, typer.Option("--group-by", help="user or workspace.")] = "user",
    as_csv: Annotated[bool, typer.Option("--csv", help="Print the lines as CSV.")] = False,
) -> None:
    """Show what workspaces used over a period (admins: everyone's; others: their own)."""
    params = {k: v for k, v in {"from": start, "to": end, "group_by": group_by}.items() if v is not None}
    api = _api()
    if as_csv:
        typer.echo(api.request("GET", "/usage", params={**params, "format": "csv"}), nl=False)
        return
    found = api.request("GET", "/usage", params=params)
    priced = any(line["cost"] is not None for line in found["lines"])
    headings = ["user", *(["workspace"] if group_by == "workspace" else []), "running h", "CPU s", "peak memory",
                "avg memory", "disk", "starts", *(["cost"] if priced else [])]  # fmt: skip
    table = Table(*headings, title=f"{found['from'][:16]} – {found['to'][:16]} UTC")
    for line in found["lines"]:
        table.add_row(
            line["user"],
            *([line["workspace"]] if group_by == "workspace" else []),
            f"{line['running_hours']:.2f}",
            f"{line['cpu_seconds']:.0f}",
            f"{line['memory_peak_bytes'] / 2**20:.0f} MB",
            f"{line['memory_avg_bytes'] / 2**20:.0f} MB",
            f"{line['disk_bytes'] / 2**20:.0f} MB",
            str(line["starts"]),
            *([f"{line['cost']:.2f}"] if priced else []),
        )
    console.print(table)
