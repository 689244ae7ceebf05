"""The objects of one devcontainer build (build.py): its pod, its NetworkPolicy and its token Secret.

Pure functions, no API calls, as manifests.py is for a workspace's own objects; build.py says why
the pod is made this way.
"""

from __future__ import annotations

from devyard.backends.base import WorkspaceSpec
from devyard.backends.kubernetes.manifests import (
    OWNER,
    WORKSPACE,
    Manifest,
    container_security,
    egress_rules,
    name_of,
    policy,
)
from devyard.config import KubernetesSettings
from devyard.provision.devcontainer import Build

BUILD_LABEL = "devyard.io/build"  # not devyard.io/uid: the engine pod watch must not take a build pod for the engine
STEPS = ("context", "build", "push")
CONTEXT_MOUNT, OUT_MOUNT, STORAGE_MOUNT = "/build", "/out", "/var/lib/containers"
TOKEN_MOUNT, AUTH_MOUNT = "/var/run/devyard/build", "/var/run/devyard/push"
LOCAL_TAG = "localhost/devyard-build"

CONTEXT_SCRIPT = f"""set -eu
echo "devyard: fetching the build context from the manager"
curl -fsS --retry 5 --retry-connrefused -H "Authorization: Bearer $(cat {TOKEN_MOUNT}/token)" "$DEVYARD_CONTEXT_URL" \\
  | tar -xzf - -C {CONTEXT_MOUNT} --no-same-owner
"""
# "$@": --file, --tag, --build-arg and --target, each one argument (the tenant's values never meet a shell).
BUILD_SCRIPT = f"""set -eu
store="--storage-driver=vfs --root={STORAGE_MOUNT}/storage --runroot={STORAGE_MOUNT}/run"
buildah $store build --isolation=chroot --layers=false "$@" {CONTEXT_MOUNT}/context
buildah $store push {LOCAL_TAG} oci-archive:{OUT_MOUNT}/image.tar
"""


def context_url(base: str, uid: str) -> str:
    """Where the build pod fetches workspace `uid`'s build context, below the manager's base URL."""
    return f"{base.rstrip('/')}/api/v1/internal/build-context/{uid}"


def pod_name(uid: str) -> str:
    """The build pod's name (also its NetworkPolicy's and its token Secret's)."""
    return name_of(uid) + "-build"


