"""Making a new workspace: its folders, its files (git clone or unpacked archive) and its settings.

Each step reports progress (step, current, total). A step that fails leaves the workspace's
folders empty again, so provisioning can simply be run again (retry-provision).
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devyard.backends.base import WorkspaceSpec
from devyard.config import ExtensionGroup, Settings
from devyard.engine import install
from devyard.errors import DevyardError, Invalid, ProvisionError
from devyard.models import Template
from devyard.osaccounts import Account, chown_tree, prepare_folders
from devyard.provision import devcontainer, extensions, git, tools, usersettings
from devyard.provision.extensions import Outcome
from devyard.provision.progress import Progress

EMPTY_TEMPLATE = "empty"

# Sensible defaults for a browser-hosted editor; extension groups' user_settings override them.
BASE_USER_SETTINGS: dict[str, Any] = {
    "workbench.startupEditor": "none",
    "security.workspace.trust.enabled": False,
    "telemetry.telemetryLevel": "off",
    "update.mode": "none",
    # No AI service is reachable from a self-hosted engine by default: keep its panel closed.
    "chat.disableAIFeatures": True,
    "workbench.secondarySideBar.defaultVisibility": "hidden",
}


def resolve_groups(ids: list[str], available: dict[str, ExtensionGroup]) -> list[ExtensionGroup]:
    """The configured groups whose ids are `ids`; Invalid naming any unknown one."""
    unknown = [n for n in ids if n not in available]
    if unknown:
        offered = ", ".join(sorted(available)) or "none are configured"
        raise Invalid(
            f"unknown extension group(s): {', '.join(unknown)} (available: {offered})", code="unknown_extension_group"
        )
    return [available[n] for n in ids]


def templates(settings: Settings) -> list[Template]:
    """The built-in `empty` template (no git URL), then every packaged_assets item in catalog order."""
    found = [
        Template(
            name=EMPTY_TEMPLATE,
            description="An empty folder.",
            tab="",
            extension_groups=[],
            git_url=None,
            thumbnail_url=None,
        )
    ]
    for tab in settings.packaged_assets.tabs:
        for item in tab.items:
            found.append(
                Template(
                    name=item.name,
                    description=item.description,
                    tab=tab.name,
                    extension_groups=list(item.extensions_groups),
                    git_url=item.github_url,
                    thumbnail_url=item.thumbnail_url,
                    icon_links=item.icon_links,
                )
            )
    return found


def find_template(settings: Settings, name: str) -> Template:
    """The template called `name`; Invalid listing what there is otherwise."""
    offered = templates(settings)
    for t in offered:
        if t.name == name:
            return t
    raise Invalid(
        f"unknown template '{name}' (available: {', '.join(t.name for t in offered)})", code="unknown_template"
    )


@dataclass(frozen=True)
class Plan:
    """What goes into a new workspace."""

    groups: list[ExtensionGroup]
    git_url: str | None = None
    unpacked: Path | None = None  # an archive already unpacked (and checked) into this folder
    git_credentials: git.Credentials | None = field(default=None, repr=False)
    user_data: Path | None = None  # from a backup: user-data (settings, state) that replaces the new workspace's
    extension_ids: list[str] = field(default_factory=list)  # from a backup: installed besides the groups' own
    account: Account | None = (
        None  # the workspace's own account, which clones and installs run as (None: the manager's)
    )


@dataclass
class Provisioned:
    """What provisioning made: how each extension went, and the devcontainer.json the files hold."""

    outcomes: list[Outcome]
    devcontainer: devcontainer.DevContainer | None = None


def provision(ws: WorkspaceSpec, plan: Plan, settings: Settings, progress: Progress) -> Provisioned:
    """Create the workspace's folders, fill files/, write its user settings and install its groups' extensions.

    A devcontainer.json in the files adds its extensions (those the allow-list takes) and settings.

    The folders are the workspace account's from the moment they exist, and everything done in them
    runs as that account (the clone, the extension installs) or through safefs (the settings):
    another of the user's workspaces may already be running as the same account. What comes from
    the manager's private uploads folder (an archive, a backup's user-data) is given to the account
    there, where nobody else can touch it, and then moved in.

    ProvisionError when a step fails; an extension that will not install is an Outcome, not a failure.
    """
    ids = list(dict.fromkeys([*group_extensions(plan.groups), *plan.extension_ids]))
    steps = 2 + (plan.git_url is not None or plan.unpacked is not None) + bool(settings.tools) + bool(ids)
    account = plan.account
    try:
        prepare_folders(
            ws, account, settings.workspaces_dir
        )  # first: before anything (the progress log) makes a folder
        progress("folders", 1, steps)
        _empty(ws.files_dir)  # what an earlier, failed attempt left
        if plan.git_url is not None:
            progress("clone", 0, 0)
            git.clone(
                plan.git_url,
                ws.files_dir,
                timeout_s=settings.git_clone_timeout_s,
                progress=progress,
                allow_file=bool(settings.git_file_roots),
                credentials=plan.git_credentials,
                account=account,
                env=settings.engine_env,
            )
        elif plan.unpacked is not None:
            progress("unpack", 2, steps)
            _move_in(plan.unpacked, ws.files_dir, account)
        if plan.user_data is not None:
            _restore_user_data(plan.user_data, ws.data_dir, account)
        progress("settings", steps - bool(settings.tools) - bool(ids), steps)
        found = devcontainer.read(ws.files_dir, devcontainer.build_allowed(settings))
        defaults = dict(BASE_USER_SETTINGS)
        for group in plan.groups:
            defaults.update(group.user_settings)
        outcomes: list[Outcome] = []
        if found is not None:
            defaults.update(found.settings)
            allowed, outcomes = extensions.partition_allowed(found.extensions, settings.extensions)
            ids = list(dict.fromkeys([*ids, *allowed]))
        usersettings.merge(ws.data_dir, defaults)
        outcomes += install_tools(settings, progress)
        if ids:
            outcomes += extensions.install(
                install.require(settings.engine_dir),
                ws,
                ids,
                settings.extensions,
                progress,
                account,
                settings.engine_env,
            )
        return Provisioned(outcomes, found)
    except DevyardError:
        _empty(ws.files_dir)
        raise
    except OSError as exc:
        _empty(ws.files_dir)
        raise ProvisionError(f"could not prepare the workspace under {ws.root}: {exc}") from exc


def _move_in(source: Path, dest: Path, account: Account | None) -> None:
    """Move the entries of `source` (in the manager's private uploads folder) into `dest`, given to `account` first."""
    if account is not None:
        chown_tree(source, account)
    for child in source.iterdir():
        os.replace(child, dest / child.name)  # a rename: never through a link that stands at the destination


def _restore_user_data(source: Path, dest: Path, account: Account | None) -> None:
    """Put a backup's user-data in place of what the new workspace has."""
    if account is not None:
        chown_tree(source, account)
    for item in source.iterdir():
        target = dest / item.name
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        elif target.exists() or target.is_symlink():
            target.unlink()
        os.replace(item, target)


def install_tools(settings: Settings, progress: Progress) -> list[Outcome]:
    """Make sure every configured tool is in the shared cache (installed once per version); a failure is an Outcome."""
    outcomes = []
    engine = install.require(settings.engine_dir) if settings.tools else None
    for n, tool in enumerate(settings.tools, 1):
        progress(f"tools: {tool.name}", n - 1, len(settings.tools))
        assert engine is not None
        try:
            tools.ensure(settings.tools_dir, tool, engine)
        except ProvisionError as exc:
            outcomes.append(Outcome(f"tool {tool.name}", False, exc.message))
    return outcomes


def add_groups(
    ws: WorkspaceSpec, groups: list[ExtensionGroup], settings: Settings, account: Account | None
) -> list[Outcome]:
    """Give an existing workspace more groups: their settings where the user has none, and their extensions (installed as `account`)."""
    defaults: dict[str, Any] = {}
    for group in groups:
        defaults.update(group.user_settings)
    try:
        usersettings.merge(ws.data_dir, defaults)
    except OSError as exc:
        raise ProvisionError(f"could not update the workspace's settings: {exc.strerror or exc}") from exc
    ids = group_extensions(groups)
    return (
        extensions.install(
            install.require(settings.engine_dir), ws, ids, settings.extensions, None, account, settings.engine_env
        )
        if ids
        else []
    )


def group_extensions(groups: list[ExtensionGroup]) -> list[str]:
    """The groups' extension ids, each once, in order."""
    return list(dict.fromkeys(e for g in groups for e in g.extensions))


def empty_files(ws: WorkspaceSpec) -> None:
    """Empty the workspace's files/ (a failed provisioning step, so that it can be run again)."""
    _empty(ws.files_dir)


def _empty(folder: Path) -> None:
    if folder.is_dir():
        for child in folder.iterdir():
            shutil.rmtree(child) if child.is_dir() and not child.is_symlink() else child.unlink()
