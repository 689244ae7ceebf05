"""Creating a workspace: its record, then its files, settings, tools and extensions in the background; groups added later.

The provisioning itself is devyard.provision, run in a thread; this module ties it to the
workspace's status, its live progress (`progress`, shown while it provisions) and its log.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import shutil
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Protocol

from devyard import osaccounts as accounts
from devyard import provision
from devyard.auth.identity import Identity
from devyard.backends.base import WorkspaceSpec
from devyard.clock import CLOCK
from devyard.config import Settings
from devyard.errors import Conflict, DevyardError, Invalid, ProvisionError, StorageFull, is_storage_full
from devyard.models import Progress, WorkspaceCreate
from devyard.osaccounts import Account
from devyard.provision import extensions as provision_extensions
from devyard.provision import git as provision_git
from devyard.provision.devcontainer import Build, DevContainer, build_allowed, image_allowed
from devyard.provision.report import ProgressLog, failures
from devyard.reasons import CREATED
from devyard.store.tables import WorkspaceRow, utcnow
from devyard.usersecrets import SecretStore
from devyard.workspaces import offers, quotas, sizes
from devyard.workspaces.repository import Repository
from devyard.workspaces.states import Status


class Workspaces(Protocol):
    """What provisioning needs of the lifecycle (and nothing more)."""

    def spec(self, row: WorkspaceRow) -> WorkspaceSpec: ...
    def lock(self, uid: str) -> asyncio.Lock: ...
    def user_lock(self, user_id: int) -> asyncio.Lock: ...
    def need_local_files(self, what: str) -> None: ...
    def remember(self, row: WorkspaceRow, address: str | None = None) -> None: ...
    def publish(self, row: WorkspaceRow) -> None: ...
    def background(self, row: WorkspaceRow, op: Callable[[WorkspaceRow], Awaitable[None]]) -> None: ...
    async def transition(
        self, row: WorkspaceRow, status: str, address: str | None = None, **fields: object
    ) -> None: ...
    async def save(self, row: WorkspaceRow, **fields: object) -> None: ...
    async def do_start(self, row: WorkspaceRow, keep_error: bool = False) -> None: ...
    async def with_secrets(self, row: WorkspaceRow) -> WorkspaceSpec: ...
    async def run_once(self, spec: WorkspaceSpec, command: str, timeout_s: float) -> int: ...
    async def build_image(self, spec: WorkspaceSpec, build: Build, say: Callable[[str], None]) -> str: ...


class Provisioner:
    """Creates workspaces, runs their provisioning and keeps where each run is."""

    def __init__(
        self,
        settings: Settings,
        lifecycle: Workspaces,
        repo: Repository,
        secrets: SecretStore,
        local_files: bool,
        progress: dict[str, Progress],
    ) -> None:
        self.settings, self.lifecycle, self.repo, self.secrets, self.local_files = (
            settings,
            lifecycle,
            repo,
            secrets,
            local_files,
        )
        self.progress = progress  # uid → where its provisioning is (the presenter shows it)

    async def create(
        self, who: Identity, req: WorkspaceCreate, unpacked: Path | None = None, restore: Path | None = None
    ) -> WorkspaceRow:
        """Record a workspace and provision it in the background (then start it, when asked).

        `unpacked`: an uploaded archive already unpacked and checked; it becomes the workspace's files.
        `restore`: from a backup, the user-data and extension list to restore (backups.restore_folder).
        """
        git_url, names = self.check(req)
        granted = offers.of(self.settings, who.groups, who.is_admin)
        offers.check(
            granted, req.size or self.settings.default_size if granted.sizes else req.size, names, req.template
        )
        row = WorkspaceRow(
            uid=secrets.token_hex(6),
            owner_id=who.user_id,
            name=req.name,
            status=Status.provisioning,
            template=req.template,
            extension_groups=names,
            git_url=git_url,
            idle_timeout_s=req.idle_timeout_s,
            size=sizes.check(self.settings, req.size),
        )
        repo = self.repo
        async with self.lifecycle.user_lock(who.user_id):
            await quotas.check(repo.db, self.settings, await repo.user(who.user_id), new=True, running=req.start)
            await repo.add(row)
        if unpacked is not None:
            await asyncio.to_thread(self.keep_upload, row, unpacked, restore)
        self.lifecycle.remember(row)
        self.lifecycle.background(row, lambda r: self.run(r, req.start))
        return row

    def check(self, req: WorkspaceCreate) -> tuple[str | None, list[str]]:
        """What a request asks for, checked before anything is made: its git URL and extension groups; Invalid otherwise."""
        template = provision.find_template(self.settings, req.template) if req.template else None
        if template and template.git_url and req.git_url:
            raise Invalid(
                f"template '{template.name}' brings its own git URL; give a template or a git URL, not both",
                code="conflicting_sources",
            )
        git_url = req.git_url if req.git_url is not None else (template.git_url if template else None)
        if git_url is not None:
            git_url = provision_git.check_url(git_url, self.settings.git_file_roots)
        names = list(dict.fromkeys([*(template.extension_groups if template else []), *req.extension_groups]))
        groups = provision.resolve_groups(names, self.settings.extension_groups)
        provision_extensions.check_allowed(provision.group_extensions(groups), self.settings.extensions)
        sizes.check(self.settings, req.size)
        return git_url, names

    async def retry(self, row: WorkspaceRow) -> WorkspaceRow:
        """Provision again a workspace whose provisioning failed (the files of the failed try are gone)."""
        if row.provisioned_at is not None or row.status != Status.failed:
            raise Conflict(
                f"workspace '{row.name}' is {row.status} and was provisioned; only a failed provisioning is retried",
                code="nothing_to_retry",
            )
        await self.lifecycle.transition(row, Status.provisioning, error=None)
        self.lifecycle.background(row, lambda r: self.run(r, True))
        return row

    def keep_upload(self, row: WorkspaceRow, unpacked: Path, restore: Path | None = None) -> None:
        """Keep an unpacked upload under uploads/<uid> (and what a backup restores, uploads/<uid>.restore) until provisioning takes it."""
        self.settings.uploads_dir.mkdir(mode=0o700, exist_ok=True)
        os.replace(unpacked, self.settings.uploads_dir / row.uid)
        if restore is not None:
            os.replace(restore, self.settings.uploads_dir / f"{row.uid}.restore")

    async def account(self, row: WorkspaceRow) -> Account | None:
        """The OS account the workspace's files belong to (made on first use), or None where engines share the manager's."""
        isolated = self.settings.isolated and self.local_files
        return await asyncio.to_thread(accounts.workspace_account, isolated, row.owner.name)

    async def run(self, row: WorkspaceRow, start: bool) -> None:
        """Provision the workspace, then mark it stopped or go on to start it; `failed` with the reason when a step fails."""
        service = self.lifecycle
        spec = service.spec(row)
        upload, restore = self.settings.uploads_dir / row.uid, self.settings.uploads_dir / f"{row.uid}.restore"
        owned = await self.secrets.materials(row.owner_id) if row.git_url else None
        try:
            account = await self.account(row)
        except DevyardError as exc:
            await service.transition(row, Status.failed, error=exc.message, reason=exc.code)
            return
        plan = provision.Plan(
            groups=provision.resolve_groups(list(row.extension_groups or []), self.settings.extension_groups),
            git_url=row.git_url,
            unpacked=upload if upload.is_dir() else None,
            git_credentials=provision_git.Credentials.from_secrets(owned.env) if owned else None,
            user_data=restore / "data" if (restore / "data").is_dir() else None,
            extension_ids=json.loads((restore / "extensions.json").read_text()) if restore.is_dir() else [],
            account=account,
        )
        reporter = ProgressLog(spec.log_file)

        loop = asyncio.get_running_loop()

        def progress(step: str, current: int, total: int) -> None:  # called from the provisioning thread
            self.progress[row.uid] = Progress(step=step, current=current, total=total)
            reporter.note(step, current, total)
            loop.call_soon_threadsafe(service.publish, row)

        try:
            made = await asyncio.to_thread(provision.provision, spec, plan, self.settings, progress)
            if made.devcontainer is not None:
                await self.devcontainer(row, made.devcontainer, reporter, progress)
        except DevyardError as exc:
            # A full disk, whichever step met it (git, unpacking, settings), is said plainly, with what to do.
            failure = StorageFull.during("provisioning", "retry provisioning") if is_storage_full(exc) else exc
            with contextlib.suppress(OSError):  # the log is on the disk that may still be full
                reporter.line(f"provisioning failed: {failure.message}")
            await service.transition(row, Status.failed, error=failure.message, reason=failure.code)
            return
        finally:
            self.progress.pop(row.uid, None)
        shutil.rmtree(upload, ignore_errors=True)
        shutil.rmtree(restore, ignore_errors=True)
        reporter.outcomes(made.outcomes)
        reporter.line("provisioning done")
        # The workspace works without the extensions that failed; `error` says which, until the next start.
        # Straight on to starting: a watcher must never see a settled `stopped` between the two.
        await service.transition(
            row,
            Status.starting if start else Status.stopped,
            provisioned_at=utcnow(),
            error=failures(made.outcomes),
            last_start=CREATED.stored(CLOCK.now()) if start else row.last_start,
        )
        if start:
            await service.do_start(row, keep_error=True)

    async def devcontainer(
        self, row: WorkspaceRow, found: DevContainer, reporter: ProgressLog, progress: Callable[[str, int, int], None]
    ) -> None:
        """Keep what the files' devcontainer.json asks for, say what cannot apply, and run its postCreateCommand here.

        ProvisionError when the command fails (the files are emptied, as by any failed step, for a retry).
        """
        for line in devcontainer_notes(found, self.settings):
            reporter.line(line)
        if found.build is not None and build_allowed(self.settings):
            progress("building the devcontainer image", 0, 1)
            spec = self.lifecycle.spec(row)
            try:
                found.built_image = await self.lifecycle.build_image(spec, found.build, reporter.line)
            except DevyardError:
                await asyncio.to_thread(provision.empty_files, spec)
                raise
            progress("building the devcontainer image", 1, 1)
        await self.lifecycle.save(row, devcontainer=found.to_json())
        if not found.post_create or not self.local_files:
            return  # on Kubernetes the pod runs it, with its image's tools, on its first start
        progress("postCreateCommand", 0, 1)
        reporter.line(f"devcontainer.json: postCreateCommand: {found.post_create}")
        spec = await self.lifecycle.with_secrets(row)
        status = await self.lifecycle.run_once(spec, found.post_create, self.settings.post_create_timeout_s)
        if status != 0:
            await asyncio.to_thread(provision.empty_files, spec)
            raise ProvisionError(
                f"devcontainer.json's postCreateCommand failed with exit status {status} (its output is in the "
                "workspace's log); fix it and retry provisioning",
                code="post_create_failed",
            )
        progress("postCreateCommand", 1, 1)

    async def add_groups(self, row: WorkspaceRow, names: list[str]) -> list[provision_extensions.Outcome]:
        """Add extension groups to a provisioned workspace: settings the user lacks, and extensions; one Outcome each."""
        self.lifecycle.need_local_files("adding extension groups to a workspace")
        if row.provisioned_at is None:
            raise Conflict(f"workspace '{row.name}' is not provisioned yet", code="not_provisioned")
        groups = provision.resolve_groups(names, self.settings.extension_groups)
        provision_extensions.check_allowed(provision.group_extensions(groups), self.settings.extensions)
        service = self.lifecycle
        async with service.lock(row.uid):
            outcomes = await asyncio.to_thread(
                provision.add_groups, service.spec(row), groups, self.settings, await self.account(row)
            )
            merged = list(dict.fromkeys([*(row.extension_groups or []), *names]))
            await service.save(row, extension_groups=merged)
        return outcomes


def devcontainer_notes(found: DevContainer, settings: Settings) -> list[str]:
    """The workspace log's lines about a devcontainer.json: what is taken, and, once, what cannot apply here."""
    building = found.build is not None and build_allowed(settings)
    taken = [f"{len(found.extensions)} extension(s)"] if found.extensions else []
    taken += ["settings"] if found.settings else []
    taken += [f"variables {', '.join(found.env)}"] if found.env else []
    taken += [
        name for name, cmd in (("postCreateCommand", found.post_create), ("postStartCommand", found.post_start)) if cmd
    ]
    taken += [f"ports {', '.join(str(p.port) for p in found.ports)}"] if found.ports else []
    taken += [f"build {found.build.dockerfile}"] if found.build and building else []
    taken += [f"image {found.image}"] if image_allowed(found.image, settings) and not building else []
    notes = [f"devcontainer.json ({found.path}): {', '.join(taken) or 'nothing devyard uses'}"]
    wanted = f"build {found.build.dockerfile}" if found.build else f"image {found.image}" if found.image else None
    if wanted and settings.backend != "kubernetes":
        notes.append(f"devcontainer.json: {wanted} {LOCAL_IMAGE}")
    elif found.build and not building:
        runs = f"image {found.image}" if image_allowed(found.image, settings) else "engine image"
        notes.append(
            f"devcontainer.json: {wanted} is not built: this manager does not build images "
            f"(kubernetes.devcontainer_build.enabled); the {runs} runs the workspace"
        )
    elif found.image and not building and not image_allowed(found.image, settings):
        notes.append(
            f"devcontainer.json: image {found.image} is not one this manager allows (kubernetes.devcontainer_images): "
            "the engine image runs the workspace"
        )
    if found.unsupported:
        notes.append(f"devcontainer.json: not supported here, left out: {', '.join(found.unsupported)}")
    return notes


# Said in the log and on the workspace's page when a devcontainer.json names an image on the local backend.
LOCAL_IMAGE = (
    "cannot apply on the local backend: workspaces run on this host's own system with devyard's engine, "
    "so the image's tools are not there (the kubernetes backend runs it)"
)
