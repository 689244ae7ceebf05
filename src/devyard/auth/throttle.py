"""Login throttling, in the manner of code-server (2 attempts a minute plus 12 an hour) but per key.

Failed logins spend tokens from two buckets, one refilled per minute and one per hour; a key
may try while either bucket has a token. Keys are the client address (code-server's budget) and
the user name (a wider budget, against attacks spread over many addresses). An address that logged
in successfully as a user within KNOWN_ADDRESS_S is exempt from that user's budget, so an attacker
cannot lock the real user out; every lockout ends as the buckets refill.

Held in memory: the manager is one process, and a restart only refills the buckets, once.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

from devyard.errors import Throttled

KNOWN_ADDRESS_S = 30 * 86400
MAX_KEYS = 100_000


@dataclass
class _Bucket:
    capacity: float
    per_s: float
    tokens: float
    at: float

    def refill(self, now: float) -> None:
        self.tokens = min(self.capacity, self.tokens + (now - self.at) * self.per_s)
        self.at = now

    def wait_s(self) -> float:
        if self.tokens >= 1:
            return 0.0
        return (1 - self.tokens) / self.per_s if self.per_s else math.inf


@dataclass(frozen=True)
class Rate:
    """Attempts allowed: `per_minute` each minute plus `per_hour` each hour."""

    per_minute: int
    per_hour: int


@dataclass
class _Limit:
    rate: Rate
    now: float
    buckets: list[_Bucket] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.buckets = [
            _Bucket(self.rate.per_minute, self.rate.per_minute / 60, self.rate.per_minute, self.now),
            _Bucket(self.rate.per_hour, self.rate.per_hour / 3600, self.rate.per_hour, self.now),
        ]

    def retry_after(self, now: float) -> float:
        """0 when an attempt is allowed, else seconds until one is."""
        for b in self.buckets:
            b.refill(now)
        return min(b.wait_s() for b in self.buckets)

    def spend(self, now: float) -> None:
        for b in self.buckets:
            b.refill(now)
            if b.tokens >= 1:
                b.tokens -= 1
                return


class LoginThrottle:
    """Decides whether a login attempt may be checked at all, and records failures and successes."""

    def __init__(self, per_address: Rate, per_user: Rate) -> None:
        self.per_address = per_address
        self.per_user = per_user
        self._limits: dict[str, _Limit] = {}
        self._known: dict[tuple[str, str], float] = {}

    def _keys(self, user: str, address: str, now: float) -> list[tuple[str, Rate]]:
        keys = [(f"addr:{address}", self.per_address)]
        if self._known.get((user, address), -math.inf) < now - KNOWN_ADDRESS_S:
            keys.append((f"user:{user}", self.per_user))
        return keys

    def check(self, user: str, address: str) -> None:
        """Raise Throttled, with Retry-After, when this attempt must not be checked."""
        now = time.monotonic()
        wait = 0.0
        for key, _ in self._keys(user, address, now):
            limit = self._limits.get(key)
            if limit:
                wait = max(wait, limit.retry_after(now))
        if wait > 0:
            retry = max(1, math.ceil(wait))
            raise Throttled(f"too many failed logins; try again in {retry} s", headers={"Retry-After": str(retry)})

    def failed(self, user: str, address: str) -> None:
        """Spend a token for the address and (unless the address is known for the user) the user."""
        now = time.monotonic()
        if len(self._limits) > MAX_KEYS:  # bound memory under a flood of made-up names
            self._limits = {k: v for k, v in self._limits.items() if v.retry_after(now) > 0}
        for key, rate in self._keys(user, address, now):
            self._limits.setdefault(key, _Limit(rate, now)).spend(now)

    def succeeded(self, user: str, address: str) -> None:
        """Remember the address as the user's own; clear the user's failures."""
        self._known[(user, address)] = time.monotonic()
        self._limits.pop(f"user:{user}", None)
