"""Running the manager: uvicorn (uvloop, httptools, websockets) with devyard's startup report.

`up` exits the way uvicorn's shutdown does (stop accepting, let connections finish for a few
seconds, then cancel) and leaves engines running for the next manager to adopt.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import socket
from collections.abc import Callable

import uvicorn
from fastapi import FastAPI
from starlette.types import ASGIApp
from uvicorn.config import LOGGING_CONFIG

from devyard.api import contract
from devyard.app import create_app
from devyard.config import Settings
from devyard.errors import DevyardError
from devyard.forwarded import ForwardedHeaders, bind_unix, trusted_hosts
from devyard.gateway import GatewayMiddleware
from devyard.gateway.tunnel import TunnelProtocol
from devyard.live import LiveConnections
from devyard.origins import Origins
from devyard.paths import MANAGER_FILE
from devyard.settings_reload import reload_settings

log = logging.getLogger("devyard.config")

WS_MAX_MESSAGE_BYTES = 256 * 1024 * 1024  # VS Code can send large messages (file contents)
GRACEFUL_SHUTDOWN_S = 5


class _Server(uvicorn.Server):
    def __init__(
        self, config: uvicorn.Config, settings: Settings, app: FastAPI, on_ready: Callable[[str, str], None]
    ) -> None:
        super().__init__(config)
        self.settings = settings
        self.app = app
        self.origins: Origins = app.state.origins
        self.on_ready = on_ready

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.should_exit or not self.servers:
            return
        # SIGHUP (`systemctl reload devyard`) reads devyard.yaml again (settings_reload.py).
        asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, self._reload)
        host, port = self.servers[0].sockets[0].getsockname()[:2]
        scheme = "https" if self.settings.tls_cert else "http"
        shown = f"[{host}]" if ":" in host else host
        url = f"{scheme}://{shown}:{port}"
        record = self.settings.run_dir / MANAGER_FILE
        record.parent.mkdir(parents=True, exist_ok=True)
        # A self-signed certificate is what local clients must trust (the CLI reads it from here).
        ca = str(self.settings.tls_cert) if self.settings.tls == "self-signed" and self.settings.tls_cert else None
        record.write_text(json.dumps({"url": url, "pid": os.getpid(), "ca": ca}))
        self.origins.listening(scheme, port)  # workspace URLs name the port actually bound (port 0 picks one)
        self.live.connections = self.server_state.connections  # revocation hangs up keep-alive connections (live.py)
        self.on_ready(url, self.origins.dashboard_url() if not self.origins.path_mode else url)

    def _reload(self) -> None:
        try:
            reload_settings(self.settings)  # it logs what it applied, or what needs a restart
            contract.forget(self.app)
            self.app.state.auth.invalidate()  # what groups grant may have changed
        except DevyardError as exc:
            log.error("reload failed, nothing changed: %s", exc.message)

    @property
    def live(self) -> LiveConnections:
        """The gateway's registry of live connections (made when the app's lifespan starts)."""
        live: LiveConnections = self.app.state.gateway.live
        return live

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)
        (self.settings.run_dir / MANAGER_FILE).unlink(missing_ok=True)
        await super().shutdown(sockets)


def serve(settings: Settings, on_ready: Callable[[str, str], None]) -> None:
    """Serve the manager in the foreground until SIGINT or SIGTERM (on host:port, and on the unix socket `uds` when set).

    `on_ready` gets the address bound and the dashboard's URL (where browsers should go).
    """
    fastapi_app = create_app(settings)
    app: ASGIApp = GatewayMiddleware(fastapi_app)
    if settings.trusted_proxies or settings.uds:  # nobody to believe otherwise: no layer on every request's path
        app = ForwardedHeaders(app, settings.trusted_proxies)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        http="httptools",
        # /w/ upgrades become byte tunnels to engines; the rest goes on to websockets-sansio (tunnel.py).
        # Tunnels find the Gateway in the lifespan state (GatewayMiddleware puts it there): the lifespan must run.
        ws=TunnelProtocol,
        ws_max_size=WS_MAX_MESSAGE_BYTES,
        lifespan="on",
        # X-Forwarded-For/-Proto only from the configured proxies and the unix socket (forwarded.py):
        # anyone else could forge them. The tunnel reads forwarded_allow_ips for its upgrades.
        proxy_headers=False,
        forwarded_allow_ips=trusted_hosts(settings.trusted_proxies),
        server_header=False,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
        log_level="info",
        # JSON logs: uvicorn's own records go through the root handler (devyard.logs) instead of its text formatters.
        log_config=None if settings.log_format == "json" else LOGGING_CONFIG,
        access_log=False,
        ssl_certfile=settings.tls_cert,
        ssl_keyfile=settings.tls_key,
    )
    sockets = [config.bind_socket()]
    if settings.uds:
        sockets.append(bind_unix(settings.uds))
    try:
        _Server(config, settings, fastapi_app, on_ready).run(sockets=sockets)
    finally:
        if settings.uds:
            settings.uds.unlink(missing_ok=True)
