"""Filling a new workspace in the background (files, settings, tools, extensions) and adding groups later.

The provisioning itself is devyard.provision, run in a thread; this module ties it to the
workspace's status, its live progress (`progress`, shown while it provisions) and its log.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from devyard import provision
from devyard.backends import accounts
from devyard.backends.accounts import Account
from devyard.errors import DevyardError, Invalid, StorageFull, is_storage_full
from devyard.models import Progress, Status
from devyard.provision import extensions as provision_extensions
from devyard.provision import git as provision_git
from devyard.provision.report import ProgressLog, failures
from devyard.store.tables import WorkspaceRow, utcnow

if TYPE_CHECKING:
    from devyard.workspaces.service import WorkspaceService


class Provisioner:
    """Runs provisioning for WorkspaceService and keeps where each run is."""

    def __init__(self, service: WorkspaceService) -> None:
        self.service = service
        self.settings = service.settings
        self.progress: dict[str, Progress] = {}  # uid → where its provisioning is

    def keep_upload(self, row: WorkspaceRow, unpacked: Path, restore: Path | None = None) -> None:
        """Keep an unpacked upload under uploads/<uid> (and what a backup restores, uploads/<uid>.restore) until provisioning takes it."""
        self.settings.uploads_dir.mkdir(mode=0o700, exist_ok=True)
        os.replace(unpacked, self.settings.uploads_dir / row.uid)
        if restore is not None:
            os.replace(restore, self.settings.uploads_dir / f"{row.uid}.restore")

    async def account(self, row: WorkspaceRow) -> Account | None:
        """The OS account the workspace's files belong to (made on first use), or None where engines share the manager's."""
        isolated = self.settings.isolated and self.service.backend.local_files
        return await asyncio.to_thread(accounts.workspace_account, isolated, row.owner.name)

    async def run(self, row: WorkspaceRow, start: bool) -> None:
        """Provision the workspace, then mark it stopped or go on to start it; `failed` with the reason when a step fails."""
        service = self.service
        spec = service.spec(row)
        upload, restore = self.settings.uploads_dir / row.uid, self.settings.uploads_dir / f"{row.uid}.restore"
        owned = await service.secrets.materials(row.owner_id) if row.git_url else None
        try:
            account = await self.account(row)
        except DevyardError as exc:
            await service.set_status(row, Status.failed, error=exc.message, reason=exc.code)
            return
        plan = provision.Plan(groups=provision.resolve_groups(list(row.extension_groups or []), self.settings.extension_groups),
                              git_url=row.git_url, unpacked=upload if upload.is_dir() else None,
                              git_credentials=provision_git.Credentials.from_secrets(owned.env) if owned else None,
                              user_data=restore / "data" if (restore / "data").is_dir() else None,
                              extension_ids=json.loads((restore / "extensions.json").read_text()) if restore.is_dir() else [],
                              account=account)
        reporter = ProgressLog(spec.log_file)

        loop = asyncio.get_running_loop()

        def progress(step: str, current: int, total: int) -> None:  # called from the provisioning thread
            self.progress[row.uid] = Progress(step=step, current=current, total=total)
            reporter.note(step, current, total)
            loop.call_soon_threadsafe(service.publish, row)

        try:
            outcomes = await asyncio.to_thread(provision.provision, spec, plan, self.settings, progress)
        except DevyardError as exc:
            # A full disk, whichever step met it (git, unpacking, settings), is said plainly, with what to do.
            failure = StorageFull.during("provisioning", "retry provisioning") if is_storage_full(exc) else exc
            with contextlib.suppress(OSError):  # the log is on the disk that may still be full
                reporter.line(f"provisioning failed: {failure.message}")
            await service.set_status(row, Status.failed, error=failure.message, reason=failure.code)
            return
        finally:
            self.progress.pop(row.uid, None)
        shutil.rmtree(upload, ignore_errors=True)
        shutil.rmtree(restore, ignore_errors=True)
        reporter.outcomes(outcomes)
        reporter.line("provisioning done")
        # The workspace works without the extensions that failed; `error` says which, until the next start.
        # Straight on to starting: a watcher must never see a settled `stopped` between the two.
        await service.set_status(row, Status.starting if start else Status.stopped, provisioned_at=utcnow(), error=failures(outcomes))
        if start:
            await service.do_start(row, keep_error=True)

    async def add_groups(self, row: WorkspaceRow, names: list[str]) -> list[provision_extensions.Outcome]:
        """Add extension groups to a provisioned workspace: settings the user lacks, and extensions; one Outcome each."""
        self.service.need_local_files("adding extension groups to a workspace")
        if row.provisioned_at is None:
            raise Invalid(f"workspace '{row.name}' is not provisioned yet", code="not_provisioned")
        groups = provision.resolve_groups(names, self.settings.extension_groups)
        provision_extensions.check_allowed(provision.group_extensions(groups), self.settings.extensions)
        service = self.service
        async with service.lock(row.uid):
            outcomes = await asyncio.to_thread(provision.add_groups, service.spec(row), groups, self.settings, await self.account(row))
            merged = list(dict.fromkeys([*(row.extension_groups or []), *names]))
            await service.set_status(row, row.status, address=service.address_of(row), extension_groups=merged)
        return outcomes
