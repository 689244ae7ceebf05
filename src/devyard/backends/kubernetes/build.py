"""A devcontainer.json's `build`, built in the cluster: one pod per build, its image pushed, the workspace run by digest.

When the admin switches builds on (kubernetes.devcontainer_build), provisioning hands the
workspace's `build` here, and the pod `dy-<uid>-build` runs three steps, in this order:
1. `context` (the engine image, non-root): fetches the build context, which the manager packed
   from the workspace's files (safetar: no link followed) into one .tar.gz, with a token made for
   this build and revoked when it ends, as a new workspace's pod fetches its seed;
2. `build` (buildah, chroot isolation, vfs storage): builds the Dockerfile and writes the image as
   an OCI archive into a volume. This step runs the tenant's `RUN` lines as root in its container,
   so it sees no credential at all: no service-account token, no push Secret, no environment of
   the owner's. The pod runs in a user namespace of its own: a cluster that drops `hostUsers: false`
   gets its pod deleted before anything runs;
3. `push` (skopeo): pushes the archive to `<repository>:<uid>` with the push Secret, the only step
   that mounts it, and writes the pushed manifest's digest as its termination message.
The manager reads that digest (checked to be one) and the workspace's pod runs
`<repository>@<digest>`, never a tag someone could move. A NetworkPolicy gives the build pod the
engine's egress (DNS, the manager, the allowed networks) and no ingress. Each step's output goes to
the workspace's log as it comes; a failed step fails provisioning, naming the step.
buildah, not kaniko: kaniko's repository was archived in June 2025, and kaniko runs the `RUN` lines
in the same container that holds the push credentials.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import posixpath
import re
import tarfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, cast

from devyard import safefs, safetar
from devyard.backends.base import WorkspaceSpec
from devyard.backends.kubernetes import pods
from devyard.backends.kubernetes.build_pod import (
    STEPS,
    context_url,
    namespace_of,
    network_policy,
    pod,
    pod_name,
    token_secret,
)
from devyard.backends.kubernetes.manifests import Manifest
from devyard.backends.kubernetes.seed import Seeds
from devyard.config import KubernetesSettings
from devyard.errors import Invalid, ProvisionError
from devyard.provision.devcontainer import Build

log = logging.getLogger("devyard.kubernetes")
DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
POLL_S = 1.0
GONE_S = 60.0  # how long a deleted build pod's containers may take to end before its fences go
LINE_CAP, OUTPUT_CAP = 8 << 10, 4 << 20  # the build's output in the workspace's log: a line, all of it
CONTEXT_FILE = "build-context.tar.gz"  # in the workspace's folder on the manager, while the build runs


def write_context(files_dir: Path, build: Build, target: Path, max_bytes: int) -> None:
    """Pack the Dockerfile and the context folder into `target` (.tar.gz); Invalid naming what is missing or too large."""
    budget = safetar.Budget(
        max_bytes, f"the build context ({build.context}; kubernetes.devcontainer_build.max_context_mb)"
    )
    folder, name = posixpath.split(build.dockerfile)
    try:
        with target.open("wb") as out, tarfile.open(fileobj=out, mode="w|gz", format=tarfile.PAX_FORMAT) as tar:
            with safefs.opened_dir(files_dir, folder) as fd:
                if not safetar.add_file(tar, fd, name, "Dockerfile", budget):
                    raise Invalid(f"build.dockerfile {build.dockerfile} is not a file", code="devcontainer_invalid")
            with safefs.opened_dir(files_dir, "" if build.context == "." else build.context) as fd:
                safetar.add_tree_at(tar, fd, "context", budget=budget)
    except (FileNotFoundError, NotADirectoryError) as exc:
        raise Invalid(
            f"the build's {build.dockerfile} or its context {build.context}/ is not in the workspace's files",
            code="devcontainer_invalid",
        ) from exc
    except OSError as exc:  # a link planted on the way (ELOOP): never followed
        raise Invalid(
            f"the build's {build.dockerfile} or its context {build.context}/ cannot be read: {exc.strerror or exc}",
            code="devcontainer_invalid",
        ) from exc


@dataclass(frozen=True, slots=True)
class Outcome:
    """How a build pod ended: the pushed digest, or the step that failed and why."""

    digest: str | None = None
    step: str | None = None
    detail: str | None = None


def outcome(found: dict[str, Any]) -> Outcome | None:
    """The build pod's end, read from its status (camelCase); None while it runs."""
    status = found.get("status") or {}
    steps = [*(status.get("initContainerStatuses") or []), *(status.get("containerStatuses") or [])]
    for cs in steps:
        state = cs.get("state") or {}
        waiting = (state.get("waiting") or {}).get("reason")
        if waiting in pods.IMAGE_PULL or waiting in pods.CANNOT_RUN:
            message = (state.get("waiting") or {}).get("message") or waiting
            return Outcome(step=cs.get("name"), detail=f"{waiting}: {message}")
        ended = state.get("terminated")
        if ended and ended.get("exitCode") not in (0, None):
            reason = (
                "out of memory (kubernetes.devcontainer_build.memory)" if ended.get("reason") == "OOMKilled" else ""
            )
            return Outcome(step=cs.get("name"), detail=reason or f"exit status {ended.get('exitCode')}")
        if cs.get("name") == "push" and ended and ended.get("exitCode") == 0:
            digest = str(ended.get("message") or "").strip()
            if not DIGEST.match(digest):
                return Outcome(step="push", detail=f"the push reported no digest ({digest[:80]!r})")
            return Outcome(digest=digest)
    if status.get("phase") == "Failed":
        detail = status.get("message") or status.get("reason") or "the pod failed"
        return Outcome(step="pod", detail=str(detail))
    return None


