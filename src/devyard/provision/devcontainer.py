"""A repository's devcontainer.json: what of it a devyard workspace takes, and what it says it cannot.

The Development Containers specification (containers.dev) is how a repository says what it needs;
Codespaces, Coder, DevPod and Gitpod read it. devyard reads `.devcontainer/devcontainer.json`, else
`.devcontainer.json`, from a new workspace's files, as JSON with comments (json5, as VS Code's own
settings), and takes:
- `customizations.vscode.extensions` and `.settings`: installed and merged like an extension group,
  under the same allow-list;
- `containerEnv` and `remoteEnv`: variables of the engine and its terminals (the owner's secrets win);
- `postCreateCommand`: run once after provisioning, `postStartCommand`: at every start, both as the
  workspace's account, where its engine runs (its sandbox);
- `forwardPorts` and `portsAttributes` (`label`): the workspace's listed ports;
- `image`: the workspace pod's image on the Kubernetes backend (the local backend cannot apply it);
- `build` (`dockerfile`, `context`, `args`, `target`; also the older top-level `dockerFile` and
  `context`): an image built in the cluster when the admin allows it (kubernetes.devcontainer_build),
  then run like `image`.
Every other key is named once as unsupported, never silently dropped.

The file is the tenant's: it is read through safefs (no link followed, a size limit), and every
value is checked for its type here, so a wrong one is one clear line, not a traceback.
"""

from __future__ import annotations

import fnmatch
import posixpath
import re
import shlex
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import json5

from devyard import safefs
from devyard.config import Settings
from devyard.errors import ProvisionError
from devyard.usersecrets import is_reserved

PLACES = (".devcontainer/devcontainer.json", ".devcontainer.json")  # the specification's order
MAX_BYTES = 1 << 20
TAKEN = {
    "name",
    "image",
    "customizations",
    "containerEnv",
    "remoteEnv",
    "postCreateCommand",
    "postStartCommand",
    "forwardPorts",
    "portsAttributes",
    "$schema",
    "build",
    "dockerFile",
    "context",
}
BUILD_TAKEN = ("dockerfile", "context", "args", "target")
# Variables a devcontainer.json cannot set: those devyard sets for the engine, and those no secret may set
# either. The sandbox is started by root with the engine's environment: a PATH of the tenant's choosing
# would pick the `bwrap` root runs, an LD_PRELOAD the library it loads.
RESERVED_ENV = frozenset({"VSCODE_CLI", "VSCODE_PROXY_URI"})
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_REFERENCE = re.compile(r"\$\{(containerEnv|remoteEnv|env):([A-Za-z_][A-Za-z0-9_]*)(?::([^}]*))?\}")


@dataclass
class Port:
    """A port the repository names (`forwardPorts`), with its `portsAttributes` label."""

    port: int
    label: str | None = None


@dataclass
class Build:
    """A devcontainer.json's `build`: paths relative to the workspace's files, never outside them."""

    dockerfile: str
    context: str = "."
    args: dict[str, str] = field(default_factory=dict)
    target: str | None = None


@dataclass
class DevContainer:
    """What devyard takes from a devcontainer.json (stored with the workspace: `to_json` / `from_json`)."""

    path: str  # where it was found, relative to the workspace's files
    name: str | None = None
    extensions: list[str] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)  # containerEnv, then remoteEnv over it
    post_create: str | None = None  # a shell command
    post_start: str | None = None
    ports: list[Port] = field(default_factory=list)
    image: str | None = None
    build: Build | None = None
    built_image: str | None = None  # <repository>@<digest>, once `build` was built for this workspace
    unsupported: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """A JSON value for the workspace's row."""
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> DevContainer | None:
        """The stored value back (None: the workspace has no devcontainer.json)."""
        if not data:
            return None
        build = data.get("build")
        return cls(**{**data, "ports": [Port(**p) for p in data.get("ports", [])], "build": build and Build(**build)})

    def labels(self) -> dict[int, str | None]:
        """Each listed port with its label."""
        return {p.port: p.label for p in self.ports}


