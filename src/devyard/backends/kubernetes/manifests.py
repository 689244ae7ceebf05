"""The Kubernetes objects of one workspace, as plain manifests (dicts): pure functions, no API calls.

Per workspace `dy-<uid>`: a PersistentVolumeClaim (files, home, user-data, extensions), a Pod
running the engine image, a ClusterIP Service in front of it, a NetworkPolicy that lets only the
manager's pods reach the engine port and lets the engine reach only the internet, the cluster's
DNS and the manager, and two Secrets: `-env` (the owner's secret variables, the
engine's environment) and `-init` (secret files and the one-time seed token, read by the init
container only, so neither reaches the user's terminals as a variable).

Every object carries `metadata.namespace` (an API server fills it from the URL, but watches filter
on the object's own) and the labels the backend finds its objects by after a manager restart.
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Mapping
from typing import Any

from devyard.backends.base import Limits, WorkspaceSpec
from devyard.config import KubernetesSettings

MANAGED_BY = "app.kubernetes.io/managed-by"
OWNER = "devyard.io/owner"
WORKSPACE = "devyard.io/workspace"
UID = "devyard.io/uid"
SELECTOR = f"{MANAGED_BY}=devyard,{UID}"  # every engine pod devyard made, whoever's
MOUNT = "/workspace"  # where the volume is mounted: files/, home/, data/, extensions/
INIT_MOUNT = "/var/run/devyard/init"
ENGINE = "engine"  # the engine container's name
PREPARE = "prepare"  # the init container's name
FILES_LIST = "files.list"  # in the -init Secret: "<key> <path in home>" per secret file
REMOVED_LIST = "removed.list"  # in the -init Secret: paths in home to delete
SEED_TOKEN = "seed-token"
Manifest = dict[str, Any]

# Runs in the engine image before the engine: the volume's folders, the engine's own config file
# (without it code-server makes one with a password in $HOME), what provisioning made (fetched
# from the manager once, on the first start), and the owner's secret files, mode 0600.
PREPARE_SCRIPT = r"""set -eu
cd /workspace
mkdir -p files home data/User extensions home/.config/code-server
printf 'auth: none\n' > home/.config/code-server/config.yaml
if [ -n "${DEVYARD_SEED_URL:-}" ]; then
  echo "devyard: fetching what provisioning made from the manager"
  curl -fsS --retry 5 --retry-connrefused -H "Authorization: Bearer $(cat /var/run/devyard/init/seed-token)" "$DEVYARD_SEED_URL" \
    | tar -xzf - -C /workspace --no-same-owner
fi
if [ -f /var/run/devyard/init/removed.list ]; then
  while IFS= read -r path; do rm -f "home/$path"; done < /var/run/devyard/init/removed.list
fi
if [ -f /var/run/devyard/init/files.list ]; then
  while IFS=' ' read -r key path; do
    mkdir -p "$(dirname "home/$path")"
    rm -f "home/$path"
    (umask 077; cat "/var/run/devyard/init/$key" > "home/$path")
  done < /var/run/devyard/init/files.list
fi
"""


def name_of(uid: str) -> str:
    """The name shared by a workspace's objects."""
    return f"dy-{uid}"


def labels(ws: WorkspaceSpec) -> dict[str, str]:
    """What every object of the workspace is labelled with."""
    return {MANAGED_BY: "devyard", OWNER: ws.owner, WORKSPACE: ws.name, UID: ws.uid}


def _meta(ws: WorkspaceSpec, k8s: KubernetesSettings, suffix: str = "") -> Manifest:
    return {"name": name_of(ws.uid) + suffix, "namespace": k8s.namespace, "labels": labels(ws)}


def volume_size(limits: Limits, k8s: KubernetesSettings) -> str:
    """The volume's size: the size preset's disk, else the configured default."""
    return f"{math.ceil(limits.disk_bytes / (1 << 20))}Mi" if limits.disk_bytes else k8s.storage


def volume_claim(ws: WorkspaceSpec, k8s: KubernetesSettings) -> Manifest:
    """The workspace's volume; it outlives stops and, with keep_files, the workspace."""
    spec: Manifest = {
        "accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": volume_size(ws.limits, k8s)}},
    }
    if k8s.storage_class:
        spec["storageClassName"] = k8s.storage_class
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": _meta(ws, k8s), "spec": spec}


