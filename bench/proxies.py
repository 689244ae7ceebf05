"""The reverse proxies the gateway benchmark puts in front of one upstream: devyard, nginx, configurable-http-proxy.

Each is a context manager yielding a `Proxy`: the base URL to put before an upstream path, the
headers a client must send (devyard's session cookie), and the pids whose memory is the proxy's.

- devyard: a real manager whose workspace `echo` is served by the upstream. The manager is told
  so the way it learns of any engine that outlived a manager: a runtime record under run/engines
  naming the process and its socket, adopted at start (design.md §7). The client logs in and sends
  the session cookie, so every request is authenticated and authorized on the way, as in use.
- nginx: Debian's, one worker (the manager is one process too), HTTP/1.1 keep-alive to the upstream's
  unix socket, WebSocket upgrades passed on, no buffering — the setup of docs/nginx.conf.
- configurable-http-proxy: JupyterHub's, from npm (pinned, installed once into the cache), run by the
  machine's Node, to the upstream's TCP port (it has no unix-socket targets).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil

from tests.support import ADMIN_PASSWORD, free_port, kill_tree, start_manager, wait_for

CHP_VERSION = "5.3.0"
CHP_DIR = Path("~/.cache/devyard/bench/chp").expanduser() / CHP_VERSION
NGINX = "/usr/sbin/nginx"


@dataclass
class Proxy:
    """Where a client reaches the upstream through one proxy."""

    name: str
    base: str  # prefix of every upstream path, e.g. http://127.0.0.1:8000/w/admin/echo
    pids: list[int] = field(default_factory=list)  # the processes whose RSS is the proxy's
    headers: dict[str, str] = field(default_factory=dict)

    def rss_bytes(self) -> int:
        """Resident memory of the proxy's processes (and their children)."""
        total = 0
        for pid in self.pids:
            try:
                proc = psutil.Process(pid)
                total += sum(p.memory_info().rss for p in [proc, *proc.children(recursive=True)])
            except psutil.Error:
                pass
        return total


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


@contextmanager
def devyard(root: Path, upstream_pid: int, upstream_sock: str) -> Iterator[Proxy]:
    """A real manager whose workspace admin/echo is the upstream."""
    data = root / "devyard"
    with start_manager(data, extra_env={"DEVYARD_OS_ACCOUNTS": "off"}) as m, m.api() as api:
        assert api.post("/workspaces", json={"name": "echo", "start": False}).status_code == 201
        m.wait_status("echo", "stopped")
    with sqlite3.connect(data / "devyard.db") as db:
        uid = db.execute("select uid from workspaces where name = 'echo'").fetchone()[0]
    records = data / "run" / "engines"
    records.mkdir(parents=True, exist_ok=True)
    record = {
        "pid": upstream_pid,
        "create_time": psutil.Process(upstream_pid).create_time(),
        "socket": upstream_sock,
        "owner": "admin",
        "name": "echo",
    }
    (records / f"{uid}.json").write_text(json.dumps(record))
    m = start_manager(data, extra_env={"DEVYARD_OS_ACCOUNTS": "off"})
    try:
        login = httpx.post(m.url + "/api/v1/auth/login", json={"username": "admin", "password": ADMIN_PASSWORD})
        login.raise_for_status()
        cookie = f"devyard_session={login.cookies['devyard_session']}"
        m.wait_status("echo", "running")
        # A browser's WebSocket always says where it comes from; devyard refuses a cookie-borne one that does not.
        yield Proxy("devyard", m.url + "/w/admin/echo", [m.proc.pid], {"cookie": cookie, "origin": m.url})
    finally:
        (records / f"{uid}.json").unlink(missing_ok=True)  # the upstream is not the manager's to stop
        m.stop(kill_engines=False)


@contextmanager
def nginx(root: Path, upstream_sock: str) -> Iterator[Proxy]:
    """Debian's nginx, one worker, to the upstream's unix socket."""
    if not Path(NGINX).exists():
        raise SystemExit("nginx is not installed: apt-get install -y nginx (make test-deps does)")
    prefix = root / "nginx"
    (prefix / "logs").mkdir(parents=True)
    port = free_port()
    (prefix / "nginx.conf").write_text(f"""
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/logs/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    map $http_upgrade $connection_upgrade {{ default upgrade; '' ''; }}
    upstream up {{ server unix:{upstream_sock}; keepalive 64; }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://up;
            proxy_http_version 1.1;
            proxy_set_header Host $http_host;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
            proxy_buffering off;
            proxy_request_buffering off;
            proxy_read_timeout 1h;
        }}
    }}
}}
""")
    proc = subprocess.Popen(
        [NGINX, "-p", str(prefix), "-c", str(prefix / "nginx.conf"), "-g", "daemon off;"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        wait_for(lambda: _listening(port) or proc.poll() is not None, 20, "nginx listening")
        assert proc.poll() is None, (prefix / "logs" / "error.log").read_text()
        yield Proxy("nginx", f"http://127.0.0.1:{port}", [proc.pid])
    finally:
        kill_tree(proc.pid)
        proc.wait()


def chp_installed() -> Path:
    """configurable-http-proxy's command, installed from npm into the cache on first use."""
    command = CHP_DIR / "node_modules" / ".bin" / "configurable-http-proxy"
    if not command.exists():
        CHP_DIR.mkdir(parents=True, exist_ok=True)
        print(f"installing configurable-http-proxy {CHP_VERSION} from npm into {CHP_DIR}", flush=True)
        subprocess.run(
            [
                "npm",
                "install",
                "--prefix",
                str(CHP_DIR),
                "--no-audit",
                "--no-fund",
                "--loglevel",
                "error",
                f"configurable-http-proxy@{CHP_VERSION}",
            ],
            check=True,
        )
    return command


@contextmanager
def chp(root: Path, upstream_port: int) -> Iterator[Proxy]:
    """configurable-http-proxy with one default route to the upstream's TCP port."""
    command = chp_installed()
    port, api_port = free_port(), free_port()
    env = {**os.environ, "CONFIGPROXY_AUTH_TOKEN": os.urandom(8).hex()}
    node = shutil.which("node") or "node"
    log = (root / "chp.log").open("wb")
    proc = subprocess.Popen(
        [
            node,
            str(command),
            "--ip",
            "127.0.0.1",
            "--port",
            str(port),
            "--api-ip",
            "127.0.0.1",
            "--api-port",
            str(api_port),
            "--default-target",
            f"http://127.0.0.1:{upstream_port}",
            "--log-level",
            "error",
        ],
        env=env,
        stdout=log,
        stderr=log,
        start_new_session=True,
    )
    try:
        wait_for(lambda: _listening(port) or proc.poll() is not None, 30, "configurable-http-proxy listening")
        assert proc.poll() is None, (root / "chp.log").read_text()
        time.sleep(0.2)
        yield Proxy("configurable-http-proxy", f"http://127.0.0.1:{port}", [proc.pid])
    finally:
        kill_tree(proc.pid)
        proc.wait()
        log.close()
