"""The soak benchmark's users: one thread each doing random workspace operations through the API and gateway, timing them."""

from __future__ import annotations

import argparse
import json
import os
import random
import struct
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from websockets.exceptions import WebSocketException
from websockets.sync.client import ClientConnection, connect

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.support import Manager, wait_for  # noqa: E402

ECHO = Path(__file__).resolve().parent.parent / "tests" / "peers" / "echo_server.py"
RSS_GROWTH_LIMIT_PCT = 10.0
WARMUP_FRACTION, WARMUP_MAX_S = 0.1, 120.0
STATUS_TIMEOUT_S = 180.0  # two cores starting several engines at once are slow
POLL_S = 0.1
THINK_S = (0.2, 2.0)  # pause between two operations of one user
ECHO_MESSAGES, ECHO_MAX_BYTES = 10, 64 * 1024
TRANSITIONAL = {"creating", "provisioning", "starting", "stopping", "deleting"}
MEASURES = (
    "create→running",
    "start→running",
    "stop→stopped",
    "delete",
    "gateway open",
    "editor ws upgrade",
    "editor ws round-trip",
    "echo ws round-trip",
)
OPERATIONS = ("create", "open", "write", "websocket", "stop", "start", "delete")
CONTROL = 2  # VS Code's ProtocolMessageType.Control; a message is type u8, id u32, ack u32, length u32, body


class OpError(Exception):
    """An operation got a wrong answer."""


FAILURES = (
    OpError,
    AssertionError,
    KeyError,
    ValueError,
    TimeoutError,
    OSError,
    httpx.HTTPError,
    WebSocketException,
)  # none ends a user


@dataclass
class Workspace:
    """What a user knows of one of its workspaces."""

    name: str
    running: bool = False  # holds a slot of the running budget
    files: dict[str, str] = field(default_factory=dict)  # path under files/ → content


class Budget:
    """The running engines all users may have together."""

    def __init__(self, cap: int) -> None:
        """A budget of `cap` running engines."""
        self.cap, self.used, self._lock = cap, 0, threading.Lock()

    def take(self) -> bool:
        """Take a slot if one is free."""
        with self._lock:
            if self.used >= self.cap:
                return False
            self.used += 1
            return True

    def adjust(self, delta: int) -> None:
        """Give back (-1) or force-take (+1) a slot, after learning what really runs."""
        with self._lock:
            self.used += delta


class Record:
    """Latencies, operation counts and errors of every user, thread-safe."""

    def __init__(self) -> None:
        """Nothing recorded yet."""
        self.latencies: dict[str, list[float]] = {}
        self.done: dict[str, int] = dict.fromkeys(OPERATIONS, 0)
        self.errors: list[dict[str, Any]] = []
        self.files_written = self.files_checked = self.files_lost = 0
        self.lost: list[str] = []
        self._lock = threading.Lock()

    def time(self, measure: str, seconds: float) -> None:
        """Add one latency sample."""
        with self._lock:
            self.latencies.setdefault(measure, []).append(round(seconds, 5))

    def ok(self, op: str) -> None:
        """Count one successful operation."""
        with self._lock:
            self.done[op] += 1

    def file(self, written: int = 0, checked: int = 0, lost: str | None = None) -> None:
        """Count files written and checked, and name a lost one."""
        with self._lock:
            self.files_written += written
            self.files_checked += checked
            if lost:
                self.files_lost += 1
                self.lost.append(lost)

    def error(self, user: str, op: str, detail: str) -> None:
        """Count one failed operation."""
        with self._lock:
            self.errors.append({"t": time.strftime("%H:%M:%S"), "user": user, "op": op, "detail": detail[:300]})


def expect(r: httpx.Response, *codes: int) -> httpx.Response:
    """`r` if its status is one of `codes`, else an OpError naming the request."""
    if r.status_code not in codes:
        raise OpError(f"{r.request.method} {r.request.url.path} → {r.status_code} {r.text[:200]}")
    return r


def frame(body: dict[str, Any]) -> bytes:
    """A VS Code control message carrying `body` as JSON."""
    data = json.dumps(body).encode()
    return struct.pack(">BIII", CONTROL, 0, 0, len(data)) + data


def control_reply(conn: ClientConnection, buffer: bytearray) -> dict[str, Any]:
    """The next control message the engine sends (its JSON), reading frames into `buffer` as needed."""
    while True:
        if len(buffer) >= 13:
            kind, _id, _ack, length = struct.unpack(">BIII", buffer[:13])
            if len(buffer) >= 13 + length:
                body = bytes(buffer[13 : 13 + length])
                del buffer[: 13 + length]
                if kind == CONTROL:
                    reply: dict[str, Any] = json.loads(body)
                    return reply
                continue
        data = conn.recv(timeout=30)
        buffer.extend(data.encode() if isinstance(data, str) else data)


