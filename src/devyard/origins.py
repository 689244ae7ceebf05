"""Where the dashboard, each workspace and each forwarded port are served: an origin of their own, or paths on one.

With a workspace domain (`workspace_domain`, by default `localhost` on a loopback bind) a workspace
is served at `<name>--<owner>.<domain>` and its port P at `P--<name>--<owner>.<domain>`, so no page
a workspace serves shares the dashboard's origin, its cookies or its service workers (JupyterHub's
`subdomain_host` and Coder's wildcard access URL do the same). Path mode (`none`) keeps every
workspace under `/w/<owner>/<name>/` on the dashboard's origin.

Host labels (letters, digits and hyphens, at most 63 characters): a workspace whose name and owner
are both plain — lower-case letters and digits with single hyphens inside — and short enough that
its longest port label fits gets `<name>--<owner>`. Any other (a `.` or `_` in the owner's name, a
`--` inside a name, a name too long) gets `id---<uid>`: the triple hyphen cannot occur in a plain
label, so the two forms never collide. Parsing: `---` marks the uid form; otherwise the label splits
on `--` into two parts (a workspace) or three whose first is a number (a port).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit

PLAIN = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")
_DOMAIN = re.compile(r"^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$")
MAX_LABEL = 63
_PORT_ROOM = len("65535--")
UID_FORM = "id---"
AUTO, NONE, LOCALHOST = "auto", "none", "localhost"
RESERVED_PREFIX = "/_devyard/"  # on a workspace origin: the gateway's own paths, never the engine's


class Settings(Protocol):
    """What of the manager's settings (config.Settings, which checks itself with check_settings) origins read."""

    @property
    def workspace_domain(self) -> str:
        """`auto`, `none` or a domain name."""

    @property
    def public_url(self) -> str | None:
        """The dashboard's URL as users reach it."""

    @property
    def host(self) -> str:
        """The address the manager binds."""

    @property
    def port(self) -> int:
        """The port it binds (0: one is picked)."""

    @property
    def tls(self) -> str:
        """`off` or `self-signed`."""

    @property
    def tls_cert(self) -> Path | None:
        """A certificate it serves HTTPS with."""


@dataclass(frozen=True, slots=True)
class HostTarget:
    """What a workspace host names: a workspace (by owner and name, or by uid) and maybe one of its ports."""

    owner: str | None = None
    name: str | None = None
    uid: str | None = None
    port: int | None = None


def workspace_label(owner: str, name: str, uid: str) -> str:
    """The host label of a workspace (see the module docstring)."""
    if PLAIN.match(name) and PLAIN.match(owner) and _PORT_ROOM + len(name) + 2 + len(owner) <= MAX_LABEL:
        return f"{name}--{owner}"
    return UID_FORM + uid


def port_label(owner: str, name: str, uid: str, port: int) -> str:
    """The host label of a workspace's forwarded port."""
    return f"{port}--{workspace_label(owner, name, uid)}"


def parse_label(label: str) -> HostTarget | None:
    """The workspace (and port) a host label names, or None when it names none."""
    port: int | None = None
    head, sep, uid = label.partition(UID_FORM)
    if sep:
        if head:
            if not head.endswith("--") or not head[:-2].isdigit():
                return None
            port = int(head[:-2])
        return HostTarget(uid=uid, port=port) if uid and uid.isalnum() and _port_ok(port) else None
    parts = label.split("--")
    if len(parts) == 3 and parts[0].isdigit():
        port, parts = int(parts[0]), parts[1:]
    if len(parts) != 2 or not all(PLAIN.match(p) for p in parts) or not _port_ok(port):
        return None
    return HostTarget(owner=parts[1], name=parts[0], port=port)


def _port_ok(port: int | None) -> bool:
    return port is None or 1 <= port <= 65535


def _is_loopback(host: str) -> bool:
    if host == LOCALHOST:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


def resolve_domain(settings: Settings) -> str | None:
    """The workspace domain in force, None for path mode (`auto` resolved against the bind address and public_url)."""
    domain = settings.workspace_domain.strip().lower().rstrip(".")
    if domain == NONE:
        return None
    if domain == AUTO:
        if settings.public_url:
            host = urlsplit(settings.public_url).hostname or ""
            return LOCALHOST if _is_loopback(host) else None
        return LOCALHOST if _is_loopback(settings.host) else None
    return domain


def check_settings(settings: Settings) -> None:
    """ValueError naming the problem when workspace_domain or public_url cannot work."""
    if settings.public_url is not None:
        parts = urlsplit(settings.public_url)
        if (
            parts.scheme not in ("http", "https")
            or not parts.hostname
            or parts.path not in ("", "/")
            or parts.query
            or parts.fragment
        ):
            raise ValueError(
                f"public_url {settings.public_url!r}: give the dashboard's URL, scheme and host only, such as https://devyard.example.com"
            )
    domain = settings.workspace_domain.strip().lower().rstrip(".")
    if domain in (AUTO, NONE):
        return
    if not _DOMAIN.match(domain):
        raise ValueError(
            f"workspace_domain {settings.workspace_domain!r} is not a domain name (such as ws.example.com), `auto` or `none`"
        )
    if domain != LOCALHOST and settings.public_url is None:
        raise ValueError(
            f"workspace_domain {domain}: set public_url too (the dashboard's URL), so that links and redirects never come from a request's Host"
        )


