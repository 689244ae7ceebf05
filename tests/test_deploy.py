"""The cluster deployment: what `kubectl kustomize deploy/kubernetes` renders, and the manager image's Dockerfile.

No Docker engine runs on these machines, so the Dockerfile is checked statically: pinned bases,
every file it copies present, a non-root user, the command and port the Deployment expects.
"""

from __future__ import annotations

import ipaddress
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from devyard.backends.base import WorkspaceSpec
from devyard.backends.kubernetes import build_pod as build
from devyard.config import KubernetesSettings, Settings, read_config_file
from devyard.provision.devcontainer import Build

ROOT = Path(__file__).parent.parent
DEPLOY = ROOT / "deploy" / "kubernetes"
# What the kubernetes backend calls (backends/kubernetes/backend.py, watcher.py, build.py): the Role grants it, and no more.
BACKEND_CALLS = {
    ("", "pods"): {"get", "list", "watch", "create", "delete"},
    ("", "pods/log"): {"get"},
    ("", "services"): {"get", "list", "create", "delete"},
    ("", "persistentvolumeclaims"): {"create", "delete"},
    ("", "secrets"): {"create", "delete"},
    ("networking.k8s.io", "networkpolicies"): {"create", "delete"},
    ("metrics.k8s.io", "pods"): {"get"},
}
# What a build calls in its own namespace (backends/kubernetes/build.py).
BUILD_CALLS = {
    ("", "pods"): {"get", "create", "delete"},
    ("", "pods/log"): {"get"},
    ("", "secrets"): {"create", "delete"},
    ("networking.k8s.io", "networkpolicies"): {"create", "delete"},
}


