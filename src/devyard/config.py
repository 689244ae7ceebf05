"""Settings: built once from devyard.yaml (optional) and DEVYARD_* variables, then passed down.

Precedence, highest first: command-line flags, DEVYARD_* environment variables, the `devyard:`
block of the config file, defaults. Databricks DevBox keys (`extension_groups`, `packaged_assets`,
`ui`) are read from the top level of the same file unchanged.
"""

from __future__ import annotations

import ipaddress
import os
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from devyard.engine.install import CODE_SERVER_VERSION
from devyard.errors import Invalid
from devyard.origins import check_settings as check_origins

# Run as root, devyard is a system service whose engines run as other accounts: its data must sit
# where those accounts can reach their own folders, which /root (0700) is not.
DEFAULT_DATA_DIR = Path("/var/lib/devyard") if os.geteuid() == 0 else Path("~/.local/share/devyard").expanduser()
DEFAULT_ENGINE_DIR = Path("~/.cache/devyard/engine").expanduser()
# Tools run as every user's account: as root they live where those accounts can read them.
DEFAULT_TOOLS_DIR = Path("/var/cache/devyard/tools") if os.geteuid() == 0 else Path("~/.cache/devyard/tools").expanduser()
_NPM_SPEC = re.compile(r"^(@[a-z0-9][a-z0-9._~-]*/)?[a-z0-9][a-z0-9._~-]*@[0-9][0-9A-Za-z.+-]*$")
_PYPI_SPEC = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(\[[A-Za-z0-9,._-]+\])?==[0-9][0-9A-Za-z.+!-]*$")
DEFAULT_PORT = 8000
DEFAULT_SIZE, NO_LIMITS = "small", "none"
# Private, shared (carrier-grade NAT), link-local and loopback ranges: where a cluster's pods, services and databases live.
PRIVATE_NETWORKS = ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "169.254.0.0/16", "127.0.0.0/8",
                    "fc00::/7", "fe80::/10", "::1/128")


class ExtensionGroup(BaseModel):
    """A named set of extensions plus user settings (DevBox `extension_groups[]`)."""

    name: str
    description: str = ""
    extensions: list[str] = Field(default_factory=list)
    user_settings: dict[str, Any] = Field(default_factory=dict)


class CatalogItem(BaseModel):
    """One template card (DevBox `packaged_assets.tabs[].items[]`, read unchanged)."""

    model_config = ConfigDict(extra="allow")

    name: str
    description: str = ""
    extensions_groups: list[str] = Field(default_factory=list)
    github_url: str | None = None
    thumbnail_url: str | None = None
    icon_links: Any = None


class CatalogTab(BaseModel):
    """A tab of template cards."""

    model_config = ConfigDict(extra="allow")

    name: str = ""
    items: list[CatalogItem] = Field(default_factory=list)


class PackagedAssets(BaseModel):
    """DevBox `packaged_assets`: the template catalog."""

    model_config = ConfigDict(extra="allow")

    tabs: list[CatalogTab] = Field(default_factory=list)


class UiWorkspace(BaseModel):
    """DevBox `ui.workspace`."""

    model_config = ConfigDict(extra="allow")

    max_upload_size_mb: int = Field(default=1024, gt=0)


class Ui(BaseModel):
    """DevBox `ui`: what the create form offers by default."""

    model_config = ConfigDict(extra="allow")

    default_extension_groups: list[str] = Field(default_factory=list)
    workspace: UiWorkspace = Field(default_factory=UiWorkspace)