def read(files_dir: Path, builds: bool = False) -> DevContainer | None:
    """The workspace's devcontainer.json, parsed and checked; None when it has none. ProvisionError naming what is wrong.

    `builds`: this manager builds images, so a `build` it cannot use is an error, not a key left out.
    """
    for place in PLACES:
        folder, _, name = place.rpartition("/")
        try:
            with safefs.opened_dir(files_dir, folder) as fd:
                data = safefs.read_file(fd, name, MAX_BYTES)
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise ProvisionError(
                f"{place}: cannot be read: {exc.strerror or exc}", code="devcontainer_invalid"
            ) from exc
        if data is None:
            continue
        try:
            raw = json5.loads(data.decode("utf-8"))
        except (ValueError, UnicodeDecodeError) as exc:
            raise ProvisionError(f"{place}: not valid JSON: {exc}", code="devcontainer_invalid") from exc
        return parse(raw, place, builds)
    return None


def parse(raw: Any, place: str = "devcontainer.json", builds: bool = False) -> DevContainer:
    """What devyard takes from a parsed devcontainer.json; ProvisionError naming the key that is wrong."""
    check = _Checker(place)
    if not isinstance(raw, dict):
        raise check.wrong("", "must be an object")
    found = DevContainer(path=place, name=check.text(raw, "name"), image=check.text(raw, "image"))
    found.unsupported = [key for key in raw if key not in TAKEN]
    customizations = check.mapping(raw, "customizations")
    for tool in customizations:
        if tool != "vscode":
            found.unsupported.append(f"customizations.{tool}")
    vscode = check.mapping(customizations, "vscode", "customizations.")
    found.extensions = check.strings(vscode, "extensions", "customizations.vscode.")
    found.settings = check.mapping(vscode, "settings", "customizations.vscode.")
    found.unsupported += [f"customizations.vscode.{k}" for k in vscode if k not in ("extensions", "settings")]
    env = {**check.env(raw, "containerEnv"), **check.env(raw, "remoteEnv")}
    found.env = {k: v for k, v in env.items() if k.upper() not in RESERVED_ENV and not is_reserved(k)}
    found.unsupported += [f"{k} (devyard sets it)" for k in env if k not in found.env]
    found.post_create = check.command(raw, "postCreateCommand")
    found.post_start = check.command(raw, "postStartCommand")
    labels: dict[int, str | None] = {}
    for key, attributes in check.mapping(raw, "portsAttributes").items():
        if not str(key).isdigit() or not 0 < int(key) < 65536:
            found.unsupported.append(f"portsAttributes.{key}")  # a range or a pattern: nothing to list
            continue
        if not isinstance(attributes, dict):
            raise check.wrong(f"portsAttributes.{key}", "must be an object")
        label = attributes.get("label")
        labels[int(key)] = label if isinstance(label, str) else None
        found.unsupported += [f"portsAttributes.{key}.{a}" for a in attributes if a != "label"]
    for port in check.array(raw, "forwardPorts"):
        if isinstance(port, int) and not isinstance(port, bool) and 0 < port < 65536:
            found.ports.append(Port(port, labels.pop(port, None)))
        elif isinstance(port, str):
            found.unsupported.append(f"forwardPorts {port}")  # "host:port" of another container
        else:
            raise check.wrong("forwardPorts", f"{port!r} is not a port number")
    found.ports += [Port(port, label) for port, label in labels.items()]
    try:
        found.build = _build(raw, check, found.unsupported)
    except ProvisionError as exc:
        if builds:
            raise
        found.unsupported.append(f"build ({exc.message.removeprefix(place + ': ')})")  # not built here anyway
    return found


def _build(raw: dict[str, Any], check: _Checker, unsupported: list[str]) -> Build | None:
    """The `build` object (or the older top-level `dockerFile` and `context`), its paths made relative to the files."""
    build = check.mapping(raw, "build")
    unsupported += [f"build.{k}" for k in build if k not in BUILD_TAKEN]
    dockerfile = check.text(build, "dockerfile") if build else check.text(raw, "dockerFile")
    context = (check.text(build, "context") if build else check.text(raw, "context")) or "."
    if not dockerfile:
        if build or raw.get("context"):
            raise check.wrong("build.dockerfile", "is needed to build an image")
        return None
    args = check.env(build, "args") if build else {}
    return Build(
        dockerfile=check.inside(dockerfile, "build.dockerfile"),
        context=check.inside(context, "build.context"),
        args=args,
        target=check.text(build, "target") if build else None,
    )


