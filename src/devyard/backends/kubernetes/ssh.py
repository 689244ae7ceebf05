"""SSH into workspace pods: OpenSSH's sshd brought into the engine container, reached by the manager only.

Engine images (code-server's, a devcontainer.json's) seldom hold sshd, so an init container runs
`kubernetes.ssh_image` (any image with Debian's openssh-server, such as devyard's own) and copies
sshd, the libraries it links and their loader into an `emptyDir`; the engine container starts it
through that loader beside the engine, as the pod's user: the session is the engine's container,
its tools, files, variables and secrets, exactly as the browser terminal. sshd runs unprivileged
(`-r`: no re-exec, which would leave the loader), listens on `ssh_port`, which the workspace's
NetworkPolicy opens to the manager's pods only, and takes only certificates from devyard's user CA.

Its files come from a Secret of their own (`<name>-ssh`, mounted read-only): sshd_config (the
session's variables, secrets included), the host key and certificate, the user CA, and the
`passwd` and `group` mounted over the container's (the image's own may not name the pod's uid; a
session starts in the workspace's folder).
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import PurePosixPath

from devyard.backends.base import Channel, WorkspaceSpec
from devyard.backends.kubernetes.manifests import MOUNT, Manifest, _meta, container_security
from devyard.config import KubernetesSettings
from devyard.errors import BackendError
from devyard.provision import devcontainer
from devyard.ssh import server
from devyard.ssh.keys import Authority, workspace_principal

LOGIN = "devyard"
SSH_MOUNT = "/var/run/devyard/ssh"
BUNDLE = "ssh-bundle"  # the init container, and the emptyDir it fills
BUNDLE_MOUNT = "/opt/devyard-ssh"
SHELL = "/bin/sh"  # every image has it; bash may not be there
# Runs in ssh_image: sshd, each library it links and the loader, into the bundle.
BUNDLE_SCRIPT = f"""set -eu
mkdir -p {BUNDLE_MOUNT}/lib
cp /usr/sbin/sshd {BUNDLE_MOUNT}/sshd
for lib in $(ldd /usr/sbin/sshd | awk '$2 == "=>" && $3 ~ /^\\// {{print $3}}'); do cp -L "$lib" {BUNDLE_MOUNT}/lib/; done
cp -L "$(ldd /usr/sbin/sshd | awk '$1 ~ /^\\/.*ld-linux/ {{print $1}}')" {BUNDLE_MOUNT}/ld.so
"""
# Wraps the engine: sshd beside it (its output in the pod's log), then the engine itself.
RUN_SCRIPT = f"""set -eu
{BUNDLE_MOUNT}/ld.so --library-path {BUNDLE_MOUNT}/lib {BUNDLE_MOUNT}/sshd -D -e -r -f {SSH_MOUNT}/sshd_config \\
  -o "ListenAddress=$DEVYARD_SSH_LISTEN" &
