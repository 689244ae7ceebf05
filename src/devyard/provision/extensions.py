"""Installing extensions into one workspace's own extensions folder with the engine's CLI.

Each extension is a separate `--install-extension` run, so one that fails (unknown id, no
network, incompatible) gets its own clear error and the others still install. A `.vsix` in the
mirror folder (`extensions.vsix_dir`: `<id>.vsix` or `<id>-<version>.vsix`) is used before the
gallery, for sites without internet access.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from devyard import osaccounts
from devyard.backends.base import WorkspaceSpec
from devyard.config import OPEN_VSX, ExtensionSettings
from devyard.engine import publish
from devyard.engine.command import engine_env
from devyard.engine.install import Engine
from devyard.errors import Invalid
from devyard.osaccounts import Account
from devyard.provision.progress import Progress

EXTENSION_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]*\.[A-Za-z0-9][A-Za-z0-9._-]*$")


@dataclass(frozen=True, slots=True)
class Outcome:
    """What became of one extension."""

    id: str
    installed: bool
    detail: str  # the version installed, or why not
    activated: bool = True  # False only when activation was checked and failed

    @property
    def ok(self) -> bool:
        """Installed, and did not fail to activate."""
        return self.installed and self.activated


def partition_allowed(ids: list[str], config: ExtensionSettings) -> tuple[list[str], list[Outcome]]:
    """The ids that are well formed and allowed, and a failed Outcome for each other one (a repository asked for them)."""
    allowed, refused = [], []
    for ext_id in ids:
        try:
            check_allowed([ext_id], config)
        except Invalid as exc:
            refused.append(Outcome(ext_id, False, exc.message))
            continue
        allowed.append(ext_id)
    return allowed, refused


def check_allowed(ids: list[str], config: ExtensionSettings) -> None:
    """Invalid naming every id that is malformed or outside the admin's allow-list."""
    malformed = [i for i in ids if not EXTENSION_ID.match(i)]
    if malformed:
        raise Invalid(f"not extension ids (publisher.name): {', '.join(malformed)}", code="invalid_extension_id")
    if config.allow:
        refused = [i for i in ids if not any(fnmatch.fnmatch(i.lower(), p.lower()) for p in config.allow)]
        if refused:
            raise Invalid(
                f"extensions not allowed by the administrator: {', '.join(refused)} (allowed: {', '.join(config.allow)})",
                code="extension_not_allowed",
            )


def source_of(ext_id: str, config: ExtensionSettings) -> str:
    """The mirror's .vsix for `ext_id` (newest name first), else the id itself for the gallery."""
    if config.vsix_dir and config.vsix_dir.is_dir():
        exact = config.vsix_dir / f"{ext_id}.vsix"
        if exact.is_file():
            return str(exact)
        versions = sorted(p for p in config.vsix_dir.glob(f"{ext_id}-*.vsix") if p.is_file())
        if versions:
            return str(versions[-1])
    return ext_id


def install(
    engine: Engine,
    ws: WorkspaceSpec,
    ids: list[str],
    config: ExtensionSettings,
    progress: Progress | None = None,
    account: Account | None = None,
    env: Mapping[str, str] | None = None,
) -> list[Outcome]:
    """Install each of `ids` into the workspace, as its `account` (None: the manager's own); one Outcome per id, in order.

    The engine's CLI runs as the workspace's account, so whatever stands in its folders (a link
    planted in the extensions folder, say) can lead it nowhere that account could not write.
    """
    failed: dict[str, str] = {}
    if account is not None:
        engine = publish.for_accounts(engine)
    for n, ext_id in enumerate(ids, 1):
        if progress:
            progress(f"extensions: {ext_id}", n - 1, len(ids))
        code, output = _cli(engine, ws, config, account, env, "--install-extension", source_of(ext_id, config))
        if code != 0:
            failed[ext_id] = _reason(output)
        if progress:
            progress(f"extensions: {ext_id}", n, len(ids))
    versions = listed(engine, ws, config, account, env) if len(failed) < len(ids) else {}  # one listing for all of them
    return [
        Outcome(i, False, failed[i]) if i in failed else Outcome(i, True, versions.get(i.lower(), "installed"))
        for i in ids
    ]


def listed(
    engine: Engine,
    ws: WorkspaceSpec,
    config: ExtensionSettings,
    account: Account | None = None,
    env: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """Extensions the engine lists as installed in the workspace: lower-case id → version."""
    _, output = _cli(engine, ws, config, account, env, "--list-extensions", "--show-versions")
    found = {}
    for line in output.splitlines():
        ext_id, at, version = line.strip().partition("@")
        if at and EXTENSION_ID.match(ext_id):
            found[ext_id.lower()] = version
    return found


def _reason(output: str) -> str:
    lines = [ln.strip() for ln in output.splitlines() if ln.strip() and ln.strip() != "Installing extensions..."]
    text = lines[-1] if lines else "the engine gave no reason"
    if "No extension gallery service configured" in text or "ENOTFOUND" in text or "not found" in text.lower():
        return f"not found in the .vsix mirror or the gallery ({text})"
    return text


def _cli(
    engine: Engine,
    ws: WorkspaceSpec,
    config: ExtensionSettings,
    account: Account | None,
    extra: Mapping[str, str] | None,
    *args: str,
) -> tuple[int, str]:
    with tempfile.TemporaryDirectory(prefix="dy-ext-") as scratch:
        runtime = Path(scratch)
        if account is not None:
            os.chown(runtime, account.uid, account.gid)
            args = tuple(
                _readable_copy(a, runtime, account) for a in args
            )  # the admin's mirror may be closed to the account
        env = engine_env(engine, home=ws.home_dir, runtime_dir=runtime, extra=extra)
        if config.gallery != OPEN_VSX:  # the engine's own default is Open VSX
            env["EXTENSIONS_GALLERY"] = _gallery_json(config.gallery)
        argv = [
            str(engine.node),
            str(engine.entry),
            "--user-data-dir",
            str(ws.data_dir),
            "--extensions-dir",
            str(ws.extensions_dir),
            *args,
        ]
        try:
            done = subprocess.run(
                argv,
                env=env,
                capture_output=True,
                text=True,
                timeout=config.install_timeout_s,
                stdin=subprocess.DEVNULL,
                cwd=runtime,
                **osaccounts.popen_args(account),
            )
        except subprocess.TimeoutExpired:
            return 1, f"did not finish within {config.install_timeout_s:.0f} s"
    return done.returncode, done.stdout + done.stderr


def _readable_copy(arg: str, folder: Path, account: Account) -> str:
    """A .vsix argument copied into `folder` as `account`'s file (the id of a gallery extension stays as it is)."""
    if not arg.endswith(".vsix") or not os.path.isabs(arg):
        return arg
    copy = folder / Path(arg).name
    shutil.copyfile(arg, copy)
    os.chown(copy, account.uid, account.gid)
    return str(copy)


def _gallery_json(url: str | None) -> str:
    if not url:
        return "{}"
    base = url.rstrip("/")
    item = base[: -len("/gallery")] + "/item" if base.endswith("/gallery") else base
    return json.dumps({"serviceUrl": base, "itemUrl": item}, separators=(", ", ": "))
