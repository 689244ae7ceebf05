"""Settings: built once from devyard.yaml (optional) and DEVYARD_* variables, then passed down.

Precedence, highest first: command-line flags, DEVYARD_* environment variables, the `devyard:`
block of the config file, defaults; every value, flags included, is checked by the Settings model.
Databricks DevBox keys (`extension_groups`, `packaged_assets`, `ui`) are read from the top level of
the same file unchanged (settings_devbox.py). The blocks that are models of their own (sizes, tools, kubernetes, ...),
the sizes check and the derived paths (DerivedSettings) live in settings_parts.py; reading the file
and turning refusals into Invalid live in settings_file.py. Both are re-exported here.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, PrivateAttr, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from devyard.origins import check_settings as check_origins
from devyard.paths import DEFAULT_DATA_DIR as DEFAULT_DATA_DIR
from devyard.paths import DEFAULT_PORT as DEFAULT_PORT
from devyard.settings_devbox import ExtensionGroup, PackagedAssets, Server, Ui, check_group_names, keyed_groups
from devyard.settings_file import CONFIG_ERRORS, OVERRIDE_REFUSED, Origin, load_model, read_config_file
from devyard.settings_groups import GroupSettings
from devyard.settings_parts import (
    DEFAULT_PIDS_MAX,
    DEFAULT_SIZES,
    OPEN_VSX,
    DerivedSettings,
    ExtensionSettings,
    KubernetesSettings,
    Pool,
    Size,
    Tool,
    check_deny_networks,
    resolve_default_size,
)
from devyard.settings_ssh import SshSettings
from devyard.settings_time import TimeSettings

# What other modules import from here (the blocks' own modules hold the rest).
__all__ = [
    "CONFIG_ERRORS",
    "DEFAULT_DATA_DIR",
    "DEFAULT_PIDS_MAX",
    "DEFAULT_PORT",
    "ExtensionGroup",
    "ExtensionSettings",
    "KubernetesSettings",
    "OPEN_VSX",
    "OVERRIDE_REFUSED",
    "Settings",
    "Tool",
    "load_settings",
    "read_config_file",
]

DEFAULT_ENGINE_DIR = Path("~/.cache/devyard/engine").expanduser()
# Tools run as every user's account: as root they live where those accounts can read them.
DEFAULT_TOOLS_DIR = (
    Path("/var/cache/devyard/tools") if os.geteuid() == 0 else Path("~/.cache/devyard/tools").expanduser()
)


class Settings(DerivedSettings, TimeSettings, GroupSettings, SshSettings, BaseSettings):
    """Everything the manager can be told; each field is documented in docs/config.md."""

    model_config = SettingsConfigDict(env_prefix="DEVYARD_", env_nested_delimiter="__", extra="ignore")

    data_dir: Path = Field(
        DEFAULT_DATA_DIR, description="Where devyard keeps its database, workspaces, sockets and secrets."
    )
    keys_dir: Path | None = Field(
        None,
        description="Where the manager's keys are (session.key, secrets.key; made on first use when missing): default <data_dir>/secrets. Replicas must share them: a cluster deployment mounts one Secret here in each.",
    )
    host: str = Field("127.0.0.1", min_length=1, description="Address the manager listens on.")
    port: int = Field(DEFAULT_PORT, ge=0, le=65535, description="TCP port the manager listens on (0 picks a free one).")
    engine_dir: Path = Field(
        DEFAULT_ENGINE_DIR, description="Cache of installed code-server engines, one folder per version."
    )
    backend: str = Field(
        "local",
        description="Where engines run: `local` (child processes on this machine) or `kubernetes` (a pod, volume and service per workspace); other backends register under the `devyard.backends` entry points.",
    )
    database_url: str | None = Field(
        None,
        description="URL of the state database: default SQLite at <data_dir>/devyard.db; `postgresql://user:password@host/db` for PostgreSQL (needed to run more than one manager replica).",
    )
    admin_password: SecretStr | None = Field(
        None, description="Password of the `admin` user created on first start; generated and printed once when unset."
    )
    session_ttl_s: int = Field(7 * 24 * 3600, gt=0, description="Absolute lifetime of a browser login, in seconds.")
    session_idle_s: int = Field(12 * 3600, gt=0, description="A browser login unused this long (seconds) ends.")
    identity_cache_s: float = Field(
        5.0,
        ge=0,
        description="How long a resolved session or token is remembered in memory, in seconds (0: not at "
        "all): one that expires, idles out or is ended elsewhere (another replica, the CLI on the database) may be accepted "
        "this much longer; what this manager ends is refused at once.",
    )
    secure_cookies: bool = Field(
        False, description="Mark session cookies Secure (set it when a TLS proxy fronts devyard)."
    )
    tls: Literal["off", "self-signed"] = Field(
        "off",
        description="`self-signed`: serve HTTPS with a certificate devyard makes and keeps in <data_dir>/secrets/tls.",
    )
    tls_cert: Path | None = Field(None, description="PEM certificate: serve HTTPS directly.")
    tls_key: Path | None = Field(None, description="PEM private key for tls_cert.")
    trusted_proxies: list[str] = Field(
        default_factory=list,
        description="Addresses (or CIDR ranges) of reverse proxies whose X-Forwarded-For/-Proto are believed; nobody else's are.",
    )
    engine_start_timeout_s: float = Field(
        90.0, gt=0, description="How long an engine may take to answer on its socket before the workspace is failed."
    )
    engine_stop_timeout_s: float = Field(
        10.0, gt=0, description="How long each stop signal (SIGINT, SIGTERM) waits before escalating."
    )
    login_address_per_minute: int = Field(
        2, ge=1, description="Failed logins a client address may make per minute (plus the hourly allowance)."
    )
    login_address_per_hour: int = Field(
        12, ge=0, description="Failed logins a client address may make per hour beyond the per-minute allowance."
    )
    login_user_per_minute: int = Field(
        10, ge=1, description="Failed logins per minute against one user from addresses it has not logged in from."
    )
    login_user_per_hour: int = Field(
        60, ge=0, description="Failed logins per hour against one user beyond the per-minute allowance."
    )
    disable_file_downloads: bool = Field(
        False, description="Policy for every engine: no downloading files from the editor."
    )
    disable_file_uploads: bool = Field(
        False, description="Policy for every engine: no uploading files into the editor."
    )
    os_accounts: Literal["auto", "on", "off"] = Field(
        "auto",
        description="Run each user's engines as a system account of their own (`dy-<user>`); `auto`: when the manager runs as root.",
    )
    asset_cache_mb: int = Field(
        128,
        ge=0,
        description="Memory for the gateway's cache of the engine's compressed immutable assets, shared by all workspaces, in MB; 0 turns it off.",
    )
    activity_flush_s: float = Field(
        15.0, gt=0, description="How often gateway activity is written to the database, in seconds."
    )
    oidc_issuer: str | None = Field(
        None, description="OpenID Connect issuer URL: enables single sign-on (`Sign in with SSO`)."
    )
    oidc_client_id: str | None = Field(None, description="Client id devyard is registered with at the OIDC issuer.")
    oidc_client_secret: SecretStr | None = Field(None, description="Client secret for oidc_client_id.")
    oidc_scopes: str = Field(
        "openid email profile",
        description="Scopes asked of the issuer (add `groups` where the issuer needs it for a groups claim).",
    )
    oidc_allowed_domains: list[str] = Field(
        default_factory=list, description="Email domains (verified email) whose owners may sign in with SSO."
    )
    oidc_allowed_groups: list[str] = Field(
        default_factory=list, description="Groups (the `groups` claim) whose members may sign in with SSO."
    )
    extension_groups: dict[str, ExtensionGroup] = Field(
        default_factory=dict,
        description="DevBox `extension_groups`: named extension sets offered when creating a workspace, keyed by id "
        "(DevBox's mapping; a list of groups, each called by its `id` or `name`, works too).",
    )
    extensions: ExtensionSettings = Field(
        default_factory=ExtensionSettings,
        description="`gallery` (Open VSX-compatible service URL; empty: none), `vsix_dir` (a mirror of .vsix files, used first), `allow` (glob patterns of extension ids; empty: any), `install_timeout_s`.",
    )
    tools: list[Tool] = Field(
        default_factory=list,
        description="`tools:` pinned npm or PyPI packages (e.g. AI coding CLIs) installed once per version and put on every workspace terminal's PATH.",
    )
    tools_dir: Path = Field(
        DEFAULT_TOOLS_DIR, description="Cache of installed tools, one folder per package and version."
    )
    packaged_assets: PackagedAssets = Field(
        default_factory=PackagedAssets,
        description="DevBox `packaged_assets`: the template catalog (tabs of items with github_url and extensions_groups).",
    )
    ui: Ui = Field(
        default_factory=Ui,
        description="DevBox `ui`: `default_extension_groups`, and `workspace`: `default_type` (the create form's "
        "source), `max_upload_size_mb` and `supported_archive_types` (archive uploads).",
    )
    server: Server = Field(
        default_factory=Server,
        description="DevBox `server`: `default_port` is the port when `port` is not given.",
    )
    git_file_roots: list[Path] = Field(
        default_factory=list,
        description="Folders below which file:// git URLs may be cloned (none by default: file:// is refused).",
    )
    git_clone_timeout_s: float = Field(
        600.0, gt=0, description="How long a git clone may take before provisioning fails."
    )
    post_create_timeout_s: float = Field(1800.0, gt=0, description="How long a postCreateCommand may run, in seconds.")
    archive_max_entries: int = Field(100_000, gt=0, description="Most entries an uploaded archive may hold.")
    archive_max_expanded_mb: int = Field(10_240, gt=0, description="Most an uploaded archive may expand to, in MB.")
    idle_timeout_s: int = Field(
        0,
        ge=0,
        description="Stop a running workspace nobody used (no request, no WebSocket message) for this long, in seconds; 0: never. A workspace's own `idle_timeout_s` overrides it.",
    )
    reconnection_grace_s: int = Field(
        300,
        ge=1,
        description="How long an engine keeps the extension host of a closed browser tab, in seconds (code-server's own default is 3 hours).",
    )
    supervise_interval_s: float = Field(
        1.0, gt=0, description="How often running engines are checked for having exited, in seconds."
    )
    crash_restarts: int = Field(
        3,
        ge=0,
        description="Restarts of an engine that crashed, within crash_window_s, before the workspace is failed.",
    )
    crash_window_s: float = Field(
        300.0, gt=0, description="The window, in seconds, in which crashes count towards crash_restarts."
    )
    crash_backoff_s: float = Field(
        1.0,
        gt=0,
        description="Wait before restarting after the first crash, doubled for each further one (up to crash_backoff_max_s).",
    )
    crash_backoff_max_s: float = Field(
        30.0, gt=0, description="Longest wait before restarting a crashed engine, in seconds."
    )
    max_workspaces_per_user: int | None = Field(
        None, ge=0, description="Quota: workspaces a user may have (none: no limit); admins can set it per user."
    )
    max_running_per_user: int | None = Field(
        None,
        ge=0,
        description="Quota: workspaces a user may have running at once (none: no limit); admins can set it per user.",
    )
    max_disk_mb_per_user: int | None = Field(
        None,
        ge=0,
        description="Quota: disk all of a user's workspaces may use, in MB, checked at create and start (none: no limit); admins can set it per user.",
    )
    pool: Pool = Field(
        default_factory=Pool,
        description="The warm pool: `size` engines kept booted and handed to new workspaces, so create→ready skips the engine's boot.",
    )
    sizes: dict[str, Size] = Field(
        default_factory=lambda: dict(DEFAULT_SIZES),
        description="Size presets a workspace is created with (`name: {memory_mb, cpus, disk_mb, description}`): memory and CPU limits through cgroups, disk checked at start. Default: small, medium, large.",
    )
    default_size: str | None = Field(
        "small",
        description="The size of workspaces created without one: `small` (or the first preset when there is no `small`). Workspaces without any limits must be asked for: `none` (or null), then only the pids limit applies.",
    )
    backup_dir: Path | None = Field(
        None, description="Where scheduled backups are written, one folder per workspace (default <data_dir>/backups)."
    )
    backup_interval_s: int = Field(
        0,
        ge=0,
        description="Back up every provisioned workspace this often, in seconds (running ones too, consistently); 0: no scheduled backups.",
    )
    backup_keep: int = Field(7, ge=1, description="Scheduled backups kept per workspace; older ones are removed.")
    sandbox: Literal["auto", "on", "off"] = Field(
        "auto",
        description="Run each local engine in a sandbox of its own (bubblewrap and slirp4netns): its own network, process, IPC and host "
        "name namespaces, a private /tmp and /dev/shm, the system read-only and only its workspace's folders writable; egress to the "
        "internet works, this host's loopback and addresses, other workspaces and link-local addresses do not. `auto`: wherever it can "
        "run (root, per-user accounts, bwrap and slirp4netns installed), saying what is missing where not; `on`: refuse to start engines without it.",
    )
    sandbox_deny_networks: list[str] = Field(
        default_factory=list,
        description="More networks (CIDR) sandboxed engines may not reach, besides the "
        "ones always denied: this host's own addresses and link-local 169.254.0.0/16 (cloud metadata). E.g. "
        "`[10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16]` to keep workspaces off a private network.",
    )
    engine_env: dict[str, str] = Field(
        default_factory=dict,
        description="Variables every engine, terminal, extension install and git clone gets "
        "(e.g. HTTPS_PROXY, NO_PROXY). Of the manager's own environment only PATH, LANG, LANGUAGE, LC_* and TZ reach them.",
    )
    disk_check_interval_s: float = Field(
        60.0,
        gt=0,
        description="How often running workspaces' disk use is checked against their size's disk_mb, in seconds.",
    )
    disk_grace_s: float = Field(
        300.0,
        ge=0,
        description="How long a running workspace may stay over its disk allowance after its owner is warned, "
        "in seconds; then it is stopped, with the reason shown.",
    )
    workspace_domain: str = Field(
        "auto",
        description="The domain under which every workspace gets an origin of its own: `<name>--<owner>.<domain>`, "
        "and each forwarded port `<port>--<name>--<owner>.<domain>` (names that cannot be a host label become `id---<uid>`). "
        "Needs a wildcard DNS record and certificate for `*.<domain>`. `auto`: `localhost` while the manager listens on a "
        "loopback address (browsers resolve `*.localhost` themselves), else path mode. `none`: path mode, every workspace "
        "under `/w/<owner>/<name>/` on the dashboard's own origin, which suits only users who trust each other.",
    )
    public_url: str | None = Field(
        None,
        description="The dashboard's URL as users reach it (e.g. `https://devyard.example.com`): requests for any "
        "other host than it and the workspace hosts under workspace_domain are refused, and redirects, the OIDC "
        "redirect_uri and the API's workspace URLs are built from it, never from a request's Host. Required with a "
        "workspace_domain other than localhost.",
    )
    public_ports: bool = Field(
        False,
        description="Whether owners may make a forwarded port `public`: reachable by anyone with its link, without logging in.",
    )
    uds: Path | None = Field(
        None,
        description="Also listen on this unix socket (mode 0660, root's group): for a reverse proxy on the same host, "
        "which then needs no loopback address trusted for X-Forwarded-For (docs/nginx.conf).",
    )
    log_format: Literal["text", "json"] = Field(
        "text", description="`json`: one JSON object per log line (time, level, logger, message), for log collectors."
    )
    kubernetes: KubernetesSettings = Field(
        default_factory=KubernetesSettings,
        description="The `kubernetes` backend: `namespace`, `image`, `image_pull_policy`, `image_pull_secrets`, `storage_class`, `storage`, `engine_command`, `engine_port`, `devcontainer_images`, `devcontainer_build`, `run_as_user`, `fs_group`, `ssh_image`, `ssh_port`, `manager_labels`, `seed_url`, `start_timeout_s`, `kubeconfig`, `context`.",
    )
    stop_workspaces_on_exit: bool = Field(
        False,
        description="Stop every engine when the manager exits (by default they keep running and the next manager adopts them).",
    )

    _origin: Origin | None = PrivateAttr(None)  # set by load_settings

    @field_validator("extension_groups", mode="before")
    @classmethod
    def _keyed(cls, value: Any) -> Any:
        return keyed_groups(value)

    @model_validator(mode="after")
    def _checked(self) -> Settings:
        if "port" not in self.model_fields_set and self.server.default_port is not None:
            self.port = self.server.default_port
        check_group_names(self.extension_groups, self.ui, self.packaged_assets)
        given = "default_size" in self.model_fields_set
        self.default_size = resolve_default_size(self.sizes, self.default_size, given)
        check_origins(self)
        check_deny_networks(self.sandbox_deny_networks)
        return self

    def ignored(self) -> list[str]:
        """The config file's keys devyard has no use for (`server.code_server_port_range`, ...), to be named once."""
        return list(self._origin.ignored) if self._origin else []

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


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Build Settings from an optional config file, the environment and overrides: settings_file.load_model."""
    return load_model(Settings, config_file, overrides)
