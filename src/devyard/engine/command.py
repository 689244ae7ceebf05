"""The command line and environment one workspace's engine runs with."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from devyard.engine.install import Engine

# The engine reads ~/.config/code-server/config.yaml without --config, leaking whatever an admin
# put there into every workspace; each engine gets its own file instead. An empty file is refused.
ENGINE_CONFIG = "auth: none\n"


def engine_argv(
    engine: Engine,
    *,
    socket: Path,
    folder: Path,
    user_data: Path,
    extensions: Path,
    config: Path,
    base_path: str,
    session_socket: Path,
    policies: tuple[str, ...] = (),
) -> list[str]:
    """argv that starts `engine` for one workspace, listening only on `socket`, with admin `policies` (flags)."""
    return [
        str(engine.node),
        str(engine.entry),
        "--socket",
        str(socket),
        "--socket-mode",
        "600",
        "--auth",
        "none",
        "--disable-telemetry",
        "--disable-update-check",
        "--disable-workspace-trust",
        "--config",
        str(config),
        "--user-data-dir",
        str(user_data),
        "--extensions-dir",
        str(extensions),
        "--session-socket",
        str(session_socket),
        *(
            ("--abs-proxy-base-path", base_path.rstrip("/")) if base_path.rstrip("/") else ()
        ),  # a pool engine has none yet
        *policies,
        str(folder),
    ]


def policy_flags(
    *, disable_file_downloads: bool, disable_file_uploads: bool, reconnection_grace_s: int
) -> tuple[str, ...]:
    """code-server flags for the admin policies in force.

    A short reconnection grace ends the extension host of a tab that went away after minutes, not
    the engine's default 3 hours, so closed tabs stop holding its memory.
    """
    return (
        (("--disable-file-downloads",) if disable_file_downloads else ())
        + (("--disable-file-uploads",) if disable_file_uploads else ())
        + ("--reconnection-grace-time", str(reconnection_grace_s))
    )


# What an engine and its terminals get of the manager's environment: nothing but the locale, the
# time zone and PATH (the manager's own secrets, tokens and settings stay its own).
INHERITED = frozenset({"PATH", "LANG", "LANGUAGE", "TZ"})
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def inherited(environ: Mapping[str, str]) -> dict[str, str]:
    """The part of the manager's environment `environ` that engines may see: INHERITED and LC_*."""
    return {k: v for k, v in environ.items() if k in INHERITED or k.startswith("LC_")}


def engine_env(
    engine: Engine,
    *,
    home: Path,
    runtime_dir: Path,
    extra: Mapping[str, str] | None = None,
    base: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """Environment of an engine, built from an allow-list: Node 24 first on PATH, HOME, a private runtime dir, `extra`.

    `base` is the manager's environment (default: this process's), of which only `inherited` passes;
    `extra` holds what the admin gives every engine (engine_env: a proxy, say).
    """
    env = inherited(os.environ if base is None else base)
    env.update(extra or {})
    env["PATH"] = f"{engine.bin_dir}{os.pathsep}{env.get('PATH') or DEFAULT_PATH}"
    env["XDG_RUNTIME_DIR"] = str(runtime_dir)
    env["HOME"] = str(home)
    # Otherwise the server replaces this environment with a login shell's (`bash -ilc env`), whose
    # /etc/profile resets PATH: terminals would lose Node 24 and the tools. The server skips that
    # resolution exactly when VSCODE_CLI=1 (its only use there).
    env["VSCODE_CLI"] = "1"
    return env
