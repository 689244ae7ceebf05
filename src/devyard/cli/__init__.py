"""The `devyard` command: thin wrappers that parse, call and print; errors: one line, exit 1 (a refused configuration: 2)."""

from __future__ import annotations

import asyncio
import logging
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.panel import Panel

from devyard import __version__, logs
from devyard.apiclient import Api
from devyard.auth.users import ensure_admin
from devyard.cli import ssh as ssh_cli
from devyard.cli import usage as usage_cli
from devyard.cli import ws_access as _ws_access  # noqa: F401  (adds `ws share` … `ws open`)
from devyard.cli import ws_time
from devyard.cli.accounts import audit_command, token_app, user_app
from devyard.cli.groups import group_app
from devyard.cli.secrets import secret_app
from devyard.cli.ws import ws_app
from devyard.config import CONFIG_ERRORS, DEFAULT_DATA_DIR, Settings, load_settings
from devyard.doctor import run_checks
from devyard.engine import install
from devyard.errors import DevyardError
from devyard.provision import resolve_groups
from devyard.provision.check import check_group
from devyard.store.db import migrate_apart, open_engine, sessionmaker

# isort: split
# After ws_access, so `ws --help` lists `ws backup` and `ws restore` last.
from devyard.cli import backups as _backups  # noqa: F401  (adds `ws backup` and `ws restore`)

app = typer.Typer(
    help="devyard: VS Code in the browser for teams.", no_args_is_help=True, pretty_exceptions_enable=False
)
engine_app = typer.Typer(help="Manage the code-server engine.", no_args_is_help=True)
extensions_app = typer.Typer(help="Check the configured extension groups.", no_args_is_help=True)
app.add_typer(engine_app, name="engine")
app.add_typer(extensions_app, name="extensions")
app.add_typer(user_app, name="user")
app.add_typer(token_app, name="token")
app.add_typer(ws_app, name="ws")
app.add_typer(secret_app, name="secret")
app.add_typer(group_app, name="group")
app.command("audit")(audit_command)
app.command("timezone")(ws_time.timezone)
app.command("dormancy")(ws_time.dormancy)
app.command("usage")(usage_cli.usage)
app.command("ssh", context_settings={"allow_interspersed_args": False})(ssh_cli.ssh)
app.command("config-ssh")(ssh_cli.config_ssh)
console = Console()
err = Console(stderr=True)

ConfigOpt = Annotated[Path | None, typer.Option("--config", help="devyard.yaml to read.", exists=True, dir_okay=False)]
DataDirOpt = Annotated[Path | None, typer.Option("--data-dir", help="Where devyard keeps its state.")]


@app.callback(invoke_without_command=True)
def _root(version: Annotated[bool, typer.Option("--version", help="Print the version.")] = False) -> None:
    if version:
        print(__version__)
        raise typer.Exit()


def _progress(message: str) -> None:
    err.print(message, highlight=False)