class KubeCalls(Protocol):
    """What a build needs of the backend: the core API and its error-translating call."""

    @property
    def core(self) -> Any: ...

    async def call(self, doing: str, call: Callable[[], Awaitable[Any]], ok: tuple[int, ...] = ()) -> Any: ...

    @property
    def networking(self) -> Any: ...

    async def put_secret(self, manifest: Manifest) -> None: ...


async def run(
    kube: KubeCalls,
    k8s: KubernetesSettings,
    ws: WorkspaceSpec,
    build: Build,
    base_url: str,
    contexts: Seeds,
    say: Callable[[str], None],
) -> str:
    """Build `build` for `ws` in a pod and return `<repository>@<digest>`; ProvisionError naming the step that failed."""
    b, namespace, name = k8s.devcontainer_build, namespace_of(k8s), pod_name(ws.uid)
    context = ws.root / CONTEXT_FILE
    try:
        await asyncio.to_thread(write_context, ws.files_dir, build, context, b.max_context_mb << 20)
    except Invalid as exc:
        context.unlink(missing_ok=True)
        raise ProvisionError(exc.message, code=exc.code) from exc
    say(f"devcontainer.json: building {build.dockerfile} (context {build.context}/) in pod {namespace}/{name}")
    follower: asyncio.Task[None] | None = None
    try:
        await clean(kube, namespace, name)  # one an earlier manager left behind
        await kube.put_secret(token_secret(ws, k8s, contexts.issue(ws.uid, context, b.timeout_s)))
        policy = network_policy(ws, k8s)
        await kube.call(
            "creating the build's NetworkPolicy",
            lambda: kube.networking.create_namespaced_network_policy(namespace, policy),
        )
        body = pod(ws, k8s, build, context_url(base_url, ws.uid))
        made = await kube.call(
            "creating the build pod", lambda: kube.core.create_namespaced_pod(namespace, cast(Any, body))
        )
        if getattr(getattr(made, "spec", None), "host_users", None) is not False:
            raise ProvisionError(USER_NAMESPACE_DROPPED, code="image_build_failed")
        follower = asyncio.create_task(_follow(kube, namespace, name, say))
        ended = await _until_done(kube, namespace, name, b.timeout_s + 60, k8s.start_timeout_s)
        with contextlib.suppress(Exception):  # the rest of the output, if it is still coming; never an error
            await asyncio.wait_for(asyncio.shield(follower), 5)
    finally:
        contexts.revoke(ws.uid)
        context.unlink(missing_ok=True)
        if follower is not None:
            follower.cancel()
        try:
            await clean(kube, namespace, name)
        except Exception as exc:  # said, not raised: the build's own outcome matters more
            log.warning("cleaning up build %s/%s: %s", namespace, name, exc)
    if ended.digest is None:
        raise ProvisionError(
            f"the devcontainer image did not build: step {ended.step} failed: {ended.detail} (its output is in the "
            "workspace's log); fix it and retry provisioning",
            code="image_build_failed",
        )
    image = f"{b.repository}@{ended.digest}"
    say(f"devcontainer.json: built and pushed {image}")
    return image


USER_NAMESPACE_DROPPED = (
    "the cluster dropped the build pod's `hostUsers: false`: it has no user namespaces (Kubernetes 1.33 and later, "
    "or the UserNamespacesSupport feature gate), and a build would run as the node's root, so none ran"
)


