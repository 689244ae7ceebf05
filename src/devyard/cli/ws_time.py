"""`devyard ws schedule|why`, `devyard timezone` and `devyard dormancy`: when workspaces start and stop by themselves, and why.

Registered on `ws_app` from cli/ws.py (cli/__init__.py imports this module), like cli/ws_access.py.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table

from devyard.cli.ws import OwnerOpt, _api, _owner, console, ws_app
from devyard.errors import Invalid
from devyard.schedules import DAYS


def parse_days(text: str) -> list[str]:
    """Days from `mon-fri`, `sat,sun` or `mon,wed-fri`; Invalid naming the part that is not a day."""
    days: list[str] = []
    for part in text.lower().split(","):
        first, _, last = part.strip().partition("-")
        if first not in DAYS or (last and last not in DAYS):
            raise Invalid(f"--days: {part.strip()!r} is not a day or a range of days (mon..sun)", code="invalid_days")
        span = DAYS[DAYS.index(first) : DAYS.index(last or first) + 1]
        if not span:
            raise Invalid(f"--days: {part.strip()!r} runs backwards (write sat,sun for a weekend)", code="invalid_days")
        days += [d for d in span if d not in days]
    return days


def describe(schedule: dict[str, Any] | None) -> str:
    """A schedule as a line: `mon-fri: start 09:00, stop 18:00`, or `none`."""
    if not schedule:
        return "none"
    times = ", ".join(f"{k} {schedule[k]}" for k in ("start", "stop") if schedule.get(k))
    return f"{','.join(schedule['days'])}: {times}"


@ws_app.command("schedule")
def schedule(
    name: str,
    days: Annotated[str, typer.Option("--days", help="Days it applies to: mon-fri, sat,sun, ...")] = "mon-fri",
    start: Annotated[str | None, typer.Option("--start", help="Start it at HH:MM (your time zone).")] = None,
    stop: Annotated[str | None, typer.Option("--stop", help="Stop it at HH:MM (your time zone).")] = None,
    off: Annotated[bool, typer.Option("--off", help="Remove its schedule.")] = False,
    owner: OwnerOpt = None,
) -> None:
    """Start and stop a workspace by itself at set times, in its owner's time zone (working hours)."""
    if off:
        body: dict[str, Any] = {"schedule": None}
    elif start is None and stop is None:
        raise Invalid("give --start, --stop or both (or --off)", code="nothing_to_change")
    else:
        body = {"schedule": {"days": parse_days(days), "start": start, "stop": stop}}
    api = _api()
    ws = api.request("PATCH", f"/workspaces/{name}", json=body, params=_owner(owner))
    console.print(f"{name}: schedule {describe(ws['schedule'])}")


@ws_app.command("why")
def why(name: str, owner: OwnerOpt = None) -> None:
    """Say why a workspace last started and stopped, and, while it runs, what will stop it and when."""
    ws = _api().request("GET", f"/workspaces/{name}", params=_owner(owner))
    console.print(f"{name}: [bold]{ws['status']}[/]  schedule {describe(ws['schedule'])}", highlight=False)
    for label, key in (("started", "last_start"), ("stopped", "last_stop")):
        if ws.get(key):
            b = ws[key]
            console.print(f"  last {label}: {_short(b['at'])}  {b['reason']}: {b['detail']}")
    if ws.get("dormant_at"):
        fate = f"; deleted at {_short(ws['delete_at'])} unless opened" if ws.get("delete_at") else ""
        console.print(f"  dormant since {_short(ws['dormant_at'])}{fate}")
    for due in ws["stops_due"]:
        console.print(f"  will stop at {_short(due['at'])}  {due['reason']}: {due['detail']}")
    if ws["status"] == "running" and not ws["stops_due"]:
        console.print("  nothing will stop it by itself (no idle timeout, schedule or session limit)")


def timezone(
    name: Annotated[str | None, typer.Argument(help="An IANA time zone (Europe/Paris); none: show yours.")] = None,
    default: Annotated[bool, typer.Option("--default", help="Go back to the manager's default.")] = False,
) -> None:
    """Show or set the time zone your workspaces' schedules are read in."""
    api = _api()
    if name is None and not default:
        me = api.request("GET", "/me")
    else:
        me = api.request("PATCH", "/me", json={"timezone": None if default else name})
    console.print(me["timezone"] or "the manager's default (default_timezone)")


def dormancy() -> None:
    """Show which workspaces are dormant, and which will be marked or deleted when (admins)."""
    report = _api().request("GET", "/dormancy")
    if not report["dormant_after_days"] and not report["delete_dormant_after_days"]:
        console.print("dormancy is off (dormant_after_days: 0)")
    elif report["dry_run"]:
        console.print("dry run: nothing is done, only reported")
    table = Table("workspace", "status", "last used", "dormant since", "next", "when")
    for w in report["workspaces"]:
        step = {"dormant": "mark dormant", "delete": "delete"}.get(w["next"] or "", "-")
        table.add_row(
            f"{w['owner']}/{w['name']}",
            w["status"],
            _short(w["last_used_at"]),
            _short(w["dormant_at"]),
            step + (" (due)" if w["due"] else ""),
            _short(w["next_at"]) if w["next_at"] else "never",
        )
    console.print(table)


def _short(iso: str | None) -> str:
    return iso[:16].replace("T", " ") + " UTC" if iso else "-"
