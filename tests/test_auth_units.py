"""Passwords, secrets, durations and login throttling."""

from __future__ import annotations

from datetime import timedelta

import pytest

from devyard.auth.csrf import cross_site, origin_matches
from devyard.auth.passwords import hash_password, verify_password
from devyard.auth.secrets import digest, new_secret, parse_duration
from devyard.auth.throttle import LoginThrottle, Rate
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


@pytest.mark.parametrize(
    "text, seconds", [("30d", 30 * 86400), ("12h", 43200), ("15m", 900), ("90", 90), ("2w", 14 * 86400)]
)
def test_durations(text: str, seconds: int) -> None:
    assert parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["", "0d", "-1d", "soon", "1y", "1.5h", "030d", " 30d", "100000w"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(Invalid):
        parse_duration(text)


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def throttled(t: LoginThrottle, user: str, addr: str) -> bool:
    try:
        t.check(user, addr)
        return False
    except Throttled:
        return True


def test_throttle_like_code_server_per_address(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = Clock()
    monkeypatch.setattr("devyard.auth.throttle.time.monotonic", clock)
    t = LoginThrottle(per_address=Rate(2, 12), per_user=Rate(100, 100))
    for _ in range(14):  # 2 a minute plus 12 an hour
        assert not throttled(t, "ann", "1.1.1.1")
        t.failed("ann", "1.1.1.1")
    assert throttled(t, "ann", "1.1.1.1")
    assert throttled(t, "bob", "1.1.1.1")  # the address is out of attempts, whoever it tries
    assert not throttled(t, "ann", "2.2.2.2")  # another address is not
    with pytest.raises(Throttled) as exc:
        t.check("ann", "1.1.1.1")
    assert 1 <= int(exc.value.headers["Retry-After"]) <= 30
    clock.now += 30  # the minute bucket refills one attempt every 30 s
    assert not throttled(t, "ann", "1.1.1.1")
    t.failed("ann", "1.1.1.1")
    assert throttled(t, "ann", "1.1.1.1")
    clock.now += 3600  # never locked out for good
    assert not throttled(t, "ann", "1.1.1.1")


def test_throttle_per_user_spares_known_addresses(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = Clock()
    monkeypatch.setattr("devyard.auth.throttle.time.monotonic", clock)
    t = LoginThrottle(per_address=Rate(100, 100), per_user=Rate(3, 0))
    t.succeeded("ann", "10.0.0.1")  # ann's own machine
    for i in range(3):  # an attack spread over many addresses
        t.failed("ann", f"6.6.6.{i}")
    assert throttled(t, "ann", "6.6.6.99")
    assert not throttled(t, "ann", "10.0.0.1")  # ann still gets in from where she logged in before
    assert not throttled(t, "bob", "6.6.6.99")


def test_origins() -> None:
    assert origin_matches("http://127.0.0.1:8000", "127.0.0.1:8000")
    assert origin_matches("https://Dev.Example", "dev.example")
    assert not origin_matches("http://evil.example", "dev.example")
    assert not origin_matches(None, "dev.example") and not origin_matches("null", "dev.example")
    assert cross_site("http://evil.example", "dev.example") and not cross_site(None, "dev.example")
