"""Login throttling: failed attempts counted per user name and per client address.

Held in memory: the manager is one process, and a restart forgetting counts only lets an attacker
start over once per restart, which they cannot cause.
"""

from __future__ import annotations

import math
import time
from collections import defaultdict, deque

from devyard.errors import Throttled


class LoginThrottle:
    """Refuses logins for a key after `max_failures` failures within `window_s` seconds."""

    def __init__(self, max_failures: int, window_s: float) -> None:
        self.max_failures = max_failures
        self.window_s = window_s
        self._failures: dict[str, deque[float]] = defaultdict(deque)

    def _recent(self, key: str, now: float) -> deque[float]:
        q = self._failures[key]
        while q and q[0] <= now - self.window_s:
            q.popleft()
        return q

    def check(self, *keys: str) -> None:
        """Raise Throttled (with Retry-After) if any key has used up its failures."""
        now = time.monotonic()
        for key in keys:
            q = self._recent(key, now)
            if len(q) >= self.max_failures:
                retry = max(1, math.ceil(q[0] + self.window_s - now))
                raise Throttled(
                    f"too many failed logins; try again in {retry} s", headers={"Retry-After": str(retry)}
                )

    def failed(self, *keys: str) -> None:
        """Count one failure against every key."""
        now = time.monotonic()
        for key in keys:
            self._recent(key, now).append(now)

    def succeeded(self, user_key: str) -> None:
        """Forget a user's failures once they log in (the address keeps its count)."""
        self._failures.pop(user_key, None)
