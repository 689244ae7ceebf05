"""Build prerequisites of the engine (native modules compile with node-gyp) and installing them.

Debian package names are the contract: build-essential, pkg-config, python3, libkrb5-dev.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from devyard.errors import EngineError


@dataclass(frozen=True)
class Prerequisite:
    """One Debian package and how to tell it is there."""

    package: str
    commands: tuple[str, ...] = ()
    files: tuple[str, ...] = ()

    def present(self) -> bool:
        """Whether every command is on PATH and every file exists."""
        return all(shutil.which(c) for c in self.commands) and all(Path(f).exists() for f in self.files)


BUILD_PREREQUISITES = (
    Prerequisite("build-essential", commands=("gcc", "g++", "make")),
    Prerequisite("pkg-config", commands=("pkg-config",)),
    Prerequisite("python3", commands=("python3",)),
    Prerequisite("libkrb5-dev", files=("/usr/include/gssapi/gssapi.h",)),
)


def missing(prereqs: tuple[Prerequisite, ...] = BUILD_PREREQUISITES) -> list[str]:
    """Debian packages among `prereqs` that are not installed."""
    return [p.package for p in prereqs if not p.present()]


def apt_command(packages: list[str]) -> str:
    """The exact command a person should run to install `packages`."""
    sudo = "" if os.geteuid() == 0 else "sudo "
    return f"{sudo}apt-get update && {sudo}apt-get install -y {' '.join(packages)}"


def can_install_itself() -> bool:
    """Whether devyard may run apt-get itself: root on a Debian-like system."""
    return os.geteuid() == 0 and shutil.which("apt-get") is not None


def ensure(packages: list[str], log: Callable[[str], None]) -> None:
    """Install missing Debian packages when root; otherwise raise EngineError naming the command."""
    if not packages:
        return
    if not can_install_itself():
        raise EngineError(
            f"missing build prerequisites {', '.join(packages)}; run: {apt_command(packages)}",
            code="prerequisites_missing",
        )
    log(f"installing Debian packages: {' '.join(packages)}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for argv in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", *packages]):
        result = subprocess.run(argv, env=env, capture_output=True, text=True)
        if result.returncode != 0:
            tail = (result.stderr or result.stdout).strip().splitlines()[-3:]
            raise EngineError(f"`{' '.join(argv)}` failed: {' / '.join(tail)}", code="prerequisites_install_failed")