def service(ws: WorkspaceSpec, k8s: KubernetesSettings) -> Manifest:
    """The engine's stable in-cluster address."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(ws, k8s),
        "spec": {
            "type": "ClusterIP",
            "selector": {UID: ws.uid},
            "ports": [{"name": "http", "port": k8s.engine_port, "targetPort": "http", "protocol": "TCP"}],
        },
    }


def egress_blocks(k8s: KubernetesSettings) -> list[Manifest]:
    """`ipBlock` peers: each allowed network, less the denied ones inside it (a NetworkPolicy's `except` must lie within its `cidr`)."""
    denied = [ipaddress.ip_network(d) for d in k8s.egress_deny]
    blocks = []
    for allowed in map(ipaddress.ip_network, k8s.egress_allow):
        same = [d for d in denied if d.version == allowed.version]
        if any(allowed.subnet_of(d) for d in same):  # type: ignore[arg-type]
            continue  # all of it denied
        inside = [str(d) for d in same if d.subnet_of(allowed)]  # type: ignore[arg-type]
        blocks.append({"ipBlock": {"cidr": str(allowed), **({"except": inside} if inside else {})}})
    return blocks


def network_policy(ws: WorkspaceSpec, k8s: KubernetesSettings) -> Manifest:
    """Only the manager's pods may reach the engine; the engine reaches the internet, the cluster's DNS and the manager, nothing else.

    Out of reach by default (egress_deny): other pods and services, the manager's database, the
    nodes, and cloud metadata at 169.254.169.254, as on a host the sandbox keeps them out.
    """
    admitted = [
        {
            "from": [{"podSelector": {"matchLabels": dict(k8s.manager_labels)}}],
            "ports": [{"protocol": "TCP", "port": k8s.engine_port}],
        }
    ]
    return policy(_meta(ws, k8s), {UID: ws.uid}, admitted, egress_rules(k8s))


def policy(meta: Manifest, selected: dict[str, str], ingress: list[Manifest], egress: list[Manifest]) -> Manifest:
    """A NetworkPolicy for the pods labelled `selected`: only `ingress` in, only `egress` out."""
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": meta,
        "spec": {
            "podSelector": {"matchLabels": selected},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": ingress,
            "egress": egress,
        },
    }


def egress_rules(k8s: KubernetesSettings, elsewhere: bool = False) -> list[Manifest]:
    """Where a workspace's pods (its engine, its image's build) may connect: the cluster's DNS, the manager, the allowed networks.

    `elsewhere`: the policy is in another namespace than the manager's (a build namespace).
    """
    dns = [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]
    manager: Manifest = {"podSelector": {"matchLabels": dict(k8s.manager_labels)}}
    if elsewhere:
        manager["namespaceSelector"] = {"matchLabels": {"kubernetes.io/metadata.name": k8s.namespace}}
    return [
        {"to": [{"namespaceSelector": {}, "podSelector": {"matchLabels": dict(k8s.dns_labels)}}], "ports": dns},
        # The first start fetches what provisioning made from a manager replica (a build, its context).
        {"to": [manager]},
        *([{"to": blocks}] if (blocks := egress_blocks(k8s)) else []),
    ]


