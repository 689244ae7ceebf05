"""The progress callback every provisioning step reports to: (step, current, total), total 0 when unknown."""

from __future__ import annotations

from collections.abc import Callable

Progress = Callable[[str, int, int], None]