def image_allowed(image: str | None, settings: Settings) -> bool:
    """Whether a devcontainer.json's image may run its workspace: the kubernetes backend, an image the admin allows.

    Never one of the built images' repository: those are each workspace's own, pulled with the admin's credentials.
    """
    patterns = settings.kubernetes.devcontainer_images
    built = settings.kubernetes.devcontainer_build.repository
    if not image or (
        built and image.lower().startswith((built.lower() + ":", built.lower() + "@", built.lower() + "/"))
    ):
        return False
    return settings.backend == "kubernetes" and any(fnmatch.fnmatch(image, p) for p in patterns)


def build_allowed(settings: Settings) -> bool:
    """Whether a devcontainer.json's `build` is built here: the kubernetes backend, with builds switched on."""
    return settings.backend == "kubernetes" and settings.kubernetes.devcontainer_build.enabled


def image_of(found: DevContainer, settings: Settings) -> str | None:
    """The image the workspace's pod runs: the one built for it, else its `image` where allowed; None: the engine image."""
    if found.built_image and build_allowed(settings):
        return found.built_image
    return found.image if image_allowed(found.image, settings) else None


def expand(value: str, env: dict[str, str]) -> str:
    """`${containerEnv:NAME}`, `${remoteEnv:NAME}` and `${env:NAME}` (`:default` allowed) from `env`."""
    return _REFERENCE.sub(lambda m: env.get(m.group(2), m.group(3) or ""), value)


def script(command: Any) -> str:
    """A lifecycle command as one shell script: a string as it is, an array as one command, an object's commands in parallel."""
    if isinstance(command, str):
        return command
    if isinstance(command, list):
        return shlex.join(command)
    parts = [f"( {script(c)} ) & p{n}=$!" for n, c in enumerate(command.values())]
    waits = " && ".join(f"wait $p{n}" for n in range(len(parts)))
    return "\n".join([*parts, waits])


class _Checker:
    """Type checks of a devcontainer.json's values, each refusal one line naming the file and the key."""

    def __init__(self, place: str) -> None:
        self.place = place

    def inside(self, path: str, key: str) -> str:
        """`path`, relative to the devcontainer.json's folder, as a path relative to the files; refused outside them."""
        folder = posixpath.dirname(self.place)
        joined = posixpath.normpath(posixpath.join(folder, path))
        if path.startswith("/") or "\0" in path or joined == ".." or joined.startswith("../"):
            raise self.wrong(key, f"{path!r} lies outside the workspace's files")
        return joined

    def wrong(self, key: str, what: str) -> ProvisionError:
        return ProvisionError(f"{self.place}: {key + ' ' if key else ''}{what}", code="devcontainer_invalid")

    def text(self, raw: dict[str, Any], key: str) -> str | None:
        value = raw.get(key)
        if value is not None and not isinstance(value, str):
            raise self.wrong(key, "must be a string")
        return value

    def mapping(self, raw: dict[str, Any], key: str, prefix: str = "") -> dict[str, Any]:
        value = raw.get(key) or {}
        if not isinstance(value, dict):
            raise self.wrong(prefix + key, "must be an object")
        return value

    def array(self, raw: dict[str, Any], key: str, prefix: str = "") -> list[Any]:
        value = raw.get(key) or []
        if not isinstance(value, list):
            raise self.wrong(prefix + key, "must be an array")
        return value

    def strings(self, raw: dict[str, Any], key: str, prefix: str = "") -> list[str]:
        value = self.array(raw, key, prefix)
        if not all(isinstance(v, str) for v in value):
            raise self.wrong(prefix + key, "must be an array of strings")
        return list(dict.fromkeys(value))

    def env(self, raw: dict[str, Any], key: str) -> dict[str, str]:
        found = {}
        for name, value in self.mapping(raw, key).items():
            if not _ENV_NAME.match(name):
                raise self.wrong(f"{key}.{name}", "is not a variable name")
            if not isinstance(value, str | int | float | bool):
                raise self.wrong(f"{key}.{name}", "must be a string")
            found[name] = (
                value if isinstance(value, str) else str(value).lower() if isinstance(value, bool) else str(value)
            )
        return found

    def command(self, raw: dict[str, Any], key: str) -> str | None:
        value = raw.get(key)
        if value is None or value == "" or value == []:
            return None
        valid = (
            isinstance(value, str)
            or (isinstance(value, list) and all(isinstance(v, str) for v in value))
            or (
                isinstance(value, dict)
                and all(
                    isinstance(c, str) or (isinstance(c, list) and all(isinstance(v, str) for v in c))
                    for c in value.values()
                )
            )
        )
        if not valid:
            raise self.wrong(key, "must be a string, an array of strings or an object of commands")
        return script(value)
