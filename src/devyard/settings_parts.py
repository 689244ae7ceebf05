"""The parts of Settings that are models of their own: each a block of devyard.yaml.

Tools, size presets (and the check of their names and the default size), the warm pool, where
extensions come from, the `kubernetes` backend's settings, and DerivedSettings: the paths and
values Settings works out from its fields. DevBox's blocks are in settings_devbox.py.
config.Settings holds them and re-exports them, so `from devyard.config import Size` keeps working.
"""

from __future__ import annotations

import ipaddress
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from devyard.settings_build import DevcontainerBuildSettings
from devyard.versions import CODE_SERVER_VERSION

_NPM_SPEC = re.compile(r"^(@[a-z0-9][a-z0-9._~-]*/)?[a-z0-9][a-z0-9._~-]*@[0-9][0-9A-Za-z.+-]*$")
_PYPI_SPEC = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(\[[A-Za-z0-9,._-]+\])?==[0-9][0-9A-Za-z.+!-]*$")
# Private, shared (carrier-grade NAT), link-local and loopback ranges: where a cluster's pods, services and databases live.
PRIVATE_NETWORKS = (
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "100.64.0.0/10",
    "169.254.0.0/16",
    "127.0.0.0/8",
    "fc00::/7",
    "fe80::/10",
    "::1/128",
)


