"""Passwords, secrets, durations and login throttling."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest

from devyard.auth.csrf import cross_site, origin_matches
from devyard.auth.passwords import hash_password, verify_password
from devyard.auth.secrets import digest, new_secret, parse_duration
from devyard.auth.throttle import LoginThrottle
from devyard.errors import Invalid, Throttled


def test_passwords_are_argon2id() -> None:
    h = hash_password("correct horse")
    assert h.startswith("$argon2id$")
    assert verify_password(h, "correct horse")
    assert not verify_password(h, "wrong")
    assert not verify_password(None, "anything")
    assert not verify_password("not-a-hash", "x")


def test_secrets() -> None:
    a, b = new_secret("dy_"), new_secret("dy_")
    assert a != b and a.startswith("dy_") and len(a) > 40
    assert digest(a) == digest(a) and len(digest(a)) == 64


@pytest.mark.parametrize("text, seconds", [("30d", 30 * 86400), ("12h", 43200), ("15m", 900), ("90", 90), ("2w", 14 * 86400)])
def test_durations(text: str, seconds: int) -> None:
    assert parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["", "0d", "-1d", "soon", "1y", "1.5h"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(Invalid):
        parse_duration(text)


def test_throttle_counts_per_key_and_window() -> None:
    t = LoginThrottle(max_failures=3, window_s=0.3)
    for _ in range(3):
        t.check("user:a", "addr:1")
        t.failed("user:a", "addr:1")
    with pytest.raises(Throttled) as exc:
        t.check("user:a")
    assert int(exc.value.headers["Retry-After"]) >= 1
    with pytest.raises(Throttled):
        t.check("user:b", "addr:1")  # same address, other user: still throttled
    t.check("user:b", "addr:2")
    time.sleep(0.35)
    t.check("user:a", "addr:1")  # window passed


def test_origins() -> None:
    assert origin_matches("http://127.0.0.1:8000", "127.0.0.1:8000")
    assert origin_matches("https://Dev.Example", "dev.example")
    assert not origin_matches("http://evil.example", "dev.example")
    assert not origin_matches(None, "dev.example") and not origin_matches("null", "dev.example")
    assert cross_site("http://evil.example", "dev.example") and not cross_site(None, "dev.example")