@pytest.fixture(scope="module")
def rendered() -> list[dict[str, Any]]:
    kubectl = shutil.which("kubectl")
    assert kubectl, "kubectl (with kustomize) is needed to render deploy/kubernetes"
    out = subprocess.run([kubectl, "kustomize", str(DEPLOY)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return [doc for doc in yaml.safe_load_all(out.stdout) if doc]


def of_kind(rendered: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = [d for d in rendered if d["kind"] == kind]
    assert len(found) == 1, f"{len(found)} {kind} objects"
    return found[0]


def test_everything_rendered_validates(rendered: list[dict[str, Any]]) -> None:
    kinds = sorted(d["kind"] for d in rendered)
    assert kinds == [
        "ConfigMap",
        "Deployment",
        "Ingress",
        "LimitRange",
        "Namespace",
        "NetworkPolicy",
        "PodDisruptionBudget",
        "ResourceQuota",
        "Role",
        "RoleBinding",
        "Service",
        "ServiceAccount",
    ]
    for doc in rendered:
        kubernetes_validate.validate(doc, kubernetes_validate.latest_version(), strict=True)
        if doc["kind"] != "Namespace":
            assert doc["metadata"]["namespace"] == "devyard"


def test_the_manager_deployment(rendered: list[dict[str, Any]]) -> None:
    deployment = of_kind(rendered, "Deployment")["spec"]
    assert deployment["replicas"] >= 2 and deployment["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    pod = deployment["template"]["spec"]
    labels = deployment["template"]["metadata"]["labels"]
    assert (
        KubernetesSettings().manager_labels.items() <= labels.items()
    )  # the workspaces' NetworkPolicy admits these pods
    assert pod["serviceAccountName"] == "devyard" and pod["securityContext"]["runAsNonRoot"]
    (manager,) = pod["containers"]
    assert not manager["image"].endswith(":latest") and re.search(r":[0-9][^:/]*$", manager["image"]), manager["image"]
    assert manager["readinessProbe"]["httpGet"]["path"] == "/healthz"
    env = {e["name"]: e for e in manager["env"]}
    assert env["DEVYARD_DATABASE_URL"]["valueFrom"]["secretKeyRef"] == {"name": "devyard-database", "key": "url"}
    assert env["DEVYARD_KUBERNETES__SEED_URL"]["value"] == "http://$(POD_IP):8000"
    assert manager["securityContext"]["allowPrivilegeEscalation"] is False
    service = of_kind(rendered, "Service")["spec"]
    assert service["selector"].items() <= labels.items()
    ingress = of_kind(rendered, "Ingress")["metadata"]["annotations"]
    assert (
        int(ingress["nginx.ingress.kubernetes.io/proxy-read-timeout"]) >= 3600
    )  # editor WebSockets stay open for hours
    config = of_kind(rendered, "ConfigMap")
    path = DEPLOY / "devyard.yaml"
    assert config["data"]["devyard.yaml"] == path.read_text()
    settings = Settings(**read_config_file(path))
    assert settings.backend == "kubernetes" and settings.secure_cookies


def test_the_namespace_is_locked_down(rendered: list[dict[str, Any]]) -> None:
    labels = of_kind(rendered, "Namespace")["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
    container = {x["type"]: x for x in of_kind(rendered, "LimitRange")["spec"]["limits"]}["Container"]
    assert {"cpu", "memory"} <= container["default"].keys()  # anything made without limits gets some
    assert {"pods", "limits.memory", "limits.cpu", "requests.storage"} <= of_kind(rendered, "ResourceQuota")["spec"][
        "hard"
    ].keys()
    # The manager is reached by the ingress controller and the workspaces' pods (their first start's seed), nothing else.
    policy = of_kind(rendered, "NetworkPolicy")["spec"]
    assert policy["podSelector"]["matchLabels"] == KubernetesSettings().manager_labels and policy["policyTypes"] == [
        "Ingress"
    ]
    sources = [peer for rule in policy["ingress"] for peer in rule["from"]]
    assert {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}}} in sources
    assert {"podSelector": {"matchLabels": {"app.kubernetes.io/managed-by": "devyard"}}} in sources
    builds = {"kubernetes.io/metadata.name": KubernetesSettings().namespace + "-builds"}
    assert {
        "namespaceSelector": {"matchLabels": builds},
        "podSelector": {"matchLabels": {"app.kubernetes.io/managed-by": "devyard"}},
    } in sources and len(sources) == 3
    # trusted_proxies names the ingress controller, not the pod network the workspaces share with it.
    settings = Settings(**read_config_file(DEPLOY / "devyard.yaml"))
    assert settings.trusted_proxies and all(
        ipaddress.ip_network(n).num_addresses <= 4096 for n in settings.trusted_proxies
    )
    # The manager's own pod meets the restricted profile.
    pod = of_kind(rendered, "Deployment")["spec"]["template"]["spec"]
    assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    for container in pod["containers"]:
        sc = container["securityContext"]
        assert sc["allowPrivilegeEscalation"] is False and sc["capabilities"]["drop"] == ["ALL"]


def granted(rendered: list[dict[str, Any]]) -> dict[tuple[str, str], set[str]]:
    """The verbs the rendered Role grants, by (API group, resource)."""
    found: dict[tuple[str, str], set[str]] = {}
    for rule in of_kind(rendered, "Role")["rules"]:
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                found.setdefault((group, resource), set()).update(rule["verbs"])
    return found


def test_the_role_is_least_privilege(rendered: list[dict[str, Any]]) -> None:
    assert not [d for d in rendered if d["kind"] in ("ClusterRole", "ClusterRoleBinding")]
    assert granted(rendered) == BACKEND_CALLS
    binding = of_kind(rendered, "RoleBinding")
    assert binding["roleRef"]["kind"] == "Role" and binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "devyard", "namespace": "devyard"}
    ]


def test_the_builds_namespace_takes_builds_and_nothing_more() -> None:
    """deploy/kubernetes/builds: the namespace build pods may run in, with the manager's rights there and no more."""
    out = subprocess.run(["kubectl", "kustomize", str(DEPLOY / "builds")], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    rendered = [doc for doc in yaml.safe_load_all(out.stdout) if doc]
    assert {d["metadata"].get("namespace") for d in rendered if d["kind"] != "Namespace"} == {"devyard-builds"}
    assert of_kind(rendered, "Namespace")["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "privileged"
    assert granted(rendered) == BUILD_CALLS
    assert of_kind(rendered, "RoleBinding")["subjects"] == [
        {"kind": "ServiceAccount", "name": "devyard", "namespace": "devyard"}
    ]
    # A build pod as the backend makes it passes the namespace's quota: every container limits every resource.
    k8s = KubernetesSettings(
        devcontainer_build={
            "enabled": True,
            "namespace": "devyard-builds",
            "repository": "registry.example.com/b",
            "push_secret": "push",
        }
    )
    ws = WorkspaceSpec(uid="0123456789ab", owner="alice", name="w", root=Path("/nonexistent"))
    pod = build.pod(ws, k8s, Build(".devcontainer/Dockerfile"), "http://manager:8000/x")
    quota = of_kind(rendered, "ResourceQuota")["spec"]["hard"]
    limited = {key.removeprefix("limits.") for key in quota if key.startswith("limits.")}
    for container in [*pod["spec"]["initContainers"], *pod["spec"]["containers"]]:
        assert limited <= container["resources"]["limits"].keys(), container["name"]
    assert pod["metadata"]["namespace"] == "devyard-builds"
    for doc in [*rendered, pod, build.network_policy(ws, k8s), build.token_secret(ws, k8s, "t")]:
        kubernetes_validate.validate(doc, kubernetes_validate.latest_version(), strict=True)
    policy = build.network_policy(ws, k8s)["spec"]
    manager = policy["egress"][1]["to"][0]
    assert manager["namespaceSelector"] == {"matchLabels": {"kubernetes.io/metadata.name": "devyard"}}


def _instructions(dockerfile: Path) -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", dockerfile.read_text())
    found = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            found.append((word.upper(), rest.strip()))
    return found


def test_dockerfile() -> None:
    steps = _instructions(ROOT / "Dockerfile")
    args = dict(re.match(r"(\w+)=(\S+)", rest).groups() for word, rest in steps if word == "ARG")  # type: ignore[union-attr]
    stages = set()
    for word, rest in steps:
        if word != "FROM":
            continue
        image, *alias = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], rest).split(" AS ")
        stages.update(a.strip() for a in alias)
        name, _, tag = image.strip().rpartition(":")
        assert name and tag and tag != "latest" and re.match(r"\d", tag), f"unpinned base image {image}"
    for word, rest in steps:
        if word in ("COPY", "ADD"):
            assert word == "COPY", "ADD fetches and unpacks implicitly: COPY only"
            parts = rest.split()
            if any(p.startswith("--from=") for p in parts):
                assert parts[0].removeprefix("--from=") in stages | {"node"}
                continue
            for source in parts[:-1]:
                assert (ROOT / source).exists(), f"COPY {source}: no such file in the repository"
    user = [rest for word, rest in steps if word == "USER"][-1]
    assert user.split(":")[0] not in ("root", "0"), "the image must not run as root"
    assert ("EXPOSE", "8000") in steps
    cmd = [rest for word, rest in steps if word == "CMD"][-1]
    assert '"devyard", "up"' in cmd


def test_the_image_installs_the_locked_runtime() -> None:
    def pins(path: Path) -> dict[str, str]:
        return dict(re.findall(r"^([A-Za-z0-9._-]+)==(\S+)", path.read_text(), re.M))

    runtime, everything = pins(ROOT / "deploy" / "requirements.lock"), pins(ROOT / "requirements.lock")
    drift = {
        name: (version, everything.get(name)) for name, version in runtime.items() if everything.get(name) != version
    }
    assert not drift, f"deploy/requirements.lock and requirements.lock disagree: {drift}"
    assert "pytest" not in runtime and "kubernetes-asyncio" in runtime and "asyncpg" in runtime