@app.command()
def up(
    host: Annotated[str | None, typer.Option("--host", help="Address to listen on (default 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option("--port", help="Port to listen on (default 8000; 0 picks one).")] = None,
    data_dir: DataDirOpt = None,
    config: ConfigOpt = None,
    install_engine: Annotated[
        bool, typer.Option("--install-engine/--no-install-engine", help="Install the engine first when it is missing.")
    ] = True,
    tls: Annotated[
        str | None, typer.Option("--tls", help="`self-signed`: serve HTTPS with a certificate devyard makes.")
    ] = None,
    tls_cert: Annotated[Path | None, typer.Option("--tls-cert", help="PEM certificate to serve HTTPS with.")] = None,
    tls_key: Annotated[Path | None, typer.Option("--tls-key", help="PEM private key of --tls-cert.")] = None,
    os_accounts: Annotated[
        str | None,
        typer.Option(
            "--os-accounts",
            help="`on`: each user's engines run as a system account of their own; `auto` (default): when root; `off`.",
        ),
    ] = None,
    log_format: Annotated[
        str | None, typer.Option("--log-format", help="`json`: one JSON object per log line; `text` (default).")
    ] = None,
    stop_workspaces_on_exit: Annotated[
        bool | None,
        typer.Option(
            "--stop-workspaces-on-exit/--keep-workspaces-on-exit",
            help="Stop every engine when the manager exits (default: keep them for the next one).",
        ),
    ] = None,
    uds: Annotated[
        Path | None,
        typer.Option(
            "--uds",
            help="Also listen on this unix socket, for a reverse proxy on this host (mode 0660, its folder's group).",
        ),
    ] = None,
) -> None:
    """Run the manager in the foreground (engines keep running when it exits)."""
    from devyard.server import serve  # uvicorn and the app load only for `up`

    # The flags are settings: the Settings model checks them (a refused one ends the command, exit 2).
    settings = load_settings(
        config,
        host=host,
        port=port,
        data_dir=data_dir,
        tls=tls,
        tls_cert=tls_cert,
        tls_key=tls_key,
        os_accounts=os_accounts,
        log_format=log_format,
        stop_workspaces_on_exit=stop_workspaces_on_exit,
        uds=uds,
    )
    _warn_moved_data(settings)
    if settings.tls_cert or settings.tls_key or settings.tls == "self-signed":
        # cryptography's X.509 half (8 MB resident) only where TLS is asked for: the manager runs for weeks.
        from devyard.origins import resolve_domain
        from devyard.tls import check_pair, self_signed

        check_pair(settings.tls_cert, settings.tls_key)
        if settings.tls == "self-signed" and settings.tls_cert is None:
            cert, key = self_signed(settings.secrets_dir / "tls", settings.host, resolve_domain(settings))
            settings = settings.model_copy(update={"tls_cert": cert, "tls_key": key})
            if settings._origin is not None:  # a reload reads the same certificate again
                settings._origin.overrides.update(tls_cert=cert, tls_key=key)
            err.print(f"serving HTTPS with a self-signed certificate: {cert}", highlight=False)
    logs.configure(settings.log_format, err)
    if settings.ignored():  # named once, at start: a DevBox key with no meaning here, or a typo
        logging.getLogger("devyard.config").warning(
            "%s: ignored, devyard has no use for: %s", config, ", ".join(settings.ignored())
        )
    if install_engine and install.locate(settings.engine_dir) is None:
        install.install(settings.engine_dir, _progress)
    password = asyncio.run(_bootstrap(settings))
    if password:
        err.print(
            Panel(
                f"user [bold]admin[/]  password [bold]{password}[/]\nShown once: keep it somewhere safe.",
                title="devyard admin account",
            )
        )

    def ready(url: str, dashboard: str) -> None:
        console.print(f"devyard is serving on {url}", highlight=False)
        if dashboard != url:
            console.print(
                f"open the dashboard at {dashboard} (workspaces open on origins of their own below it)", highlight=False
            )

    serve(settings, ready)


def _warn_moved_data(settings: Settings) -> None:
    """Root's default data dir moved to /var/lib/devyard (0.2): point at data left in the old one."""
    old = Path("~/.local/share/devyard").expanduser()
    if (
        settings.data_dir == DEFAULT_DATA_DIR != old
        and not (settings.data_dir / "devyard.db").exists()
        and (old / "devyard.db").exists()
    ):
        err.print(
            f"[yellow]note:[/] an earlier devyard's data is in {old}; as root devyard now keeps it in {settings.data_dir}. "
            f"Stop this manager and `mv {old} {settings.data_dir}` to keep your users and workspaces.",
            highlight=False,
        )


async def _bootstrap(settings: Settings) -> str | None:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    migrate_apart(settings.db_url)
    engine = open_engine(settings.db_url)
    try:
        given = settings.admin_password.get_secret_value() if settings.admin_password else None
        return await ensure_admin(sessionmaker(engine), given)
    finally:
        await engine.dispose()


@engine_app.command("install")
def engine_install() -> None:
    """Install the pinned code-server and Node 24 into the cache (no-op when present)."""
    settings = load_settings()
    engine = install.install(settings.engine_dir, _progress)
    console.print(f"engine ready: code-server {engine.version} ({engine.root})", highlight=False)


@engine_app.command("path")
def engine_path() -> None:
    """Print where the installed engine is."""
    print(install.require(load_settings().engine_dir).root)


@extensions_app.command("check")
def extensions_check(
    config: ConfigOpt = None,
    group: Annotated[
        list[str] | None, typer.Option("--group", help="Only the group with this id (repeatable).")
    ] = None,
) -> None:
    """Install every configured group into a scratch workspace, open it, and report which extensions install and activate."""
    settings = load_settings(config)
    groups = (
        resolve_groups(list(dict.fromkeys(group)), settings.extension_groups)
        if group
        else list(settings.extension_groups.values())
    )
    failed = 0
    for g in groups:
        for o in check_group(settings, g, _progress):
            failed += not o.ok
            mark = "[green]ok[/]  " if o.ok else "[red]FAIL[/]"
            console.print(f"{mark} {g.id:<16} {o.id:<40} {o.detail}", highlight=False, soft_wrap=True)
    if failed:
        raise typer.Exit(1)


@app.command()
def reload() -> None:
    """Make the running manager read devyard.yaml again (an admin's DEVYARD_TOKEN; `systemctl reload` sends SIGHUP)."""
    api = Api()
    api.require_token()
    result = api.request("POST", "/reload")
    applied = ", ".join(result["applied"]) or "nothing changed"
    console.print(f"reloaded: {applied}", highlight=False, soft_wrap=True)
    if result["ignored"]:
        err.print(f"ignored, devyard has no use for: {', '.join(result['ignored'])}", highlight=False, soft_wrap=True)


@app.command()
def doctor() -> None:
    """Report whether this machine is ready to run devyard."""
    checks = run_checks(load_settings())
    for c in checks:
        mark = "[green]ok[/]  " if c.ok else ("[red]FAIL[/]" if c.required else "[yellow]warn[/]")
        console.print(f"{mark} {c.name:<17} {c.detail}", highlight=False, soft_wrap=True)
    if any(c.required and not c.ok for c in checks):
        raise typer.Exit(1)


def main() -> None:
    """Entry point: run the CLI, turning devyard errors into one line on stderr and exit 1.

    A configuration the settings refuse (a flag such as `devyard up --port 70000`, the config file,
    a DEVYARD_* variable) exits 2, as click's own usage errors do.
    """
    try:
        app()
    except DevyardError as exc:
        err.print(f"error: {exc.message}", highlight=False, markup=False, soft_wrap=True)
        sys.exit(2 if exc.code in CONFIG_ERRORS else 1)
