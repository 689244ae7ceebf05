"""The settings of SSH into workspaces (devyard ssh, config-ssh; docs/ssh.md).

A mixin of Settings (config.py), so each stays a top-level key of the `devyard:` block and a
DEVYARD_* variable like every other; kept here to keep config.py within its size.
"""

from __future__ import annotations

from pydantic import BaseModel, Field


class SshSettings(BaseModel):
    """Fields of Settings about SSH; each is documented in docs/config.md."""

    ssh_agent_forwarding: bool = Field(
        False,
        description="Let SSH sessions forward the developer's ssh-agent into workspaces (`ssh -A`); off by default: anything running as the workspace's account could use the agent while the session lasts.",
    )
    ssh_certificate_minutes: int = Field(
        5,
        ge=1,
        le=1440,
        description="How long the SSH user certificates devyard signs for one session's key are valid, in minutes (a session outlives its certificate; revoking access ends it).",
    )
