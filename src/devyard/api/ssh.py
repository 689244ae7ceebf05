"""SSH into workspaces through the manager: the host CA to pin, short-lived user certificates, and the byte tunnel.

`devyard ssh --stdio` (OpenSSH's ProxyCommand) opens `WS /api/v1/workspaces/{name}/ssh` with the
user's token (or a session, from the same origin only): the same rights as opening the workspace
in a browser (its owner and those it is shared with; a read-only token never: a shell is a
terminal). A stopped workspace is started first, with progress sent as text messages; then binary
messages carry the SSH connection's bytes, both ways, to an sshd the backend starts for this one
connection (ssh/server.py). The tunnel registers in the gateway's live connections, so logging
out, revoking the token or taking back the share ends the SSH session as it ends a browser's
tunnel; its traffic is activity for the idle policy.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid

from fastapi import APIRouter, Query, Request, WebSocket
from fastapi.responses import Response
from pydantic import BaseModel, Field
from starlette.websockets import WebSocketDisconnect

from devyard.api.deps import CurrentUser, Workspaces, record
from devyard.auth.credentials import bearer_token
from devyard.auth.csrf import cross_site
from devyard.auth.identity import SESSION_COOKIE, Authenticator, Identity
from devyard.backends.base import Channel
from devyard.errors import Conflict, DevyardError, Forbidden, Unauthorized, error_body
from devyard.live import Live
from devyard.ssh.keys import Authority, Lazy, alias, workspace_principal
from devyard.store.tables import WorkspaceRow
from devyard.workspaces.access import Action
from devyard.workspaces.service import WorkspaceService
from devyard.workspaces.states import Status

log = logging.getLogger("devyard")
router = APIRouter(tags=["ssh"])
CHUNK = 256 * 1024
WAKE_POLL_S = 0.2
Owner = Query(None, description="Owner of the workspace (default: you); for users it is shared with.")


class SshInfo(BaseModel):
    """What a client needs to set up SSH to this manager's workspaces."""

    available: bool = Field(description="Whether workspaces here serve SSH.")
    detail: str | None = Field(description="Why not, when they do not.")
    known_hosts: str = Field(description="The known_hosts line pinning every workspace's host key (a host CA).")
    certificate_minutes: int = Field(description="How long a user certificate is valid.")


class SshCertificateRequest(BaseModel):
    """A public key (one OpenSSH line) the client made for one session."""

    model_config = {"extra": "forbid", "strict": True}

    public_key: str = Field(
        min_length=1,
        max_length=4096,
        pattern=r"^(ssh-ed25519|ecdsa-sha2-nistp(256|384|521)|ssh-rsa) [A-Za-z0-9+/=]+( .*)?$",
    )


class SshCertificate(BaseModel):
    """A short-lived user certificate for the key, and where it logs in."""

    certificate: str = Field(description="The certificate line (…-cert-v01@openssh.com), for ssh's CertificateFile.")
    login: str = Field(
        description="The account the session runs as: a principal of the certificate, with one naming the workspace (only its sshd accepts it)."
    )
    host_alias: str = Field(description="The host name to give ssh: devyard--NAME, or devyard--OWNER--NAME.")
    known_hosts: str = Field(description="The known_hosts line pinning the workspace's host key.")
    valid_before: int = Field(description="When the certificate ends (unix time).")


def authority(request: Request | WebSocket) -> Authority:
    """The manager's SSH authority, loaded at its first use (409 ssh_unavailable when its key cannot be had)."""
    state = request.app.state
    if getattr(state, "ssh_authority", None) is None:
        state.ssh_authority = Lazy(state.settings.secrets_dir)
    found: Authority | None = state.ssh_authority.get()
    if found is None:
        raise Conflict(state.ssh_authority.off or "SSH is off here", code="ssh_unavailable")
    return found


def _unavailable(service: WorkspaceService) -> str | None:
    try:
        service.backend.ssh_login(service.lifecycle.spec_of("", "_", "_"))
    except DevyardError as exc:
        return exc.message
    return None


@router.get("/ssh", response_model=SshInfo, summary="Whether workspaces serve SSH, and the host CA to pin")
async def ssh_info(ident: CurrentUser, service: Workspaces, request: Request) -> SshInfo:
    """The SSH set-up of this manager (`devyard config-ssh` reads it)."""
    detail = _unavailable(service)
    try:
        known_hosts = authority(request).known_hosts()
    except DevyardError as exc:
        detail, known_hosts = detail or exc.message, ""
    return SshInfo(
        available=detail is None,
        detail=detail,
        known_hosts=known_hosts,
        certificate_minutes=service.settings.ssh_certificate_minutes,
    )


@router.post(
    "/workspaces/{name}/ssh/certificate",
    response_model=SshCertificate,
    summary="Sign a short-lived SSH user certificate for a key, to log in to a workspace",
)
async def ssh_certificate(
    name: str,
    body: SshCertificateRequest,
    ident: CurrentUser,
    service: Workspaces,
    request: Request,
    owner: str | None = Owner,
) -> SshCertificate:
    """A certificate for `public_key`, valid minutes, for someone who may open the workspace."""
    row = await service.find(ident, name, owner, Action.open)
    if ident.scope == "read":
        raise Forbidden("a read-only token cannot log in to a workspace", code="token_scope")
    try:
        login = service.backend.ssh_login(service.spec(row))
    except DevyardError as exc:
        raise Conflict(exc.message, code="ssh_unavailable") from exc
    cert, until = authority(request).user_certificate(
        body.public_key,
        [login, workspace_principal(row.uid)],
        f"devyard:{ident.name}:{row.owner.name}/{row.name}:{uuid.uuid4().hex[:12]}",
        service.settings.ssh_certificate_minutes * 60,
        # Never for a visitor: the owner's processes could use their forwarded agent.
        service.settings.ssh_agent_forwarding and row.owner_id == ident.user_id,
    )
    await record(request, "workspace.ssh_certificate", f"{row.owner.name}/{row.name}")
    return SshCertificate(
        certificate=cert,
        login=login,
        host_alias=alias(row.owner.name, row.name, ident.name),
        known_hosts=authority(request).known_hosts(),
        valid_before=until,
    )