class User:
    """One user's random walk through the workspace lifecycle, run in its own thread."""

    def __init__(
        self, m: Manager, name: str, token: str, seed: int, args: argparse.Namespace, ctx: dict[str, Any]
    ) -> None:
        """A user `name` with API token `token`, on manager `m`."""
        self.m, self.name, self.token, self.rng, self.args = m, name, token, random.Random(seed), args
        self.budget: Budget = ctx["budget"]
        self.rec: Record = ctx["record"]
        self.echo_port: int = ctx["echo_port"]
        self.spaces: dict[str, Workspace] = {}
        self.serial = 0
        self.http = httpx.Client(base_url=m.url, headers={"authorization": f"Bearer {token}"}, timeout=60)

    def run(self, deadline: float, stop: threading.Event) -> None:
        """Do random operations until `deadline` or `stop`."""
        while time.monotonic() < deadline and not stop.is_set():
            op, ws = self.pick()
            if op:
                try:
                    getattr(self, f"op_{op}")(ws)
                    self.rec.ok(op)
                except FAILURES as exc:
                    self.rec.error(self.name, op, f"{ws.name if ws else '-'}: {type(exc).__name__}: {exc}")
                    self.resync()
            stop.wait(self.rng.uniform(*THINK_S))

    def pick(self) -> tuple[str | None, Workspace | None]:
        """A random operation that makes sense now, and the workspace it acts on."""
        running = [w for w in self.spaces.values() if w.running]
        stopped = [w for w in self.spaces.values() if not w.running]
        choices: list[tuple[str, float, Workspace | None]] = []
        if len(self.spaces) < self.args.workspaces:
            choices.append(("create", 3.0 if not self.spaces else 1.0, None))
        if running:
            choices += [
                ("open", 3.0, self.rng.choice(running)),
                ("websocket", 3.0, self.rng.choice(running)),
                ("stop", 1.0, self.rng.choice(running)),
            ]
        if stopped:
            choices.append(("start", 1.5, self.rng.choice(stopped)))
        if self.spaces:
            choices += [
                ("write", 3.0, self.rng.choice(list(self.spaces.values()))),
                ("delete", 0.7, self.rng.choice(list(self.spaces.values()))),
            ]
        op, _, ws = self.rng.choices(choices, weights=[c[1] for c in choices])[0]
        if op in ("create", "start") and not self.budget.take():
            return None, None  # every engine slot is taken: think and try again
        return op, ws

    def api(self, method: str, path: str, *codes: int, **kwargs: Any) -> httpx.Response:
        """Call /api/v1`path`; an OpError unless the status is one of `codes`."""
        return expect(self.http.request(method, "/api/v1" + path, **kwargs), *codes)

    def wait_status(self, name: str, want: str) -> None:
        """Poll until workspace `name` is `want`; an OpError when it fails or does not get there in time."""

        def check() -> bool:
            status = self.api("GET", f"/workspaces/{name}", 200).json()["status"]
            if status == "failed" and want != "failed":
                raise OpError(f"{name} failed: {self.api('GET', f'/workspaces/{name}', 200).json().get('error')}")
            return bool(status == want)

        try:
            wait_for(check, STATUS_TIMEOUT_S, f"{name} to be {want}", interval=POLL_S)
        except AssertionError as exc:
            raise OpError(str(exc)) from exc

    def files_dir(self, name: str) -> Path:
        """The workspace's folder, as the engine sees it."""
        return self.m.data_dir / "workspaces" / self.name / name / "files"

    def op_create(self, _: Workspace | None) -> None:
        """Create and start a workspace; wait until it runs."""
        self.serial += 1
        ws = Workspace(f"ws-{self.serial}", running=True)
        self.spaces[ws.name] = ws
        t0 = time.perf_counter()
        self.api("POST", "/workspaces", 201, json={"name": ws.name})
        self.wait_status(ws.name, "running")
        self.rec.time("create→running", time.perf_counter() - t0)

    def op_open(self, ws: Workspace) -> None:
        """Open the workspace through the gateway: the engine's redirect, then the workbench page."""
        t0 = time.perf_counter()
        r = expect(self.http.get(f"/w/{self.name}/{ws.name}/"), 302)
        location = r.headers.get("location", "")
        if not location.startswith("./?folder="):
            raise OpError(f"open {ws.name}: redirect to {location!r}")
        page = expect(self.http.get(f"/w/{self.name}/{ws.name}/" + location[2:]), 200)
        if "workbench" not in page.text:
            raise OpError(f"open {ws.name}: no workbench in the page")
        self.rec.time("gateway open", time.perf_counter() - t0)

    def op_write(self, ws: Workspace) -> None:
        """Write a new file into the workspace's folder (owned like the folder) and remember its content."""
        files = self.files_dir(ws.name)
        owner = files.stat()
        path = f"soak/{len(ws.files)}-{uuid.uuid4().hex[:8]}.txt"
        content = f"{self.name}/{ws.name}/{path}\n" + self.rng.randbytes(self.rng.randint(1, 16384)).hex()
        (files / "soak").mkdir(exist_ok=True)
        os.chown(files / "soak", owner.st_uid, owner.st_gid)
        (files / path).write_text(content)
        os.chown(files / path, owner.st_uid, owner.st_gid)
        ws.files[path] = content
        self.rec.file(written=1)

    def op_websocket(self, ws: Workspace) -> None:
        """The engine's editor socket (VS Code's handshake) and an echo over port forwarding, both through the gateway."""
        base = self.m.url.replace("http://", "ws://") + f"/w/{self.name}/{ws.name}"
        headers = {"authorization": f"Bearer {self.token}"}
        t0 = time.perf_counter()
        editor = f"{base}/stable-x?reconnectionToken={uuid.uuid4()}&reconnection=false&skipWebSocketFrames=false"
        with connect(editor, additional_headers=headers, open_timeout=30, close_timeout=5) as conn:
            self.rec.time("editor ws upgrade", time.perf_counter() - t0)
            buffer = bytearray()
            for send, want in (
                ({"type": "auth", "auth": "00000000000000000000", "data": uuid.uuid4().hex}, "sign"),
                ({"type": "connectionType", "commit": None, "signedData": "soak", "desiredConnectionType": 1}, "ok"),
            ):
                t0 = time.perf_counter()
                conn.send(frame(send))
                reply = control_reply(conn, buffer)
                if reply.get("type") != want:
                    raise OpError(f"editor socket of {ws.name}: {reply} instead of {want!r}")
                self.rec.time("editor ws round-trip", time.perf_counter() - t0)
        with connect(
            f"{base}/proxy/{self.echo_port}/ws",
            additional_headers=headers,
            open_timeout=30,
            close_timeout=5,
            max_size=None,
        ) as conn:
            for _ in range(ECHO_MESSAGES):
                data = self.rng.randbytes(self.rng.randint(1, ECHO_MAX_BYTES))
                t0 = time.perf_counter()
                conn.send(data)
                if conn.recv(timeout=30) != data:
                    raise OpError(f"echo through {ws.name}: another message came back")
                self.rec.time("echo ws round-trip", time.perf_counter() - t0)

    def op_stop(self, ws: Workspace) -> None:
        """Stop the engine; wait until the API says `stopped`."""
        t0 = time.perf_counter()
        self.api("POST", f"/workspaces/{ws.name}/stop", 202)
        self.wait_status(ws.name, "stopped")
        self.rec.time("stop→stopped", time.perf_counter() - t0)
        ws.running = False
        self.budget.adjust(-1)

    def op_start(self, ws: Workspace) -> None:
        """Start a stopped workspace (its slot already taken); wait until it runs."""
        ws.running = True
        t0 = time.perf_counter()
        self.api("POST", f"/workspaces/{ws.name}/start", 202)
        self.wait_status(ws.name, "running")
        self.rec.time("start→running", time.perf_counter() - t0)

    def op_delete(self, ws: Workspace) -> None:
        """Check the workspace's files, delete it, and check its folder is gone."""
        self.check_files(ws)
        t0 = time.perf_counter()
        self.api("DELETE", f"/workspaces/{ws.name}", 204)
        self.rec.time("delete", time.perf_counter() - t0)
        del self.spaces[ws.name]
        if ws.running:
            self.budget.adjust(-1)
        if self.files_dir(ws.name).parent.exists():
            raise OpError(f"{ws.name}: folder left after delete")

    def check_files(self, ws: Workspace) -> None:
        """Count every remembered file of `ws` that is missing or changed as lost."""
        for path, content in ws.files.items():
            try:
                same = (self.files_dir(ws.name) / path).read_text() == content
            except OSError:
                same = False
            self.rec.file(checked=1, lost=None if same else f"{self.name}/{ws.name}/{path}")

    def resync(self) -> None:
        """After an error, learn from the API which workspaces exist and run; delete failed ones."""
        try:
            found = {w["name"]: w["status"] for w in self.api("GET", "/workspaces", 200).json()}
            for name, status in found.items():
                if status == "failed":
                    self.api("DELETE", f"/workspaces/{name}", 204)
        except (OpError, httpx.HTTPError) as exc:
            self.rec.error(self.name, "resync", str(exc))
            return
        for name in list(self.spaces):
            ws = self.spaces[name]
            gone = name not in found or found[name] == "failed"
            running = not gone and found[name] not in ("stopped", "stopping")
            if ws.running != running:
                self.budget.adjust(1 if running else -1)
                ws.running = running
            if gone:
                del self.spaces[name]