class Tool(BaseModel):
    """A command-line tool for every workspace's terminal: one pinned npm or PyPI package (`tools:`)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]{0,63}$")
    npm: str | None = None  # "@scope/package@1.2.3"
    pypi: str | None = None  # "package==1.2.3"

    @model_validator(mode="after")
    def _one_pinned_package(self) -> "Tool":
        if (self.npm is None) == (self.pypi is None):
            raise ValueError(f"tool {self.name}: give exactly one of npm or pypi")
        if self.npm is not None and not _NPM_SPEC.match(self.npm):
            raise ValueError(f"tool {self.name}: npm must be a pinned package such as @scope/name@1.2.3, not {self.npm!r}")
        if self.pypi is not None and not _PYPI_SPEC.match(self.pypi):
            raise ValueError(f"tool {self.name}: pypi must be a pinned package such as name==1.2.3, not {self.pypi!r}")
        return self


OPEN_VSX = "https://open-vsx.org/vscode/gallery"
_SIZE_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,30}$")


DEFAULT_PIDS_MAX = 4096  # tasks (threads count): an engine with a few terminals uses about 150


class Size(BaseModel):
    """A size preset (`devyard.sizes.<name>`): what one workspace may use; a memory, CPU or disk limit left out is none."""

    model_config = ConfigDict(extra="forbid")

    memory_mb: int | None = Field(default=None, gt=0)
    cpus: float | None = Field(default=None, gt=0)
    disk_mb: int | None = Field(default=None, gt=0)
    pids_max: int = Field(default=DEFAULT_PIDS_MAX, ge=64, description="Most processes and threads the workspace may run at once.")
    description: str = ""


class Pool(BaseModel):
    """The warm pool (`devyard.pool`): engines booted ahead, handed to new workspaces as they are created."""

    model_config = ConfigDict(extra="forbid")

    size: int = Field(default=0, ge=0, le=64, description="Engines kept booted and waiting; 0: no pool.")


class KubernetesSettings(BaseModel):
    """Where and how the `kubernetes` backend runs engines (`devyard.kubernetes`); see docs/backends.md."""

    model_config = ConfigDict(extra="forbid")

    namespace: str = Field(default="devyard", pattern=r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$",
                           description="The one namespace the manager creates workspaces' objects in.")
    image: str = Field(default=f"docker.io/codercom/code-server:{CODE_SERVER_VERSION}",
                       description="The engine image: code-server, run as a non-root user (default: the local engine's pinned version).")
    image_pull_policy: Literal["IfNotPresent", "Always", "Never"] = "IfNotPresent"
    image_pull_secrets: list[str] = Field(default_factory=list, description="Secrets in the namespace for pulling a private engine image.")
    storage_class: str | None = Field(default=None, description="StorageClass of the workspaces' volumes (none: the cluster's default).")
    storage: str = Field(default="10Gi", pattern=r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|k|M|G|T)?$",
                         description="Volume size of a workspace whose size preset names no disk_mb.")
    engine_command: list[str] = Field(default_factory=lambda: ["dumb-init", "/usr/bin/code-server"], min_length=1,
                                      description="The engine container's command; code-server's arguments follow (dumb-init reaps the terminals' orphans).")
    engine_port: int = Field(default=8080, ge=1, le=65535, description="The port engines listen on inside their pod (and their Service).")
    run_as_user: int = Field(default=1000, ge=1, description="The non-root uid engines run as (the code-server image's `coder`).")
    fs_group: int = Field(default=1000, ge=1, description="Group that owns the workspace volume, so the engine can write it.")
    manager_labels: dict[str, str] = Field(default_factory=lambda: {"app.kubernetes.io/name": "devyard", "app.kubernetes.io/component": "manager"},
                                           description="Labels of the manager's pods: the only pods the NetworkPolicy lets reach an engine.")
    egress_allow: list[str] = Field(default_factory=lambda: ["0.0.0.0/0", "::/0"],
                                    description="Where workspace pods may connect (CIDRs), less egress_deny: by default the internet.")
    egress_deny: list[str] = Field(default_factory=lambda: list(PRIVATE_NETWORKS),
                                   description="Networks workspace pods may not reach inside egress_allow: by default every private, shared and "
                                   "link-local range, so the cluster's pods and services, the manager's database and cloud metadata are out of reach "
                                   "(DNS and the manager's own pods stay allowed).")
    dns_labels: dict[str, str] = Field(default_factory=lambda: {"k8s-app": "kube-dns"},
                                       description="Labels of the cluster's DNS pods (any namespace), which workspace pods may ask on port 53.")
    default_memory: str = Field(default="2Gi", pattern=r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|k|M|G|T)?$",
                                description="Memory limit of a workspace pod whose size names none (default_size: none).")
    default_cpu: str = Field(default="1", pattern=r"^[0-9]+(\.[0-9]+)?m?$", description="CPU limit of a workspace pod whose size names none.")
    seed_url: str | None = Field(default=None, description="Base URL at which a new workspace's pod fetches what provisioning made, from "
                                 "this manager replica (default: http://$DEVYARD_POD_IP:<port>, the pod IP the Deployment passes in).")
    start_timeout_s: float = Field(default=600.0, gt=0, description="How long a pod may take to be scheduled, pull its image and become ready.")
    kubeconfig: Path | None = Field(default=None, description="A kubeconfig file to use (default: in-cluster config, else $KUBECONFIG, else ~/.kube/config).")
    context: str | None = Field(default=None, description="The kubeconfig context to use (default: its current one).")

    @model_validator(mode="after")
    def _networks(self) -> "KubernetesSettings":
        for key in ("egress_allow", "egress_deny"):
            for network in getattr(self, key):
                try:
                    ipaddress.ip_network(network)
                except ValueError as exc:
                    raise ValueError(f"kubernetes.{key}: {network!r} is not a network (CIDR such as 10.0.0.0/8): {exc}") from exc
        return self


# Machine types in the spirit of hosted workspaces; a deployment names its own in devyard.yaml.

DEFAULT_SIZES = {
    "small": Size(memory_mb=2048, cpus=1, disk_mb=10_240, description="2 GB memory, 1 CPU, 10 GB disk"),
    "medium": Size(memory_mb=4096, cpus=2, disk_mb=20_480, description="4 GB memory, 2 CPUs, 20 GB disk"),
    "large": Size(memory_mb=8192, cpus=4, disk_mb=51_200, description="8 GB memory, 4 CPUs, 50 GB disk"),
}


class ExtensionSettings(BaseModel):
    """Where extensions come from and which may be installed (`devyard.extensions`)."""

    model_config = ConfigDict(extra="forbid")

    gallery: str | None = Field(default=OPEN_VSX)
    vsix_dir: Path | None = None
    allow: list[str] = Field(default_factory=list)
    install_timeout_s: float = Field(default=300.0, gt=0)
    # `devyard extensions check` opens a real workbench in this browser to see extensions activate.
    browser: Path = Path("/usr/bin/chromium")


class Settings(BaseSettings):
    """Everything the manager can be told; each field is documented in docs/config.md."""

    model_config = SettingsConfigDict(env_prefix="DEVYARD_", env_nested_delimiter="__", extra="ignore")

    data_dir: Path = Field(DEFAULT_DATA_DIR, description="Where devyard keeps its database, workspaces, sockets and secrets.")
    keys_dir: Path | None = Field(None, description="Where the manager's keys are (session.key, secrets.key; made on first use when missing): default <data_dir>/secrets. Replicas must share them: a cluster deployment mounts one Secret here in each.")
    host: str = Field("127.0.0.1", description="Address the manager listens on.")
    port: int = Field(DEFAULT_PORT, ge=0, le=65535, description="TCP port the manager listens on (0 picks a free one).")
    engine_dir: Path = Field(DEFAULT_ENGINE_DIR, description="Cache of installed code-server engines, one folder per version.")
    backend: str = Field("local", description="Where engines run: `local` (child processes on this machine) or `kubernetes` (a pod, volume and service per workspace); other backends register under the `devyard.backends` entry points.")
    database_url: str | None = Field(None, description="URL of the state database: default SQLite at <data_dir>/devyard.db; `postgresql://user:password@host/db` for PostgreSQL (needed to run more than one manager replica).")
    admin_password: SecretStr | None = Field(None, description="Password of the `admin` user created on first start; generated and printed once when unset.")
    session_ttl_s: int = Field(7 * 24 * 3600, gt=0, description="Absolute lifetime of a browser login, in seconds.")
    session_idle_s: int = Field(12 * 3600, gt=0, description="A browser login unused this long (seconds) ends.")
    secure_cookies: bool = Field(False, description="Mark session cookies Secure (set it when a TLS proxy fronts devyard).")
    tls: Literal["off", "self-signed"] = Field("off", description="`self-signed`: serve HTTPS with a certificate devyard makes and keeps in <data_dir>/secrets/tls.")
    tls_cert: Path | None = Field(None, description="PEM certificate: serve HTTPS directly.")
    tls_key: Path | None = Field(None, description="PEM private key for tls_cert.")
    trusted_proxies: list[str] = Field(default_factory=list, description="Addresses (or CIDR ranges) of reverse proxies whose X-Forwarded-For/-Proto are believed; nobody else's are.")
    engine_start_timeout_s: float = Field(90.0, gt=0, description="How long an engine may take to answer on its socket before the workspace is failed.")
    engine_stop_timeout_s: float = Field(10.0, gt=0, description="How long each stop signal (SIGINT, SIGTERM) waits before escalating.")
    login_address_per_minute: int = Field(2, ge=1, description="Failed logins a client address may make per minute (plus the hourly allowance).")
    login_address_per_hour: int = Field(12, ge=0, description="Failed logins a client address may make per hour beyond the per-minute allowance.")
    login_user_per_minute: int = Field(10, ge=1, description="Failed logins per minute against one user from addresses it has not logged in from.")
    login_user_per_hour: int = Field(60, ge=0, description="Failed logins per hour against one user beyond the per-minute allowance.")
    disable_file_downloads: bool = Field(False, description="Policy for every engine: no downloading files from the editor.")
    disable_file_uploads: bool = Field(False, description="Policy for every engine: no uploading files into the editor.")
    os_accounts: Literal["auto", "on", "off"] = Field(
        "auto", description="Run each user's engines as a system account of their own (`dy-<user>`); `auto`: when the manager runs as root.")
    asset_cache_mb: int = Field(128, ge=0, description="Memory for the gateway's cache of the engine's compressed immutable assets, shared by all workspaces, in MB; 0 turns it off.")
    activity_flush_s: float = Field(15.0, gt=0, description="How often gateway activity is written to the database, in seconds.")
    oidc_issuer: str | None = Field(None, description="OpenID Connect issuer URL: enables single sign-on (`Sign in with SSO`).")
    oidc_client_id: str | None = Field(None, description="Client id devyard is registered with at the OIDC issuer.")
    oidc_client_secret: SecretStr | None = Field(None, description="Client secret for oidc_client_id.")
    oidc_scopes: str = Field("openid email profile", description="Scopes asked of the issuer (add `groups` where the issuer needs it for a groups claim).")
    oidc_allowed_domains: list[str] = Field(default_factory=list, description="Email domains (verified email) whose owners may sign in with SSO.")
    oidc_allowed_groups: list[str] = Field(default_factory=list, description="Groups (the `groups` claim) whose members may sign in with SSO.")
    extension_groups: list[ExtensionGroup] = Field(default_factory=list, description="DevBox `extension_groups`: named extension sets offered when creating a workspace.")
    extensions: ExtensionSettings = Field(default_factory=ExtensionSettings, description="`gallery` (Open VSX-compatible service URL; empty: none), `vsix_dir` (a mirror of .vsix files, used first), `allow` (glob patterns of extension ids; empty: any), `install_timeout_s`.")
    tools: list[Tool] = Field(default_factory=list, description="`tools:` pinned npm or PyPI packages (e.g. AI coding CLIs) installed once per version and put on every workspace terminal's PATH.")
    tools_dir: Path = Field(DEFAULT_TOOLS_DIR, description="Cache of installed tools, one folder per package and version.")
    packaged_assets: PackagedAssets = Field(default_factory=PackagedAssets, description="DevBox `packaged_assets`: the template catalog (tabs of items with github_url and extensions_groups).")
    ui: Ui = Field(default_factory=Ui, description="DevBox `ui`: `default_extension_groups` and `workspace.max_upload_size_mb` (archive uploads).")
    git_file_roots: list[Path] = Field(default_factory=list, description="Folders below which file:// git URLs may be cloned (none by default: file:// is refused).")
    git_clone_timeout_s: float = Field(600.0, gt=0, description="How long a git clone may take before provisioning fails.")
    archive_max_entries: int = Field(100_000, gt=0, description="Most entries an uploaded archive may hold.")
    archive_max_expanded_mb: int = Field(10_240, gt=0, description="Most an uploaded archive may expand to, in MB.")
    idle_timeout_s: int = Field(0, ge=0, description="Stop a running workspace nobody used (no request, no WebSocket message) for this long, in seconds; 0: never. A workspace's own `idle_timeout_s` overrides it.")
    reconnection_grace_s: int = Field(300, ge=1, description="How long an engine keeps the extension host of a closed browser tab, in seconds (code-server's own default is 3 hours).")
    supervise_interval_s: float = Field(1.0, gt=0, description="How often running engines are checked for having exited, in seconds.")
    crash_restarts: int = Field(3, ge=0, description="Restarts of an engine that crashed, within crash_window_s, before the workspace is failed.")
    crash_window_s: float = Field(300.0, gt=0, description="The window, in seconds, in which crashes count towards crash_restarts.")
    crash_backoff_s: float = Field(1.0, gt=0, description="Wait before restarting after the first crash, doubled for each further one (up to crash_backoff_max_s).")
    crash_backoff_max_s: float = Field(30.0, gt=0, description="Longest wait before restarting a crashed engine, in seconds.")
    max_workspaces_per_user: int | None = Field(None, ge=0, description="Quota: workspaces a user may have (none: no limit); admins can set it per user.")
    max_running_per_user: int | None = Field(None, ge=0, description="Quota: workspaces a user may have running at once (none: no limit); admins can set it per user.")
    max_disk_mb_per_user: int | None = Field(None, ge=0, description="Quota: disk all of a user's workspaces may use, in MB, checked at create and start (none: no limit); admins can set it per user.")
    pool: Pool = Field(default_factory=Pool, description="The warm pool: `size` engines kept booted and handed to new workspaces, so create→ready skips the engine's boot.")
    sizes: dict[str, Size] = Field(default_factory=lambda: dict(DEFAULT_SIZES), description="Size presets a workspace is created with (`name: {memory_mb, cpus, disk_mb, description}`): memory and CPU limits through cgroups, disk checked at start. Default: small, medium, large.")
    default_size: str | None = Field("small", description="The size of workspaces created without one: `small` (or the first preset when there is no `small`). Workspaces without any limits must be asked for: `none` (or null), then only the pids limit applies.")
    backup_dir: Path | None = Field(None, description="Where scheduled backups are written, one folder per workspace (default <data_dir>/backups).")
    backup_interval_s: int = Field(0, ge=0, description="Back up every provisioned workspace this often, in seconds (running ones too, consistently); 0: no scheduled backups.")
    backup_keep: int = Field(7, ge=1, description="Scheduled backups kept per workspace; older ones are removed.")
    sandbox: Literal["auto", "on", "off"] = Field(
        "auto", description="Run each local engine in a sandbox of its own (bubblewrap and slirp4netns): its own network, process, IPC and host "
        "name namespaces, a private /tmp and /dev/shm, the system read-only and only its workspace's folders writable; egress to the "
        "internet works, this host's loopback and addresses, other workspaces and link-local addresses do not. `auto`: wherever it can "
        "run (root, per-user accounts, bwrap and slirp4netns installed), saying what is missing where not; `on`: refuse to start engines without it.")
    sandbox_deny_networks: list[str] = Field(default_factory=list, description="More networks (CIDR) sandboxed engines may not reach, besides the "
                                             "ones always denied: this host's own addresses and link-local 169.254.0.0/16 (cloud metadata). E.g. "
                                             "`[10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16]` to keep workspaces off a private network.")
    engine_env: dict[str, str] = Field(default_factory=dict, description="Variables every engine, terminal, extension install and git clone gets "
                                       "(e.g. HTTPS_PROXY, NO_PROXY). Of the manager's own environment only PATH, LANG, LANGUAGE, LC_* and TZ reach them.")
    disk_check_interval_s: float = Field(60.0, gt=0, description="How often running workspaces' disk use is checked against their size's disk_mb, in seconds.")
    disk_grace_s: float = Field(300.0, ge=0, description="How long a running workspace may stay over its disk allowance after its owner is warned, "
                                "in seconds; then it is stopped, with the reason shown.")
    workspace_domain: str = Field("auto", description="The domain under which every workspace gets an origin of its own: `<name>--<owner>.<domain>`, "
                                  "and each forwarded port `<port>--<name>--<owner>.<domain>` (names that cannot be a host label become `id---<uid>`). "
                                  "Needs a wildcard DNS record and certificate for `*.<domain>`. `auto`: `localhost` while the manager listens on a "
                                  "loopback address (browsers resolve `*.localhost` themselves), else path mode. `none`: path mode, every workspace "
                                  "under `/w/<owner>/<name>/` on the dashboard's own origin, which suits only users who trust each other.")
    public_url: str | None = Field(None, description="The dashboard's URL as users reach it (e.g. `https://devyard.example.com`): requests for any "
                                   "other host than it and the workspace hosts under workspace_domain are refused, and redirects, the OIDC "
                                   "redirect_uri and the API's workspace URLs are built from it, never from a request's Host. Required with a "
                                   "workspace_domain other than localhost.")
    public_ports: bool = Field(False, description="Whether owners may make a forwarded port `public`: reachable by anyone with its link, without logging in.")
    uds: Path | None = Field(None, description="Also listen on this unix socket (mode 0660, root's group): for a reverse proxy on the same host, "
                             "which then needs no loopback address trusted for X-Forwarded-For (docs/nginx.conf).")
    log_format: Literal["text", "json"] = Field("text", description="`json`: one JSON object per log line (time, level, logger, message), for log collectors.")
    kubernetes: KubernetesSettings = Field(default_factory=KubernetesSettings, description="The `kubernetes` backend: `namespace`, `image`, `image_pull_policy`, `image_pull_secrets`, `storage_class`, `storage`, `engine_command`, `engine_port`, `run_as_user`, `fs_group`, `manager_labels`, `seed_url`, `start_timeout_s`, `kubeconfig`, `context`.")
    stop_workspaces_on_exit: bool = Field(False, description="Stop every engine when the manager exits (by default they keep running and the next manager adopts them).")

    @model_validator(mode="after")
    def _sizes_named_well(self) -> "Settings":
        for name in self.sizes:
            if not _SIZE_NAME.match(name):
                raise ValueError(f"size name {name!r}: use lower-case letters, digits and '-' (at most 31)")
        if self.default_size == NO_LIMITS:
            self.default_size = None
        elif self.default_size == DEFAULT_SIZE and DEFAULT_SIZE not in self.sizes and "default_size" not in self.model_fields_set:
            if not self.sizes:
                raise ValueError("no size presets are defined: define one under `sizes`, or set default_size: none for workspaces without limits")
            self.default_size = next(iter(self.sizes))  # the admin's own presets: the first is the default
        if self.default_size is not None and self.default_size not in self.sizes:
            raise ValueError(f"default_size {self.default_size!r} is not one of the sizes: {', '.join(self.sizes) or 'none'}")
        check_origins(self)
        for network in self.sandbox_deny_networks:
            try:
                ipaddress.ip_network(network, strict=False)
            except ValueError as exc:
                raise ValueError(f"sandbox_deny_networks: {network!r} is not a network (CIDR such as 10.0.0.0/8): {exc}") from exc
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Environment beats the config file, which arrives as init kwargs from load().
        return env_settings, init_settings

    @property
    def db_url(self) -> str:
        """The async SQLAlchemy URL of the state database (a plain postgresql:// URL gets the asyncpg driver)."""
        if not self.database_url:
            return f"sqlite+aiosqlite:///{self.data_dir / 'devyard.db'}"
        scheme, sep, rest = self.database_url.partition("://")
        if scheme in ("postgres", "postgresql"):
            return f"postgresql+asyncpg{sep}{rest}"
        return self.database_url

    @property
    def isolated(self) -> bool:
        """Whether engines run as per-user system accounts (os_accounts, resolved against the manager's uid)."""
        return self.os_accounts == "on" or (self.os_accounts == "auto" and os.geteuid() == 0)

    @property
    def run_dir(self) -> Path:
        """Folder of engine sockets and runtime records (0700; 0711 when isolated, each engine's own subfolder 0700)."""
        return self.data_dir / "run"

    @property
    def secrets_dir(self) -> Path:
        """Folder of the manager's own keys (mode 0700): keys_dir, else <data_dir>/secrets."""
        return self.keys_dir or self.data_dir / "secrets"

    @property
    def uploads_dir(self) -> Path:
        """Unpacked archives waiting for their workspace's provisioning (mode 0700)."""
        return self.data_dir / "uploads"

    @property
    def backups_dir(self) -> Path:
        """Where scheduled backups go (backup_dir, or <data_dir>/backups)."""
        return self.backup_dir or self.data_dir / "backups"

    @property
    def workspaces_dir(self) -> Path:
        """Root of every workspace's files, data, extensions and logs."""
        return self.data_dir / "workspaces"


def read_config_file(path: Path) -> dict[str, Any]:
    """Turn a devyard.yaml into Settings keyword arguments; raise Invalid on a malformed file."""
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError as exc:
        raise Invalid(f"config file {path} does not exist", code="config_not_found") from exc
    except yaml.YAMLError as exc:
        raise Invalid(f"config file {path} is not valid YAML: {exc}", code="config_invalid") from exc
    if not isinstance(raw, dict):
        raise Invalid(f"config file {path} must be a mapping at the top level", code="config_invalid")
    own = raw.get("devyard") or {}
    if not isinstance(own, dict):
        raise Invalid(f"config file {path}: `devyard:` must be a mapping", code="config_invalid")
    values: dict[str, Any] = dict(own)
    for key in ("extension_groups", "packaged_assets", "ui", "tools"):  # DevBox's top-level keys, and tools
        if key in raw:
            values[key] = raw[key]
    return values


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Build Settings from an optional config file, the environment and explicit overrides."""
    values = read_config_file(config_file) if config_file else {}
    settings = Settings(**values)
    # Flags beat the environment; typer has already parsed them to the right types.
    given = {k: v for k, v in overrides.items() if v is not None}
    return settings.model_copy(update=given) if given else settings
