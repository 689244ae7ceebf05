"""Once a session is established, a proxied request costs no database write, DNS lookup or password hash.

Checked from outside, at the system-call level: strace follows every thread of the real manager
while it proxies a few hundred requests to a real engine.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.support import ADMIN_PASSWORD, start_manager, wait_for

STRACE = shutil.which("strace")
ARGON2_MEMORY = 64 << 20  # argon2-cffi's default memory cost: each hash maps this much


@pytest.mark.skipif(STRACE is None, reason="strace is not installed (make test-deps installs it)")
def test_no_database_write_dns_lookup_or_password_hash_per_request(engine: object, tmp_path: Path) -> None:
    # The activity flush is the one periodic write the gateway feeds; pushed past the test's window.
    m = start_manager(tmp_path / "data", extra_env={"DEVYARD_ACTIVITY_FLUSH_S": "3600"})
    trace = tmp_path / "strace.txt"
    try:
        with m.api() as api:
            assert api.post("/workspaces", json={"name": "hot"}).status_code == 201
        m.wait_status("hot", "running")
        with httpx.Client(base_url=m.url, timeout=30) as c:
            assert (
                c.post("/api/v1/auth/login", json={"username": "admin", "password": ADMIN_PASSWORD}).status_code == 200
            )
            for _ in range(20):
                assert c.get("/w/admin/hot/").status_code == 302
            assert STRACE is not None
            tracer = subprocess.Popen(
                [
                    STRACE,
                    "-f",
                    "-qq",
                    "-p",
                    str(m.proc.pid),
                    "-o",
                    str(trace),
                    "-e",
                    "trace=connect,openat,write,pwrite64,writev,fsync,fdatasync,mmap",
                ]
            )
            try:
                wait_for(
                    lambda: trace.exists() and trace.stat().st_size >= 0 and _attached(m.proc.pid),
                    10,
                    "strace attached",
                )
                for i in range(300):
                    r = c.get("/w/admin/hot/" if i % 2 else "/w/admin/hot/healthz")
                    assert r.status_code in (200, 302)
            finally:
                tracer.send_signal(signal.SIGINT)
                tracer.wait(timeout=10)
        db_fds = {fd.name for fd in Path(f"/proc/{m.proc.pid}/fd").iterdir() if "devyard.db" in _target(fd)}
        calls = trace.read_text().splitlines()
        assert len(calls) > 300, "strace saw too little to judge"  # the proxied requests' own writes, at least
        writes = [(c, re.search(r"\b(?:write|pwrite64|writev|fsync|fdatasync)\((\d+),", c)) for c in calls]
        db_writes = [c for c, w in writes if w and w.group(1) in db_fds]
        assert not db_writes, f"database writes while proxying: {db_writes[:3]}"
        assert not [c for c in calls if "openat(" in c and "devyard.db" in c], "the database was opened while proxying"
        dns = [c for c in calls if "connect(" in c and ("htons(53)" in c or "resolve" in c or "nscd" in c)]
        assert not dns, f"name lookups while proxying: {dns[:3]}"
        hashes = [
            c for c in calls if "mmap(" in c and any(int(n) >= ARGON2_MEMORY for n in re.findall(r", (\d{8,}),", c))
        ]
        assert not hashes, f"argon2-sized allocations (a password hash) while proxying: {hashes[:3]}"
    finally:
        m.stop()


def _attached(pid: int) -> bool:
    """Every thread of `pid` has a tracer."""
    for task in Path(f"/proc/{pid}/task").iterdir():
        status = (task / "status").read_text()
        if re.search(r"^TracerPid:\s+0$", status, re.M):
            return False
    time.sleep(0.2)  # strace prints nothing until the first call after attaching
    return True


def _target(fd: Path) -> str:
    try:
        return os.readlink(fd)
    except OSError:
        return ""