def pod(ws: WorkspaceSpec, k8s: KubernetesSettings, build: Build, context_url: str) -> Manifest:
    """The build pod: fetch the context, build it (no credentials), push it (the push Secret only)."""
    b = k8s.devcontainer_build
    args = [
        f"--file={CONTEXT_MOUNT}/Dockerfile",
        f"--tag={LOCAL_TAG}",
        *(f"--build-arg={k}={v}" for k, v in build.args.items()),
        *([f"--target={build.target}"] if build.target else []),
    ]
    push = ["skopeo", "copy", "--digestfile=/dev/termination-log"]
    push += [f"--authfile={AUTH_MOUNT}/config.json"] if b.push_secret else []
    push += [] if b.registry_tls_verify else ["--dest-tls-verify=false"]
    push += [f"oci-archive:{OUT_MOUNT}/image.tar", f"docker://{b.repository}:{ws.uid}"]
    # The build's root, in the pod's own user namespace (never the node's: build.py refuses a pod whose
    # `hostUsers: false` the cluster dropped), gets what buildah's chroot isolation takes: a mount
    # namespace for each RUN (SYS_ADMIN, and AppArmor's default profile denies mount), setuid for `sudo`.
    caps = ["CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID", "SETFCAP", "SYS_CHROOT"]
    caps += ["SYS_ADMIN", "MKNOD"]
    volumes: list[Manifest] = [
        {"name": "context", "emptyDir": {}},
        {"name": "storage", "emptyDir": {}},
        {"name": "out", "emptyDir": {}},
        {"name": "tmp", "emptyDir": {}},
        {"name": "token", "secret": {"secretName": pod_name(ws.uid), "defaultMode": 0o440}},
    ]
    push_mounts = [{"name": "out", "mountPath": OUT_MOUNT, "readOnly": True}, {"name": "tmp", "mountPath": "/var/tmp"}]
    if b.push_secret:
        items = [{"key": ".dockerconfigjson", "path": "config.json"}]
        volumes.append({"name": "push", "secret": {"secretName": b.push_secret, "defaultMode": 0o440, "items": items}})
        push_mounts.append({"name": "push", "mountPath": AUTH_MOUNT, "readOnly": True})
    # Every resource limited, so that a namespace's ResourceQuota (deploy/kubernetes/builds) admits the pod.
    small = {
        "requests": {"cpu": "100m", "memory": "64Mi"},
        "limits": {"cpu": "1", "memory": "512Mi", "ephemeral-storage": "1Gi"},
    }
    spec: Manifest = {
        "restartPolicy": "Never",
        "hostUsers": False,
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "activeDeadlineSeconds": max(1, int(b.timeout_s)),
        "securityContext": {"fsGroup": k8s.fs_group, "seccompProfile": {"type": "RuntimeDefault"}},
        "initContainers": [
            {
                "name": "context",
                "image": k8s.image,
                "imagePullPolicy": k8s.image_pull_policy,
                "command": ["sh", "-c", CONTEXT_SCRIPT],
                "env": [{"name": "DEVYARD_CONTEXT_URL", "value": context_url}],
                "volumeMounts": [
                    {"name": "context", "mountPath": CONTEXT_MOUNT},
                    {"name": "token", "mountPath": TOKEN_MOUNT, "readOnly": True},
                ],
                "resources": small,
                "securityContext": {**container_security(), "runAsUser": k8s.run_as_user},
            },
            {
                "name": "build",
                "image": b.builder_image,
                "imagePullPolicy": k8s.image_pull_policy,
                "command": ["sh", "-c", BUILD_SCRIPT, "devyard-build", *args],
                "env": [{"name": "BUILDAH_ISOLATION", "value": "chroot"}],
                "volumeMounts": [
                    {"name": "context", "mountPath": CONTEXT_MOUNT, "readOnly": True},
                    {"name": "storage", "mountPath": STORAGE_MOUNT},
                    {"name": "out", "mountPath": OUT_MOUNT},
                ],
                "resources": {
                    "requests": {"cpu": "250m", "memory": "256Mi"},
                    "limits": {"cpu": b.cpu, "memory": b.memory, "ephemeral-storage": b.disk},
                },
                "securityContext": {
                    "runAsUser": 0,
                    "runAsGroup": 0,
                    "runAsNonRoot": False,
                    "allowPrivilegeEscalation": True,
                    "capabilities": {"drop": ["ALL"], "add": caps},
                    "appArmorProfile": {"type": "Unconfined"},
                },
            },
        ],
        "containers": [
            {
                "name": "push",
                "image": b.push_image,
                "imagePullPolicy": k8s.image_pull_policy,
                "command": push,
                "volumeMounts": push_mounts,
                "resources": small,
                "securityContext": {**container_security(), "runAsUser": k8s.run_as_user},
            }
        ],
        "volumes": volumes,
    }
    if k8s.image_pull_secrets:
        spec["imagePullSecrets"] = [{"name": n} for n in k8s.image_pull_secrets]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": _meta(ws, k8s), "spec": spec}


def network_policy(ws: WorkspaceSpec, k8s: KubernetesSettings) -> Manifest:
    """Nothing reaches the build pod; it reaches what an engine may (DNS, the manager, the allowed networks: the registries)."""
    egress = egress_rules(k8s, elsewhere=namespace_of(k8s) != k8s.namespace)
    return policy(_meta(ws, k8s), {BUILD_LABEL: ws.uid}, [], egress)


def token_secret(ws: WorkspaceSpec, k8s: KubernetesSettings, token: str) -> Manifest:
    """The token (good for this build only) the context step fetches the context with."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": _meta(ws, k8s),
        "stringData": {"token": token},
    }


def _meta(ws: WorkspaceSpec, k8s: KubernetesSettings) -> Manifest:
    labels = {"app.kubernetes.io/managed-by": "devyard", BUILD_LABEL: ws.uid, OWNER: ws.owner, WORKSPACE: ws.name}
    return {"name": pod_name(ws.uid), "namespace": namespace_of(k8s), "labels": labels}


def namespace_of(k8s: KubernetesSettings) -> str:
    """Where build pods run: their own namespace, else the workspaces'."""
    return k8s.devcontainer_build.namespace or k8s.namespace
