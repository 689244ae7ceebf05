"""create_app(settings): the manager's ASGI app, with its store, backend, services and routers."""

from __future__ import annotations

import gc
import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.middleware.sessions import SessionMiddleware

from devyard import __version__
from devyard.api import auth as auth_api
from devyard.api import (
    backups,
    bulk,
    contract,
    events,
    group_shares,
    manage,
    meta,
    metrics,
    secrets,
    seed,
    uploads,
    users,
    workspaces,
)
from devyard.api import groups as groups_api
from devyard.api import ssh as ssh_api
from devyard.api import usage as usage_api
from devyard.api.errors import install_handlers
from devyard.audit import AuditLog
from devyard.auth.groups import Groups
from devyard.auth.identity import Authenticator
from devyard.auth.oidc import OidcLogin, check_settings
from devyard.auth.secrets import load_or_create_key
from devyard.auth.throttle import LoginThrottle, Rate
from devyard.backends import base, load_backend
from devyard.backends.base import Backend
from devyard.clock import CLOCK
from devyard.config import Settings
from devyard.engine import install
from devyard.gateway import Gateway
from devyard.gateway.assets import StaticAssets
from devyard.gateway.handoff import Handoff
from devyard.loops import Loop
from devyard.metrics import Metrics
from devyard.models import Progress
from devyard.origins import Origins
from devyard.settings_groups import rights
from devyard.store import coordination
from devyard.store.coordination import Coordinator
from devyard.store.db import migrate_apart, open_engine, sessionmaker
from devyard.usersecrets import SecretStore
from devyard.web import admin, handoff, pages, sso, views
from devyard.web import usage as usage_pages
from devyard.web.security_headers import SecurityHeaders
from devyard.workspaces.access import Listeners
from devyard.workspaces.activity import Activity
from devyard.workspaces.backups import Scheduler
from devyard.workspaces.diskwatch import DiskWatch
from devyard.workspaces.dormancy import Dormancy
from devyard.workspaces.events import EventHub, StatsSampler, sample_running
from devyard.workspaces.lifecycle import Lifecycle
from devyard.workspaces.ports import PortTable
from devyard.workspaces.presenter import Presenter
from devyard.workspaces.provisioning import Provisioner
from devyard.workspaces.reconcile import Reconciler
from devyard.workspaces.replicas import Replicas
from devyard.workspaces.repository import Repository
from devyard.workspaces.routes import RouteTable
from devyard.workspaces.runner import Runner
from devyard.workspaces.service import WorkspaceService
from devyard.workspaces.supervisor import Supervisor
from devyard.workspaces.timers import Timers
from devyard.workspaces.usage import Recorder

log = logging.getLogger("devyard")