async def _until_done(kube: KubeCalls, namespace: str, name: str, timeout_s: float, start_s: float) -> Outcome:
    """Poll the build pod until it ends; a pod none of whose steps starts within `start_s` fails, saying where it is."""
    now = time.monotonic()
    deadline, start_by, started = now + timeout_s, now + start_s, False
    while time.monotonic() < deadline:
        found = await kube.call(
            "reading the build pod", lambda: kube.core.read_namespaced_pod(name, namespace), ok=(404,)
        )
        if found is None:
            return Outcome(step="pod", detail="the build pod was deleted")
        seen = kube.core.api_client.sanitize_for_serialization(found)
        done = outcome(seen)
        if done is not None:
            return done
        started = started or _any_step_started(seen)
        if not started and time.monotonic() > start_by:  # a missing Secret or image pull Secret waits forever
            return Outcome(step="pod", detail=f"it did not start within {start_s:.0f} s: {pods.progress(seen)}")
        await asyncio.sleep(POLL_S)
    return Outcome(step="pod", detail=f"the build took longer than {timeout_s:.0f} s")


def _any_step_started(found: dict[str, Any]) -> bool:
    status = found.get("status") or {}
    steps = [*(status.get("initContainerStatuses") or []), *(status.get("containerStatuses") or [])]
    return any({"running", "terminated"} & (cs.get("state") or {}).keys() for cs in steps)


async def _follow(kube: KubeCalls, namespace: str, name: str, say: Callable[[str], None]) -> None:
    """Each step's output as it comes, step after step (a step not started yet is waited for), up to OUTPUT_CAP bytes.

    Lines are cut at LINE_CAP and written off the event loop in batches: the output is the tenant's.
    """
    budget = [OUTPUT_CAP]
    for step in STEPS:
        while True:
            try:
                answer = cast(
                    Any,
                    await kube.core.read_namespaced_pod_log(
                        name, namespace, container=step, follow=True, _preload_content=False
                    ),
                )
            except Exception as exc:  # not started yet (400), or the API hiccupped: look again
                log.debug("following %s/%s: %s", name, step, exc)
                await asyncio.sleep(POLL_S)
                continue
            try:
                await _relay(answer, step, say, budget)
            except Exception as exc:  # the stream broke: the step's outcome still comes from its status
                log.debug("following %s/%s ended: %s", name, step, exc)
            finally:
                answer.release()
            break


async def _relay(answer: Any, step: str, say: Callable[[str], None], budget: list[int]) -> None:
    pending, lines = b"", []
    async for chunk in answer.content.iter_chunked(1 << 16):
        *whole, pending = (pending + chunk).split(b"\n")
        if len(pending) > LINE_CAP:
            whole, pending = [*whole, pending], b""
        for raw in whole:
            if budget[0] <= 0:
                continue
            budget[0] -= len(raw) + 1
            text = raw[:LINE_CAP].decode("utf-8", "replace").rstrip()
            lines.append(
                f"[{step}] {text}" if budget[0] > 0 else f"[{step}] (output beyond {OUTPUT_CAP >> 20} MiB left out)"
            )
        if lines:
            batch, lines = lines, []
            await asyncio.to_thread(_say_all, say, batch)
    if pending and budget[0] > 0:
        await asyncio.to_thread(say, f"[{step}] {pending[:LINE_CAP].decode('utf-8', 'replace').rstrip()}")


def _say_all(say: Callable[[str], None], lines: list[str]) -> None:
    for line in lines:
        say(line)


async def clean(kube: KubeCalls, namespace: str, name: str) -> None:
    """Delete the build's pod, wait until it is gone, then its token Secret and NetworkPolicy (gone already is fine).

    The policy goes last: while the pod's containers end, the tenant's code keeps its fences.
    """
    deleted = await kube.call(
        "deleting the build pod",
        lambda: kube.core.delete_namespaced_pod(name, namespace, grace_period_seconds=0),
        ok=(404,),
    )
    deadline = time.monotonic() + GONE_S
    while deleted is not None and time.monotonic() < deadline:
        found = await kube.call(
            "reading the build pod", lambda: kube.core.read_namespaced_pod(name, namespace), ok=(404,)
        )
        if found is None:
            break
        await asyncio.sleep(POLL_S)
    await kube.call(
        "deleting the build's Secret", lambda: kube.core.delete_namespaced_secret(name, namespace), ok=(404,)
    )
    await kube.call(
        "deleting the build's NetworkPolicy",
        lambda: kube.networking.delete_namespaced_network_policy(name, namespace),
        ok=(404,),
    )
