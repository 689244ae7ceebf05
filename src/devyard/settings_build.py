"""The setting that lets a devcontainer.json's `build` make its workspace's image on Kubernetes (`kubernetes.devcontainer_build`).

Kept out of settings_parts.py for its size; docs/devcontainer.md says how a build runs and what an
admin must provide (a repository to push to, a Secret that may push there).
"""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field, model_validator

QUANTITY = r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|k|M|G|T)?$"
# An image repository without a tag or digest: host[:port]/path, as a pod's `image` takes it.
REPOSITORY = re.compile(r"^[A-Za-z0-9.-]+(:[0-9]+)?(/[a-z0-9]+([._-][a-z0-9]+)*)+$")


class DevcontainerBuildSettings(BaseModel):
    """Whether and how a devcontainer.json's `build` is built in the cluster (off by default)."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(
        default=False,
        description="Build the image a devcontainer.json's `build` names, in a pod of the cluster, and run the "
        "workspace in it. Off: `build` is listed as unsupported.",
    )
    repository: str = Field(
        default="",
        description="Where built images are pushed, as <registry>/<path> (no tag): each workspace's image is "
        "<repository>:<workspace uid> and its pod runs it by digest. Required when enabled.",
    )
    push_secret: str | None = Field(
        default=None,
        description="A kubernetes.io/dockerconfigjson Secret in the build pods' namespace that may push to "
        "`repository`; only the push step sees it, never the build. Required when enabled: a registry that takes "
        "anonymous pushes or pulls would let one tenant's build read or replace another's image.",
    )
    namespace: str | None = Field(
        default=None,
        pattern=r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$",
        description="The namespace build pods run in (None: kubernetes.namespace). A build's root passes no Pod "
        "Security `restricted` check, which deploy/kubernetes puts on the workspaces' namespace: give builds a "
        "namespace of their own (deploy/kubernetes/builds).",
    )
    builder_image: str = Field(
        default="quay.io/containers/buildah:v1.41.5",
        description="The image that builds (buildah, with its chroot isolation and vfs storage).",
    )
    push_image: str = Field(
        default="quay.io/skopeo/stable:v1.18.0", description="The image that pushes the built image (skopeo)."
    )
    registry_tls_verify: bool = Field(
        default=True, description="Verify the registry's TLS certificate when pushing (false: a plain-HTTP registry)."
    )
    timeout_s: float = Field(default=1800.0, gt=0, description="How long a build may take, pulls and push included.")
    cpu: str = Field(default="2", pattern=r"^[0-9]+(\.[0-9]+)?m?$", description="CPU limit of a build pod.")
    memory: str = Field(default="4Gi", pattern=QUANTITY, description="Memory limit of a build pod.")
    disk: str = Field(
        default="20Gi", pattern=QUANTITY, description="Ephemeral storage limit of a build pod (layers, the image)."
    )
    max_context_mb: int = Field(
        default=512, ge=1, description="The largest build context (the files the build sees) the manager sends, in MB."
    )

    @model_validator(mode="after")
    def _repository(self) -> DevcontainerBuildSettings:
        if self.enabled and not self.repository:
            raise ValueError("repository is needed when enabled (where built images are pushed)")
        if self.enabled and not self.push_secret:
            raise ValueError(
                "push_secret is needed when enabled: the registry must refuse anonymous pushes and pulls, or one "
                "tenant's build could read or replace another's image"
            )
        if self.repository and not REPOSITORY.match(self.repository):
            raise ValueError(f"repository {self.repository!r} is not <registry>/<path> without a tag")
        return self