def env_secret(ws: WorkspaceSpec, k8s: KubernetesSettings) -> Manifest:
    """The owner's secret variables, the engine's environment."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": _meta(ws, k8s, "-env"),
        "stringData": dict(ws.env),
    }


def init_secret(ws: WorkspaceSpec, k8s: KubernetesSettings, seed_token: str | None, remove: list[str]) -> Manifest:
    """What only the init container reads: secret files (keys f0, f1, … listed in files.list), paths to remove, the seed token."""
    data: dict[str, str] = {}
    listed = []
    for n, (path, content) in enumerate(sorted(ws.files.items())):
        data[f"f{n}"] = content
        listed.append(f"f{n} {path}")
    if listed:
        data[FILES_LIST] = "\n".join(listed) + "\n"
    if remove:
        data[REMOVED_LIST] = "\n".join(remove) + "\n"
    if seed_token:
        data[SEED_TOKEN] = seed_token
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": _meta(ws, k8s, "-init"),
        "stringData": data,
    }


def resources(limits: Limits, k8s: KubernetesSettings) -> Manifest:
    """Requests and limits from the size preset (the defaults where it names none: every pod is limited).

    Memory is requested as limited (no eviction below it); a quarter of the CPUs is requested.
    """
    memory = f"{math.ceil(limits.memory_bytes / (1 << 20))}Mi" if limits.memory_bytes else k8s.default_memory
    cpu = f"{math.ceil(limits.cpus * 1000)}m" if limits.cpus else k8s.default_cpu
    request_cpu = f"{max(100, math.ceil(limits.cpus * 250))}m" if limits.cpus else "100m"
    return {"requests": {"cpu": request_cpu, "memory": memory}, "limits": {"cpu": cpu, "memory": memory}}


def engine_args(
    ws: WorkspaceSpec, k8s: KubernetesSettings, policies: tuple[str, ...], proxy_uri: str | None = None
) -> list[str]:
    """code-server's arguments in the pod: every interface on the engine port, behind the gateway's base path (path mode)."""
    return [
        "--bind-addr",
        f"0.0.0.0:{k8s.engine_port}",
        "--auth",
        "none",
        "--disable-telemetry",
        "--disable-update-check",
        "--disable-workspace-trust",
        "--config",
        f"{MOUNT}/home/.config/code-server/config.yaml",
        "--user-data-dir",
        f"{MOUNT}/data",
        "--extensions-dir",
        f"{MOUNT}/extensions",
        *(
            ("--abs-proxy-base-path", ws.base_path.rstrip("/")) if proxy_uri is None else ()
        ),  # on its own origin the base is /
        *policies,
        f"{MOUNT}/files",
    ]


ENGINE_COPY = "engine"  # the init container that copies the engine into a devcontainer image's pod
ENGINE_MOUNT = "/opt/devyard-engine"
# Runs in the engine image: code-server (with its own Node) and dumb-init, for a pod whose image has neither.
COPY_SCRIPT = f"""set -eu
cp -a "$DEVYARD_ENGINE_HOME" {ENGINE_MOUNT}/code-server
cp "$(command -v dumb-init)" {ENGINE_MOUNT}/dumb-init
"""
# Wraps the engine when the devcontainer.json has commands: postCreateCommand once (a marker in the
# volume says it ran), postStartCommand beside the engine at every start; then the engine itself.
# A failed postCreateCommand ends the pod, so the workspace fails with its output in the log.
HOOKS_SCRIPT = f"""set -eu
if [ -n "${{DEVYARD_POST_CREATE:-}}" ] && [ ! -e {MOUNT}/data/.devyard-post-create-done ]; then
  echo "--- devyard: postCreateCommand ---"
  sh -c "$DEVYARD_POST_CREATE"
  touch {MOUNT}/data/.devyard-post-create-done
fi
if [ -n "${{DEVYARD_POST_START:-}}" ]; then
  echo "--- devyard: postStartCommand ---"
  ( sh -c "$DEVYARD_POST_START"; echo "--- devyard: postStartCommand exited with status $? ---" ) &
