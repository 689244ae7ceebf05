"""A real PostgreSQL server for the tests: Debian's `postgresql`, on a data dir and port of its own, stopped by pid.

As root the server runs as the `postgres` account (it refuses root), from a folder under /tmp that
account can reach (pytest's own temp folders are private to root). Authentication is `trust` on
loopback: these servers live for one test session and hold nothing but test data.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support import free_port, kill_tree

USER = "devyard"


def server_bin() -> Path | None:
    """The newest installed PostgreSQL's bin folder (Debian puts each version in /usr/lib/postgresql/<n>/bin)."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"), key=lambda p: int(p.parent.parent.name))
    return found[-1].parent if found else None


@dataclass
class Postgres:
    """One running server."""

    port: int
    folder: Path
    bin: Path
    proc: subprocess.Popen[bytes]

    def url(self, database: str) -> str:
        """devyard's database_url for `database` on this server."""
        return f"postgresql://{USER}@127.0.0.1:{self.port}/{database}"

    def sql(self, statement: str, database: str = "postgres") -> str:
        """Run one statement with psql; its output."""
        out = subprocess.run(
            [
                str(self.bin / "psql"),
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-U",
                USER,
                "-d",
                database,
                "-Atc",
                statement,
            ],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert out.returncode == 0, out.stderr
        return out.stdout.strip()

    def create_database(self, name: str) -> str:
        """A new, empty database; its URL."""
        self.sql(f'CREATE DATABASE "{name}"')
        return self.url(name)


@contextmanager
def postgres() -> Iterator[Postgres]:
    """Start a server for the duration of the block."""
    bin_dir = server_bin()
    assert bin_dir is not None, (
        "PostgreSQL is not installed: sudo apt-get install -y postgresql (make test-deps does it as root)"
    )
    folder = Path(tempfile.mkdtemp(prefix="devyard-pg-"))
    as_account: dict[str, Any] = {}
    if os.geteuid() == 0:
        account = pwd.getpwnam("postgres")
        os.chown(folder, account.pw_uid, account.pw_gid)
        as_account = {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}
    data = folder / "data"
    init = subprocess.run(
        [str(bin_dir / "initdb"), "-D", str(data), "-U", USER, "--auth=trust", "-E", "UTF8", "--no-sync"],
        capture_output=True,
        text=True,
        cwd=folder,
        **as_account,
    )
    assert init.returncode == 0, init.stdout + init.stderr
    port = free_port()
    log = (folder / "server.log").open("ab")
    proc = subprocess.Popen(
        [
            str(bin_dir / "postgres"),
            "-D",
            str(data),
            "-p",
            str(port),
            "-k",
            str(folder),
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            "fsync=off",
            "-c",
            "max_connections=200",
        ],
        stdout=log,
        stderr=log,
        cwd=folder,
        start_new_session=True,
        **as_account,
    )
    log.close()
    server = Postgres(port, folder, bin_dir, proc)
    try:
        deadline = time.monotonic() + 60
        while (
            subprocess.run(
                [str(bin_dir / "pg_isready"), "-h", "127.0.0.1", "-p", str(port)], capture_output=True
            ).returncode
            != 0
        ):
            assert proc.poll() is None, (folder / "server.log").read_text()
            assert time.monotonic() < deadline, "PostgreSQL did not start within 60 s"
            time.sleep(0.1)
        yield server
    finally:
        kill_tree(proc.pid)
        proc.wait()
        shutil.rmtree(folder, ignore_errors=True)