async def _caller(websocket: WebSocket) -> tuple[Identity, str]:
    """Who opens the tunnel and the credential it is registered under; a session only from the dashboard's own origin."""
    auth: Authenticator = websocket.app.state.auth
    bearer = bearer_token(websocket.headers.get("authorization"))
    cookie = None if bearer else websocket.cookies.get(SESSION_COOKIE)
    if cookie and cross_site(websocket.headers.get("origin"), websocket.headers.get("host")):
        raise Forbidden("cross-site WebSocket refused", code="csrf_refused")
    ident = await auth.resolve(cookie, bearer)
    if ident is None:
        raise Unauthorized("log in or send an API token (Authorization: Bearer <token>)", code="not_authenticated")
    if ident.scope == "read":
        raise Forbidden("a read-only token cannot log in to a workspace", code="token_scope")
    return ident, auth.credential_key(cookie, bearer) or ""


async def _running(websocket: WebSocket, service: WorkspaceService, owner: str, name: str, who: str) -> None:
    """Start the workspace if it is not running, telling the client as it goes; DevyardError when it does not come up."""
    route = service.route(owner, name)
    if route is None:
        raise Conflict(f"workspace {owner}/{name} is gone", code="workspace_not_found")
    if route.status == Status.running and route.address:
        return
    began = time.monotonic()
    await websocket.send_text(json.dumps({"progress": f"workspace {owner}/{name} is {route.status}: starting it"}))
    await service.ensure_started(route, who)
    deadline = began + service.settings.engine_start_timeout_s + 60
    while time.monotonic() < deadline:
        route = service.route(owner, name)
        if route is None:
            raise Conflict(f"workspace {owner}/{name} was deleted", code="workspace_not_found")
        if route.status == Status.running and route.address:
            took = time.monotonic() - began
            await websocket.send_text(json.dumps({"progress": f"workspace {owner}/{name} is running ({took:.1f} s)"}))
            return
        if route.status in (Status.failed, Status.stopped) and time.monotonic() - began > 2:
            raise Conflict(
                f"workspace {owner}/{name} did not start ({route.status}); see `devyard ws logs {name}`",
                code="workspace_not_running",
            )
        await asyncio.sleep(WAKE_POLL_S)
    raise Conflict(f"workspace {owner}/{name} did not start in time", code="workspace_not_running")


@router.websocket("/workspaces/{name}/ssh")
async def ssh_tunnel(websocket: WebSocket, name: str, owner: str | None = None) -> None:
    """The SSH connection's bytes, relayed to an sshd in the workspace (binary messages; text messages: progress)."""
    service: WorkspaceService = websocket.app.state.workspaces
    try:
        ident, credential = await _caller(websocket)
        row = await service.find(ident, name, owner, Action.open)
        service.backend.ssh_login(service.spec(row))
    except DevyardError as exc:
        status = 409 if exc.code == "ssh_unavailable" else exc.status
        await websocket.send_denial_response(
            Response(error_body(exc.code, exc.message), status_code=status, media_type="application/json")
        )
        return
    await websocket.accept()
    # Registered before anything waits (a workspace's start): access taken away meanwhile ends it too.
    ended = asyncio.Event()
    registry = websocket.app.state.gateway.live
    live = registry.add(Live(credential, ident.user_id, ident.name, ended.set, row.uid))
    try:
        await _session(websocket, service, row, ident, ended)
    finally:
        registry.discard(live)


async def _session(
    websocket: WebSocket, service: WorkspaceService, row: WorkspaceRow, ident: Identity, ended: asyncio.Event
) -> None:
    """Wake the workspace, open its SSH server, relay; every refusal said on the socket."""
    where = f"{row.owner.name}/{row.name}"
    try:
        await _running(websocket, service, row.owner.name, row.name, ident.name)
        channel = await service.backend.ssh(service.spec(row))
    except DevyardError as exc:
        await websocket.send_text(json.dumps({"error": {"code": exc.code, "message": exc.message}}))
        await websocket.close(code=4000 + min(exc.status, 999))
        return
    except WebSocketDisconnect:  # the client went away while its workspace started
        return
    try:
        if not ended.is_set():
            address = websocket.client.host if websocket.client else "unknown"
            await websocket.app.state.audit.record(ident.name, "workspace.ssh", where, success=True, address=address)
            await websocket.send_text(json.dumps({"ready": where}))
            await _relay(websocket, service, channel, row.uid, ended)
    finally:
        with contextlib.suppress(Exception):
            channel.writer.close()
        await channel.end()
        with contextlib.suppress(WebSocketDisconnect, RuntimeError):
            await websocket.close(code=1000 if not ended.is_set() else 4403)


async def _relay(
    websocket: WebSocket, service: WorkspaceService, channel: Channel, uid: str, ended: asyncio.Event
) -> None:
    """Copy bytes both ways until either side ends or access is taken away (`ended`)."""

    async def upstream() -> None:
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            data = message.get("bytes")
            if data:
                channel.writer.write(data)
                await channel.writer.drain()
                service.touch(uid)

    async def downstream() -> None:
        while True:
            data = await channel.reader.read(CHUNK)
            if not data:
                return
            await websocket.send_bytes(data)
            service.touch(uid)

    tasks = [asyncio.ensure_future(t) for t in (upstream(), downstream(), ended.wait())]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