class Tool(BaseModel):
    """A command-line tool for every workspace's terminal: one pinned npm or PyPI package (`tools:`)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]{0,63}$")
    npm: str | None = None  # "@scope/package@1.2.3"
    pypi: str | None = None  # "package==1.2.3"

    @model_validator(mode="after")
    def _one_pinned_package(self) -> Tool:
        if (self.npm is None) == (self.pypi is None):
            raise ValueError(f"tool {self.name}: give exactly one of npm or pypi")
        if self.npm is not None and not _NPM_SPEC.match(self.npm):
            raise ValueError(
                f"tool {self.name}: npm must be a pinned package such as @scope/name@1.2.3, not {self.npm!r}"
            )
        if self.pypi is not None and not _PYPI_SPEC.match(self.pypi):
            raise ValueError(f"tool {self.name}: pypi must be a pinned package such as name==1.2.3, not {self.pypi!r}")
        return self


OPEN_VSX = "https://open-vsx.org/vscode/gallery"


DEFAULT_PIDS_MAX = 4096  # tasks (threads count): an engine with a few terminals uses about 150


class Size(BaseModel):
    """A size preset (`devyard.sizes.<name>`): what one workspace may use; a memory, CPU or disk limit left out is none."""

    model_config = ConfigDict(extra="forbid")

    memory_mb: int | None = Field(default=None, gt=0)
    cpus: float | None = Field(default=None, gt=0)
    disk_mb: int | None = Field(default=None, gt=0)
    pids_max: int = Field(
        default=DEFAULT_PIDS_MAX, ge=64, description="Most processes and threads the workspace may run at once."
    )
    description: str = ""
    cost_per_hour: float | None = Field(
        default=None, ge=0, description="What an hour of a running workspace of this size costs (usage estimates)."
    )


class Pool(BaseModel):
    """The warm pool (`devyard.pool`): engines booted ahead, handed to new workspaces as they are created."""

    model_config = ConfigDict(extra="forbid")

    size: int = Field(default=0, ge=0, le=64, description="Engines kept booted and waiting; 0: no pool.")


class KubernetesSettings(BaseModel):
    """Where and how the `kubernetes` backend runs engines (`devyard.kubernetes`); see docs/backends.md."""

    model_config = ConfigDict(extra="forbid")

    namespace: str = Field(
        default="devyard",
        pattern=r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$",
        description="The one namespace the manager creates workspaces' objects in.",
    )
    image: str = Field(
        default=f"docker.io/codercom/code-server:{CODE_SERVER_VERSION}",
        description="The engine image: code-server, run as a non-root user (default: the local engine's pinned version).",
    )
    image_pull_policy: Literal["IfNotPresent", "Always", "Never"] = "IfNotPresent"
    image_pull_secrets: list[str] = Field(
        default_factory=list, description="Secrets in the namespace for pulling a private engine image."
    )
    storage_class: str | None = Field(
        default=None, description="StorageClass of the workspaces' volumes (none: the cluster's default)."
    )
    storage: str = Field(
        default="10Gi",
        pattern=r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|k|M|G|T)?$",
        description="Volume size of a workspace whose size preset names no disk_mb.",
    )
    engine_command: list[str] = Field(
        default_factory=lambda: ["dumb-init", "/usr/bin/code-server"],
        min_length=1,
        description="The engine container's command; code-server's arguments follow (dumb-init reaps the terminals' orphans).",
    )
    engine_port: int = Field(
        default=8080, ge=1, le=65535, description="The port engines listen on inside their pod (and their Service)."
    )
    engine_home: str = Field(
        default="/usr/lib/code-server",
        description="Where code-server is installed in the engine image: copied into the pod of a workspace whose "
        "devcontainer.json names an image of its own.",
    )
    devcontainer_images: list[str] = Field(
        default_factory=lambda: ["*"],
        description="Images a devcontainer.json may run its workspace in (glob patterns; empty: none, the engine image is used).",
    )
    devcontainer_build: DevcontainerBuildSettings = Field(
        default_factory=DevcontainerBuildSettings,
        description="Building a devcontainer.json's `build` in the cluster (settings_build.py; off by default).",
    )
    run_as_user: int = Field(
        default=1000, ge=1, description="The non-root uid engines run as (the code-server image's `coder`)."
    )
    fs_group: int = Field(
        default=1000, ge=1, description="Group that owns the workspace volume, so the engine can write it."
    )
    ssh_image: str | None = Field(
        default=None,
        description="An image holding OpenSSH's sshd (Debian's openssh-server; the devyard image has it): an init "
        "container copies sshd and its libraries into each workspace pod, where it serves SSH sessions (docs/ssh.md). "
        "None: workspaces on Kubernetes take no SSH.",
    )
    ssh_port: int = Field(
        default=2222, ge=1025, le=65535, description="The port the pod's sshd listens on (reached by the manager only)."
    )
    manager_labels: dict[str, str] = Field(
        default_factory=lambda: {"app.kubernetes.io/name": "devyard", "app.kubernetes.io/component": "manager"},
        description="Labels of the manager's pods: the only pods the NetworkPolicy lets reach an engine.",
    )
    egress_allow: list[str] = Field(
        default_factory=lambda: ["0.0.0.0/0", "::/0"],
        description="Where workspace pods may connect (CIDRs), less egress_deny: by default the internet.",
    )
    egress_deny: list[str] = Field(
        default_factory=lambda: list(PRIVATE_NETWORKS),
        description="Networks workspace pods may not reach inside egress_allow: by default every private, shared and "
        "link-local range, so the cluster's pods and services, the manager's database and cloud metadata are out of reach "
        "(DNS and the manager's own pods stay allowed).",
    )
    dns_labels: dict[str, str] = Field(
        default_factory=lambda: {"k8s-app": "kube-dns"},
        description="Labels of the cluster's DNS pods (any namespace), which workspace pods may ask on port 53.",
    )
    default_memory: str = Field(
        default="2Gi",
        pattern=r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|k|M|G|T)?$",
        description="Memory limit of a workspace pod whose size names none (default_size: none).",
    )
    default_cpu: str = Field(
        default="1", pattern=r"^[0-9]+(\.[0-9]+)?m?$", description="CPU limit of a workspace pod whose size names none."
    )
    seed_url: str | None = Field(
        default=None,
        description="Base URL of this manager replica as pods reach it: a new workspace's init container "
        "fetches what provisioning made from <seed_url>/api/v1/internal/seed/<uid>. Default: http://<host>:<port> of "
        "this manager (bound to all addresses, the address its host name resolves to, which in a pod is the pod's IP; "
        "with port 0, the address and port it bound, as in run/manager.json).",
    )
    start_timeout_s: float = Field(
        default=600.0, gt=0, description="How long a pod may take to be scheduled, pull its image and become ready."
    )
    kubeconfig: Path | None = Field(
        default=None,
        description="A kubeconfig file to use (default: in-cluster config, else $KUBECONFIG, else ~/.kube/config).",
    )
    context: str | None = Field(default=None, description="The kubeconfig context to use (default: its current one).")

    @model_validator(mode="after")
    def _networks(self) -> KubernetesSettings:
        for key in ("egress_allow", "egress_deny"):
            for network in getattr(self, key):
                try:
                    ipaddress.ip_network(network)
                except ValueError as exc:
                    raise ValueError(
                        f"kubernetes.{key}: {network!r} is not a network (CIDR such as 10.0.0.0/8): {exc}"
                    ) from exc
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


DEFAULT_SIZE, NO_LIMITS = "small", "none"
_SIZE_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,30}$")


def resolve_default_size(sizes: dict[str, Size], default_size: str | None, given: bool) -> str | None:
    """Check the size presets' names and return the default size (None: no limits); `given`: set explicitly."""
    for name in sizes:
        if not _SIZE_NAME.match(name):
            raise ValueError(f"size name {name!r}: use lower-case letters, digits and '-' (at most 31)")
    if default_size == NO_LIMITS:
        return None
    if default_size == DEFAULT_SIZE and DEFAULT_SIZE not in sizes and not given:
        if not sizes:
            raise ValueError(
                "no size presets are defined: define one under `sizes`, or set default_size: none for workspaces without limits"
            )
        return next(iter(sizes))  # the admin's own presets: the first is the default
    if default_size is not None and default_size not in sizes:
        raise ValueError(f"default_size {default_size!r} is not one of the sizes: {', '.join(sizes) or 'none'}")
    return default_size


def check_deny_networks(networks: list[str]) -> None:
    """Refuse a sandbox_deny_networks entry that is not a network."""
    for network in networks:
        try:
            ipaddress.ip_network(network, strict=False)
        except ValueError as exc:
            raise ValueError(
                f"sandbox_deny_networks: {network!r} is not a network (CIDR such as 10.0.0.0/8): {exc}"
            ) from exc


class DerivedSettings:
    """What Settings works out from its own fields (a mixin: the fields themselves stay on Settings)."""

    if TYPE_CHECKING:
        data_dir: Path
        keys_dir: Path | None
        database_url: str | None
        os_accounts: Literal["auto", "on", "off"]
        backup_dir: Path | None

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
