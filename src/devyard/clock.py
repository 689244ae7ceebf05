"""The clock of workspace policies: idle stop, schedules, session lifetime, dormancy and usage.

Real time, moved forward by the number of seconds in `clock_offset_file` when one is set, so a test
(or an admin's drill) can see a schedule fire or a workspace fall dormant without waiting days.
Logins, tokens and certificates keep real time: the offset never lengthens or shortens a credential.
The file is read again at most every `REREAD_S`, because the gateway asks the time on every request.
"""

from __future__ import annotations

import time as _time
from datetime import UTC, datetime
from pathlib import Path

REREAD_S = 0.2


class Clock:
    """Now, for the policies; `use(path)` makes a file's number of seconds move it."""

    def __init__(self) -> None:
        self.offset_s = 0.0
        self._file: Path | None = None
        self._read_at = 0.0

    def use(self, offset_file: Path | None) -> None:
        """Read the offset from `offset_file` from now on (None: real time)."""
        self._file, self._read_at, self.offset_s = offset_file, 0.0, 0.0

    def time(self) -> float:
        """Unix time, moved by the offset."""
        if self._file is not None:
            mono = _time.monotonic()
            if mono - self._read_at > REREAD_S:
                self._read_at = mono
                self.offset_s = _read_offset(self._file)
        return _time.time() + self.offset_s

    def now(self) -> datetime:
        """The aware UTC datetime of `time()`."""
        return datetime.fromtimestamp(self.time(), UTC)


def _read_offset(path: Path) -> float:
    # A missing or half-written file counts as no offset: the clock must never stop the manager.
    try:
        return float(path.read_text().strip() or 0)
    except (OSError, ValueError):
        return 0.0


CLOCK = Clock()