PORT_URI_TEMPLATE = "//{{port}}--{{host}}/"


def engine_proxy_uri(settings: Settings) -> str | None:
    """VSCODE_PROXY_URI for engines: where the workbench's Ports view and "open in browser" send a port.

    code-server fills in `{{port}}` and `{{host}}` (the workspace's host, with its port) in the
    browser, so one template serves every workspace, pool engines included. Path mode: None, and
    code-server's own `/proxy/{{port}}/` under the workspace's path applies.
    """
    return PORT_URI_TEMPLATE if resolve_domain(settings) is not None else None


class Origins:
    """The origins in force: path mode or a workspace domain, and the URLs of the dashboard, workspaces and ports."""

    def __init__(
        self, domain: str | None, public_url: str | None = None, scheme: str = "http", port: int | None = None
    ) -> None:
        self.domain = domain
        self.public = urlsplit(public_url) if public_url else None
        self.scheme, self.port = scheme, port

    @classmethod
    def from_settings(cls, settings: Settings) -> Origins:
        """The origins `settings` ask for (the listening port is learned when the server has bound it)."""
        scheme = "https" if settings.tls_cert or settings.tls == "self-signed" else "http"
        return cls(resolve_domain(settings), settings.public_url, scheme, settings.port or None)

    def listening(self, scheme: str, port: int) -> None:
        """The server is bound: URLs built without public_url use its scheme and port."""
        self.scheme, self.port = scheme, port

    @property
    def path_mode(self) -> bool:
        """Whether workspaces share the dashboard's origin (`/w/<owner>/<name>/`)."""
        return self.domain is None

    @property
    def secure(self) -> bool:
        """Whether users reach the manager over HTTPS."""
        return (self.public.scheme if self.public else self.scheme) == "https"

    def _authority(self, host: str) -> str:
        if self.public is not None:
            port = self.public.port
            scheme = self.public.scheme
        else:
            port, scheme = self.port, self.scheme
        default = 443 if scheme == "https" else 80
        return f"{scheme}://{host}" + (f":{port}" if port and port != default else "")

    def dashboard_url(self) -> str:
        """The dashboard's base URL, without a trailing slash."""
        if self.public is not None:
            return self._authority(self.public.hostname or "")
        return self._authority(self.domain or LOCALHOST)

    def workspace_url(self, owner: str, name: str, uid: str) -> str:
        """Where a workspace opens: its own origin, or its path on the dashboard's (path mode)."""
        if self.domain is None:
            path = f"/w/{owner}/{name}/"
            return self.dashboard_url() + path if self.public is not None else path
        return self._authority(f"{workspace_label(owner, name, uid)}.{self.domain}") + "/"

    def port_url(self, owner: str, name: str, uid: str, port: int) -> str:
        """Where a workspace's forwarded port opens (path mode: the engine's own /proxy/<port>/)."""
        if self.domain is None:
            return self.workspace_url(owner, name, uid) + f"proxy/{port}/"
        return self._authority(f"{port_label(owner, name, uid, port)}.{self.domain}") + "/"

    def target(self, host: str | None) -> HostTarget | None:
        """The workspace (and port) a request's Host names, or None for the dashboard's own hosts."""
        if self.domain is None or not host:
            return None
        name = _hostname(host)
        suffix = "." + self.domain
        if not name.endswith(suffix):
            return None
        label = name[: -len(suffix)]
        return parse_label(label) if "." not in label else None

    def under_domain(self, host: str | None) -> bool:
        """Whether a Host is below the workspace domain (a workspace host, or a name there that names none)."""
        return self.domain is not None and bool(host) and _hostname(host or "").endswith("." + self.domain)

    def host_allowed(self, host: str | None) -> bool:
        """Whether a request for `host` may be served: with public_url, only its host, workspace hosts and the machine's own.

        An IP address or `localhost` is the CLI or a health probe on the host reaching the manager
        by its address (no DNS name that an attacker could point here, as in DNS rebinding).
        """
        if self.public is None:
            return True
        if not host:
            return False
        name = _hostname(host)
        return (
            name == (self.public.hostname or "").lower()
            or self.target(host) is not None
            or name == LOCALHOST
            or _is_ip(name)
        )

    def elsewhere(self, host: str | None) -> str | None:
        """The dashboard's URL when a browser reached it at a loopback address instead of `localhost`, else None.

        A login made at 127.0.0.1 is a cookie for 127.0.0.1, which the workspaces' sign-in at
        localhost cannot see: pages there are sent to localhost first.
        """
        if self.public is not None or self.domain != LOCALHOST or not host:
            return None
        name = _hostname(host)
        return self.dashboard_url() if name != LOCALHOST and _is_loopback(name) else None

    def dashboard_host(self, host: str | None) -> bool:
        """Whether `host` is the dashboard's (public_url's host, or any host not under the workspace domain)."""
        if self.public is not None:
            return bool(host) and _hostname(host or "") == (self.public.hostname or "").lower()
        return not self.under_domain(host)


def _hostname(host: str) -> str:
    """A Host header's name, lower-case, without its port."""
    host = host.strip().lower()
    if host.startswith("["):
        return host.split("]", 1)[0] + "]"
    return host.rsplit(":", 1)[0] if ":" in host else host