fi
exec "$@"
"""


def container_env(ws: WorkspaceSpec) -> list[Manifest]:
    """The devcontainer.json's variables for the engine container (`${containerEnv:X}` as Kubernetes' `$(X)`).

    A variable the owner's secrets also set is left out: in a pod, `env` would beat their `envFrom`.
    """
    env = [
        {
            "name": name,
            "value": re.sub(r"\$\{(?:containerEnv|remoteEnv|env):([A-Za-z_][A-Za-z0-9_]*)\}", r"$(\1)", value),
        }
        for name, value in ws.container_env.items()
        if name not in ws.env
    ]
    hooks = (("DEVYARD_POST_CREATE", ws.post_create), ("DEVYARD_POST_START", ws.post_start))
    return env + [{"name": name, "value": command} for name, command in hooks if command]


def container_security() -> Manifest:
    return {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}, "runAsNonRoot": True}


def pod(
    ws: WorkspaceSpec,
    k8s: KubernetesSettings,
    policies: tuple[str, ...],
    seed_url: str | None,
    proxy_uri: str | None = None,
) -> Manifest:
    """The engine's pod. restartPolicy Never: a crash or OOM kill is the manager's to handle (backoff, crash loop, out_of_memory), as on a host."""
    volumes: list[Manifest] = [
        {"name": "workspace", "persistentVolumeClaim": {"claimName": name_of(ws.uid)}},
        {"name": "init", "secret": {"secretName": name_of(ws.uid) + "-init", "defaultMode": 0o400}},
    ]
    init_env = [{"name": "DEVYARD_SEED_URL", "value": seed_url}] if seed_url else []
    image = {"image": k8s.image, "imagePullPolicy": k8s.image_pull_policy}
    command = list(k8s.engine_command)
    mounts: list[Manifest] = [{"name": "workspace", "mountPath": MOUNT}]
    copies: list[Manifest] = []
    if ws.image:  # the devcontainer.json's image, with devyard's engine brought in from the engine image
        volumes.append({"name": ENGINE_COPY, "emptyDir": {}})
        mounts.append({"name": ENGINE_COPY, "mountPath": ENGINE_MOUNT, "readOnly": True})
        command = [f"{ENGINE_MOUNT}/dumb-init", f"{ENGINE_MOUNT}/code-server/bin/code-server"]
        copies.append(
            {
                "name": ENGINE_COPY,
                **image,
                "command": ["sh", "-c", COPY_SCRIPT],
                "env": [{"name": "DEVYARD_ENGINE_HOME", "value": k8s.engine_home}],
                "volumeMounts": [{"name": ENGINE_COPY, "mountPath": ENGINE_MOUNT}],
                "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {"memory": "256Mi"}},
                "securityContext": container_security(),
            }
        )
    if ws.post_create or ws.post_start:
        command = [command[0], "sh", "-c", HOOKS_SCRIPT, "devyard-engine", *command[1:]]
    spec: Manifest = {
        "restartPolicy": "Never",
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "terminationGracePeriodSeconds": 10,
        "securityContext": {
            "runAsUser": k8s.run_as_user,
            "runAsGroup": k8s.fs_group,
            "runAsNonRoot": True,
            "fsGroup": k8s.fs_group,
            "fsGroupChangePolicy": "OnRootMismatch",
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "initContainers": [
            {
                "name": PREPARE,
                **image,
                "command": ["sh", "-c", PREPARE_SCRIPT],
                "env": init_env,
                "volumeMounts": [
                    {"name": "workspace", "mountPath": MOUNT},
                    {"name": "init", "mountPath": INIT_MOUNT, "readOnly": True},
                ],
                "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "512Mi"}},
                "securityContext": container_security(),
            },
            *copies,
        ],
        "containers": [
            {
                "name": ENGINE,
                **image,
                **({"image": ws.image} if ws.image else {}),
                "command": command,
                "args": engine_args(ws, k8s, policies, proxy_uri),
                "workingDir": f"{MOUNT}/files",
                "env": [
                    {"name": "HOME", "value": f"{MOUNT}/home"},
                    {"name": "VSCODE_CLI", "value": "1"},
                    *([{"name": "VSCODE_PROXY_URI", "value": proxy_uri}] if proxy_uri else []),
                    *container_env(ws),
                ],
                "envFrom": [{"secretRef": {"name": name_of(ws.uid) + "-env"}}],
                "ports": [{"name": "http", "containerPort": k8s.engine_port, "protocol": "TCP"}],
                "readinessProbe": {
                    "httpGet": {"path": "/healthz", "port": "http"},
                    "periodSeconds": 2,
                    "failureThreshold": 3,
                },
                "resources": resources(ws.limits, k8s),
                "securityContext": container_security(),
                "volumeMounts": mounts,
            }
        ],
        "volumes": volumes,
    }
    if k8s.image_pull_secrets:
        spec["imagePullSecrets"] = [{"name": n} for n in k8s.image_pull_secrets]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": _meta(ws, k8s), "spec": spec}


def owned_by(obj: Mapping[str, Any]) -> str | None:
    """The workspace uid an object's labels name, when devyard made it; None otherwise."""
    found = (obj.get("metadata") or {}).get("labels") or {}
    return found.get(UID) if found.get(MANAGED_BY) == "devyard" else None