exec "$@"
"""


def enabled(k8s: KubernetesSettings) -> bool:
    """Whether workspace pods take SSH sessions here."""
    return k8s.ssh_image is not None


def secret(ws: WorkspaceSpec, k8s: KubernetesSettings, authority: Authority, agent_forwarding: bool) -> Manifest:
    """The pod's sshd files: its config (with the session's variables), host key, user CA, passwd and group."""
    files = f"{MOUNT}/files"
    given = {"HOME": f"{MOUNT}/home"}
    env = {
        **given,
        **{k: devcontainer.expand(v, given) for k, v in ws.container_env.items()},
        **ws.env,
        "USER": LOGIN,
        "LOGNAME": LOGIN,
    }
    host = authority.host_key(ws.uid, ws.owner, ws.name)
    data = {
        "sshd_config": server.config(PurePosixPath(SSH_MOUNT), env, agent_forwarding),
        "host_key": host.private,
        "host_key-cert.pub": host.certificate,
        "user_ca.pub": authority.user_ca_public + "\n",
        "principals": workspace_principal(ws.uid) + "\n",
        "passwd": f"root:x:0:0:root:/root:{SHELL}\n{LOGIN}:x:{k8s.run_as_user}:{k8s.fs_group}:devyard workspace:"
        f"{files}:{SHELL}\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n",
        "group": f"root:x:0:\n{LOGIN}:x:{k8s.fs_group}:\nnogroup:x:65534:\n",
    }
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": _meta(ws, k8s, "-ssh"),
        "stringData": data,
    }


def add_to_pod(pod: Manifest, ws: WorkspaceSpec, k8s: KubernetesSettings, secret_name: str) -> None:
    """Bring sshd into the pod: the bundle's init container and volume, the Secret's mounts, the engine wrapped."""
    spec = pod["spec"]
    spec["volumes"] += [
        {"name": BUNDLE, "emptyDir": {}},
        {"name": "ssh", "secret": {"secretName": secret_name, "defaultMode": 0o440}},
    ]
    spec["initContainers"].append(
        {
            "name": BUNDLE,
            "image": k8s.ssh_image,
            "imagePullPolicy": k8s.image_pull_policy,
            "command": ["sh", "-c", BUNDLE_SCRIPT],
            "volumeMounts": [{"name": BUNDLE, "mountPath": BUNDLE_MOUNT}],
            "resources": {"requests": {"cpu": "50m", "memory": "32Mi"}, "limits": {"memory": "128Mi"}},
            "securityContext": container_security(),
        }
    )
    engine = spec["containers"][0]
    command = engine["command"]
    engine["command"] = [command[0], "sh", "-c", RUN_SCRIPT, "devyard-ssh", *command[1:]]
    engine["env"].append({"name": "DEVYARD_SSH_LISTEN", "value": f"0.0.0.0:{k8s.ssh_port}"})
    engine["ports"].append({"name": "ssh", "containerPort": k8s.ssh_port, "protocol": "TCP"})
    engine["volumeMounts"] += [
        {"name": BUNDLE, "mountPath": BUNDLE_MOUNT, "readOnly": True},
        {"name": "ssh", "mountPath": SSH_MOUNT, "readOnly": True},
        {"name": "ssh", "mountPath": "/etc/passwd", "subPath": "passwd", "readOnly": True},
        {"name": "ssh", "mountPath": "/etc/group", "subPath": "group", "readOnly": True},
    ]


def wire(
    ws: WorkspaceSpec,
    k8s: KubernetesSettings,
    authority: Authority,
    agent_forwarding: bool,
    policy: Manifest,
    service: Manifest,
) -> Manifest | None:
    """Open the ssh port in the workspace's NetworkPolicy and Service; its SSH Secret (None where pods take no SSH)."""
    if not enabled(k8s):
        return None
    add_to_policy(policy, k8s)
    add_to_service(service, k8s)
    return secret(ws, k8s, authority, agent_forwarding)


def add_to_service(service: Manifest, k8s: KubernetesSettings) -> None:
    """The Service's ssh port."""
    service["spec"]["ports"].append({"name": "ssh", "port": k8s.ssh_port, "targetPort": "ssh", "protocol": "TCP"})


def add_to_policy(policy: Manifest, k8s: KubernetesSettings) -> None:
    """The manager's pods may reach the ssh port too (and nothing else may)."""
    policy["spec"]["ingress"][0]["ports"].append({"protocol": "TCP", "port": k8s.ssh_port})


async def connect(host: str, port: int, ws: WorkspaceSpec) -> Channel:
    """A TCP connection to the pod's sshd."""
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port, limit=1 << 20), timeout=10)
    except (OSError, TimeoutError) as exc:
        raise BackendError(
            f"cannot reach the SSH server of workspace {ws.owner}/{ws.name} at {host}:{port} ({exc}); "
            "a workspace started before SSH was set up takes sessions after its next start",
            code="ssh_unavailable",
        ) from exc

    async def end() -> None:
        writer.close()
        with contextlib.suppress(OSError, ConnectionError):
            await writer.wait_closed()

    return Channel(reader, writer, end)
