"""What provisioning tells the user: progress lines in the workspace log, and what did not install."""

from __future__ import annotations

import time
from pathlib import Path

from devyard.provision.extensions import Outcome


def failures(outcomes: list[Outcome]) -> str | None:
    """What did not install, as a workspace's `error`; None when everything did."""
    failed = [f"{o.id}: {o.detail}" for o in outcomes if not o.installed]
    return ("not installed: " + "; ".join(failed)) if failed else None


class ProgressLog:
    """Provisioning progress as lines of the workspace log (what the log stream shows), a few per step."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.last: tuple[str, float] = ("", 0.0)

    def note(self, step: str, current: int, total: int) -> None:
        """Log a progress report: each new step, then at most one line a second."""
        now = time.monotonic()
        if step == self.last[0] and now - self.last[1] < 1.0 and current != total:
            return
        self.last = (step, now)
        self.line(f"provisioning: {step}" + (f" {current}/{total}" if total else ""))

    def outcomes(self, outcomes: list[Outcome]) -> None:
        """One line per tool or extension: installed (and its version), or why not."""
        for o in outcomes:
            label = o.id if o.id.startswith("tool ") else f"extension {o.id}"  # tools' outcomes are named "tool <name>"
            self.line(f"{label}: " + (f"installed {o.detail}" if o.installed else f"NOT installed: {o.detail}"))

    def line(self, text: str) -> None:
        """Append one devyard line to the log."""
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        with self.path.open("a") as f:
            f.write(f"--- devyard: {text} ---\n")