def create_app(settings: Settings) -> FastAPI:
    """The manager's app; the database is migrated and engines adopted when it starts."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        migrate_apart(settings.db_url)
        _protect(settings)
        engine = open_engine(settings.db_url)
        db = sessionmaker(engine)
        throttle = LoginThrottle(
            per_address=Rate(settings.login_address_per_minute, settings.login_address_per_hour),
            per_user=Rate(settings.login_user_per_minute, settings.login_user_per_hour),
        )
        audit = AuditLog(db)
        auth = Authenticator(
            db,
            throttle,
            audit,
            key,
            settings.session_ttl_s,
            settings.session_idle_s,
            settings.identity_cache_s,
            lambda groups: rights(settings.groups, groups).admin,
        )
        app.state.groups = Groups(db, audit)
        coordinator = coordination.for_database(settings.db_url, settings.run_dir / "leader.lock")
        service = build_workspaces(settings, db, backend, SecretStore(db, secrets_key), coordinator, origins, audit)
        app.state.db, app.state.auth, app.state.audit, app.state.workspaces = db, auth, audit, service
        app.state.groups.changed.append(service.group_changed)
        installed = install.locate(settings.engine_dir)
        assets = StaticAssets(
            installed.static_root if installed else None,
            settings.data_dir / "cache" / "static",
            settings.asset_cache_mb << 20,
            service.metrics.registry,
        )
        app.state.handoff = Handoff(db, key)
        app.state.gateway = Gateway(auth, service, assets, app.state.handoff)
        await service.startup()
        # What exists now lives as long as the process (modules, routes, the app): out of the
        # collector's sight, so a full collection no longer rescans ~170k objects every few
        # requests (the density benchmark's list p95 went from ~170 to ~60 ms).
        gc.freeze()
        try:
            yield
        finally:
            await service.shutdown()
            await app.state.gateway.close()
            await engine.dispose()

    # The API description is served to logged-in users only (meta.router), like every route but a few.
    app = FastAPI(
        title="devyard",
        version=__version__,
        lifespan=lifespan,
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
        # operationId = the handler's name (create_workspace): what generated clients name their functions.
        generate_unique_id_function=lambda route: route.name,
    )
    app.state.settings = settings
    origins = app.state.origins = Origins.from_settings(settings)
    check_settings(settings)
    CLOCK.use(settings.clock_offset_file)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    backend = load_backend(settings)  # before serving: a backend that cannot work here says why now
    app.state.oidc = OidcLogin(settings) if settings.oidc_issuer else None
    key = load_or_create_key(settings.secrets_dir / "session.key")
    secrets_key = load_or_create_key(
        settings.secrets_dir / "secrets.key"
    )  # both before serving: a missing one is said at once
    install_handlers(app)
    contract.install(app)
    # Holds the OIDC state for the few minutes of a sign-in; inside the gateway, which never needs it.
    app.add_middleware(
        SessionMiddleware,
        secret_key=key.hex(),
        session_cookie="devyard_sso",
        max_age=600,
        same_site="lax",
        https_only=settings.secure_cookies or settings.tls_cert is not None,
    )
    app.add_middleware(SecurityHeaders, settings=settings)  # the manager's own pages only: the gateway is outside

    @app.get("/healthz", tags=["meta"], summary="Liveness: no authentication")
    async def healthz() -> dict[str, str]:
        """Always {"status": "ok"} while the manager serves."""
        return {"status": "ok"}

    for router in (
        auth_api.router,
        users.router,
        secrets.router,
        bulk.router,
        uploads.router,
        backups.router,
        workspaces.router,
        events.router,
        meta.router,
        manage.router,
        groups_api.router,
        group_shares.router,
        usage_api.router,
        ssh_api.router,
        seed.router,
    ):
        app.include_router(router, prefix="/api/v1")
    app.include_router(metrics.router)
    app.include_router(views.router)
    app.include_router(pages.router)
    app.include_router(admin.router)
    app.include_router(usage_pages.router)
    app.include_router(sso.router)
    app.include_router(handoff.router)
    app.mount("/static", views.static, name="static")
    return app


def build_workspaces(
    settings: Settings,
    db: async_sessionmaker[AsyncSession],
    backend: Backend,
    secrets: SecretStore,
    coordinator: Coordinator,
    origins: Origins,
    audit: AuditLog,
) -> WorkspaceService:
    """The workspace core, wired: each part gets only what it uses; the service is the API's façade over them."""
    routes, events, metrics = RouteTable(), EventHub(), Metrics()
    progress: dict[
        str, Progress
    ] = {}  # uid → where its provisioning is: written by the provisioner, shown by the presenter
    activity = Activity(db, settings.activity_flush_s)
    presenter = Presenter(
        settings, origins, routes, events, progress, activity, lambda owner: base.ssh_login(backend, owner)
    )
    lifecycle = Lifecycle(
        settings,
        Repository(db, coordinator.notify),
        routes,
        Runner(),
        backend,
        activity,
        PortTable(db, lambda: settings.public_ports),
        metrics,
        presenter,
        secrets,
        coordinator,
        audit,
    )
    supervisor = Supervisor(settings, lifecycle, lifecycle.activity, metrics)
    recorder = Recorder(settings, lifecycle, db)
    loops: list[Loop] = [
        supervisor,
        Timers(settings, lifecycle),
        Dormancy(settings, lifecycle, backend.local_files),
        recorder,
    ]
    if backend.local_files:
        loops.append(DiskWatch(settings, lifecycle))
    if settings.backup_interval_s:
        loops.append(Scheduler(settings, backend.local_files, lifecycle))
    listeners = Listeners()
    replicas = Replicas(
        coordinator, Reconciler(lifecycle), listeners, loops, lambda leading: metrics.leader.set(1 if leading else 0)
    )
    provisioner = Provisioner(settings, lifecycle, lifecycle.repo, secrets, backend.local_files, progress)
    return WorkspaceService(
        lifecycle,
        presenter,
        provisioner,
        supervisor,
        replicas,
        StatsSampler(events, lambda: sample_running(lifecycle)),
        origins,
        listeners,
        recorder,
    )


def _protect(settings: Settings) -> None:
    """The manager's state is its own: data dir closed (passable only, for isolated engines), database 0600."""
    os.chmod(settings.data_dir, 0o711 if settings.isolated else 0o700)
    for db_file in settings.data_dir.glob("devyard.db*"):
        os.chmod(db_file, 0o600)
