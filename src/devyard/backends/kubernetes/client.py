"""Reaching the cluster: which configuration (in-cluster, a kubeconfig) and what its errors mean to devyard.

kubernetes_asyncio raises ApiException (with a Status body) and aiohttp's errors; nothing of them
leaves the backend: `translate` turns each into a BackendError that names the Kubernetes message.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from kubernetes_asyncio import client, config
from kubernetes_asyncio.config.config_exception import ConfigException

from devyard.config import KubernetesSettings
from devyard.errors import BackendError, Invalid

IN_CLUSTER_ENV = "KUBERNETES_SERVICE_HOST"


@dataclass(frozen=True, slots=True)
class Source:
    """Where the cluster's address and credentials come from."""

    kubeconfig: Path | None  # None: in-cluster (the pod's service account)
    context: str | None = None

    def describe(self) -> str:
        """For messages: which configuration this is."""
        return "the in-cluster service account" if self.kubeconfig is None else f"kubeconfig {self.kubeconfig}"


def source(k8s: KubernetesSettings, environ: dict[str, str] | os._Environ[str] = os.environ) -> Source:
    """The configuration to use: kubernetes.kubeconfig, else in-cluster, else $KUBECONFIG, else ~/.kube/config; Invalid when none exists."""
    if k8s.kubeconfig is not None:
        path = k8s.kubeconfig.expanduser()
    elif environ.get(IN_CLUSTER_ENV):
        return Source(None)
    else:
        first = (environ.get("KUBECONFIG") or "").split(os.pathsep)[0]
        path = Path(first).expanduser() if first else Path("~/.kube/config").expanduser()
    if not path.is_file():
        raise Invalid(
            f"backend kubernetes: no cluster to use: {path} does not exist and this is not a pod "
            "(set devyard.kubernetes.kubeconfig or KUBECONFIG)",
            code="kubernetes_not_configured",
        )
    return Source(path, k8s.context)


async def open_client(where: Source) -> client.ApiClient:
    """An API client for the cluster `where` names; BackendError when its configuration cannot be read."""
    cfg = client.Configuration()
    try:
        if where.kubeconfig is None:
            config.load_incluster_config(client_configuration=cfg)  # type: ignore[no-untyped-call]
        else:
            await config.load_kube_config(
                config_file=str(where.kubeconfig), context=where.context, client_configuration=cfg
            )
    except (ConfigException, OSError, ValueError) as exc:
        raise BackendError(f"cannot use {where.describe()}: {exc}", code="kubernetes_not_configured") from exc
    return client.ApiClient(configuration=cfg)


def translate(exc: BaseException, doing: str) -> BackendError:
    """A BackendError for a failed API call, with Kubernetes' own message."""
    if isinstance(exc, client.ApiException):
        return BackendError(f"Kubernetes refused {doing}: {message(exc)}", code="kubernetes_error")
    if isinstance(exc, (aiohttp.ClientError, OSError, TimeoutError)):
        return BackendError(
            f"the Kubernetes API could not be reached while {doing}: {exc or type(exc).__name__}",
            code="kubernetes_unreachable",
        )
    return BackendError(f"{doing} failed: {exc}", code="kubernetes_error")


def message(exc: client.ApiException) -> str:
    """The `message` of the API's Status answer, else the HTTP status and reason."""
    try:
        said: Any = json.loads(exc.body or "")
        if isinstance(said, dict) and said.get("message"):
            return str(said["message"])
    except (TypeError, ValueError):
        pass
    return f"{exc.status} {exc.reason}"


def status_of(exc: BaseException) -> int | None:
    """The HTTP status of an API error (None for anything else)."""
    return exc.status if isinstance(exc, client.ApiException) else None
