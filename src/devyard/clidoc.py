"""docs/cli.md, generated from the CLI's own help: `python -m devyard.clidoc > docs/cli.md`.

tests/test_docs.py fails when the file and the commands drift apart.
"""

from __future__ import annotations

from typing import Any

import click
import typer.main
from typer.testing import CliRunner

from devyard.cli import app

HEADER = "# CLI reference\n\nGenerated from `devyard --help` by `python -m devyard.clidoc > docs/cli.md`; do not edit by hand.\n"
# Fixed width and no colour, so the text is the same on every machine.
HELP_ENV = {
    "COLUMNS": "100",
    "TERMINAL_WIDTH": "100",
    "NO_COLOR": "1",
    "TERM": "dumb",
    "_TYPER_FORCE_DISABLE_TERMINAL": "1",
}


def _help(path: list[str]) -> str:
    result = CliRunner().invoke(app, [*path[1:], "--help"], env=HELP_ENV, prog_name="devyard")
    return "\n".join(line.rstrip() for line in result.output.strip().splitlines())


def _walk(cmd: Any, path: list[str], parent: click.Context | None) -> list[str]:
    ctx = click.Context(cmd, info_name=path[-1], parent=parent)
    parts = [f"\n## `{' '.join(path)}`\n\n```\n{_help(path)}\n```\n"]
    if hasattr(cmd, "list_commands"):  # a group (typer's classes need not subclass click's)
        for name in cmd.list_commands(ctx):
            sub = cmd.get_command(ctx, name)
            if sub is not None and not sub.hidden:
                parts.extend(_walk(sub, [*path, name], ctx))
    return parts


def render() -> str:
    """The whole reference as Markdown."""
    return HEADER + "".join(_walk(typer.main.get_command(app), ["devyard"], None))


if __name__ == "__main__":
    print(render(), end="")
