"""The hostile-tenant suite: each attack of issue 17, made as a real tenant would, must come out refused or harmless.

A real manager runs as root with per-user accounts and sandboxes; two users, `a` (the attacker)
and `b` (the victim), each have a real engine, and the attacks are typed into their real
integrated terminals in headless Chromium, or sent through the API with their own sessions. Every
test fails when the protection it is about is taken out. Where this machine cannot sandbox
engines (not root, no bubblewrap), the suite skips and says why.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil
import pytest
import yaml
from playwright.sync_api import Page

from devyard import osaccounts as accounts
from devyard.backends import cgroups, sandbox
from devyard.config import load_settings
from devyard.engine import install
from devyard.gateway.assets import engine_commit
from devyard.osaccounts import Account
from devyard.tls import CERT_NAME
from tests.browser import chromium, login, open_terminal, run_in_terminal
from tests.support import Manager, make_repo, peer, start_manager, wait_for

ROOT = Path(__file__).parent.parent
PIDS_MAX = 512  # the test's size: a fork bomb stops here
GROUP_SETTING = {"editor.tabSize": 3}


def _why_not() -> str | None:
    if os.geteuid() != 0:
        return "the hostile-tenant suite needs root (per-user accounts and sandboxes)"
    found = sandbox.detect(load_settings(os_accounts="on", sandbox="auto", backend="local"))
    return None if found.available else f"engines cannot be sandboxed on this machine: {found.detail}"


WHY_NOT = _why_not()
if WHY_NOT:
    print(f"skipping the hostile-tenant suite: {WHY_NOT}")
pytestmark = pytest.mark.skipif(WHY_NOT is not None, reason=WHY_NOT or "")


@dataclass
class Tenant:
    """A user with a workspace open in a real browser, its integrated terminal focused."""

    name: str
    password: str
    workspace: str
    account: Account
    files: Path
    page: Page | None = None
    url: str = ""  # the manager's URL as this tenant's browser knows it
    session: httpx.Client | None = None
    runs: int = field(default=0)

    def run(self, script: str, timeout: float = 90) -> None:
        """Save `script` in the workspace folder (the tenant's own file) and type `bash <it>` into the terminal; wait until it is done."""
        assert self.page is not None
        self.runs += 1
        name = f"attack{self.runs}.sh"
        done = self.files / f"{name}.done"
        body = f"cd {self.files}\n{script}\necho done > {done}\n"
        self.write(name, body)
        run_in_terminal(self.page, f"bash {name} > {name}.out 2>&1 &")
        wait_for(done.exists, timeout, f"{self.name}'s terminal to run {name}")

    def start(self, script: str) -> None:
        """Type a long-running command (it keeps running in the terminal's background)."""
        assert self.page is not None
        self.runs += 1
        name = f"bg{self.runs}.sh"
        self.write(name, f"cd {self.files}\n{script}\n")
        run_in_terminal(self.page, f"bash {name} > {name}.out 2>&1 &")

    def write(self, name: str, text: str) -> Path:
        """A file of the tenant's own in its workspace folder (as if typed in the editor)."""
        path = self.files / name
        path.write_text(text)
        os.chown(path, self.account.uid, self.account.gid)
        os.chmod(path, 0o600)
        return path

    def read(self, name: str) -> str:
        """What the tenant's terminal wrote into `name`."""
        return (self.files / name).read_text(errors="replace")


@dataclass
class Site:
    """The manager, its two tenants and the host-side things an attack aims at."""

    m: Manager
    a: Tenant
    b: Tenant
    base: Path
    outside: Path  # root's folder outside every workspace, holding what no tenant may read or change
    commit: str
    static_root: Path
    git_url: str = ""
    helper_marker: Path = Path("/nonexistent")


def _add_user(m: Manager, name: str) -> str:
    password = f"{name}-password"
    out = m.cli(
        "user", "add", name, "--password-stdin", "--data-dir", str(m.data_dir), token=None, input=password + "\n"
    )
    assert out.returncode == 0, out.stderr
    return password


def _session(m: Manager, user: str, password: str) -> httpx.Client:
    c = httpx.Client(base_url=m.url, timeout=120)
    assert c.post("/api/v1/auth/login", json={"username": user, "password": password}).status_code == 200
    return c


@pytest.fixture(scope="module")
def site(engine: install.Engine) -> Iterator[Site]:
    """Root's manager with accounts and sandboxes; tenants a (wa, wa2) and b (wb); a git server only root's helper could log into."""
    base = Path(tempfile.mkdtemp(prefix="devyard-hostile-", dir="/var/tmp"))
    os.chmod(base, 0o711)
    outside = base / "outside"
    outside.mkdir(mode=0o700)
    for name in ("victim", "victim2", "rootonly"):
        (outside / name).write_text(f"ROOTONLY-{name}-{secrets.token_hex(4)}\n")
        os.chmod(outside / name, 0o600)
    # Root's own git credentials, as an admin's machine has them: a credential helper and a .netrc.
    home = base / "roothome"
    home.mkdir(mode=0o700)
    token = "tok-" + secrets.token_hex(8)
    marker = base / "helper-was-run"
    (home / ".gitconfig").write_text(
        f'[credential]\n\thelper = "!f() {{ touch {marker}; echo username=x; echo password={token}; }}; f"\n'
    )
    (home / ".netrc").write_text(f"machine 127.0.0.1 login x password {token}\n")
    repos = base / "repos"
    make_repo(repos / "private.git", {"README.md": "root's private repository\n"})
    config = base / "devyard.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "extension_groups": [{"name": "tidy", "extensions": [], "user_settings": GROUP_SETTING}],
                "devyard": {"sizes": {"small": {"memory_mb": 2048, "cpus": 1, "disk_mb": 10240, "pids_max": PIDS_MAX}}},
            }
        )
    )
    names = [f"ha{secrets.token_hex(3)}", f"hb{secrets.token_hex(3)}"]
    cert_dir = base / "cert"
    with peer([sys.executable, "-m", "tests.peers.git_https", str(repos), str(cert_dir), token], cwd=ROOT) as ready:
        cert = cert_dir / CERT_NAME
        os.chmod(cert_dir, 0o711)  # the accounts' clones read the server's certificate (engine_env's GIT_SSL_CAINFO)
        os.chmod(cert, 0o644)
        env = {
            "DEVYARD_OS_ACCOUNTS": "on",
            "DEVYARD_SANDBOX": "on",
            "HOME": str(home),
            "DEVYARD_ENGINE_DIR": str(engine.root.parent),
            "PLANTED_SECRET": "planted-" + secrets.token_hex(6),
            "DEVYARD_ENGINE_ENV": json.dumps({"GIT_SSL_CAINFO": str(cert)}),
        }
        m = start_manager(base / "data", extra_env=env, args=("--config", str(config)))
        tenants: list[Tenant] = []
        try:
            for user, ws in zip(names, ("wa", "wb"), strict=True):
                password = _add_user(m, user)
                with m.api(user) as api:
                    assert api.put("/secrets/OWN_SECRET", json={"value": f"{user}-own"}).status_code == 201
                    assert api.post("/workspaces", json={"name": ws}).status_code == 201
                m.wait_status(ws, "running", token=user)
                account = accounts.lookup(user)
                assert account is not None
                tenants.append(Tenant(user, password, ws, account, m.data_dir / "workspaces" / user / ws / "files"))
            a, b = tenants
            with m.api(a.name) as api:
                assert api.post("/workspaces", json={"name": "wa2"}).status_code == 201
            m.wait_status("wa2", "running", token=a.name)
            # One browser; b's pages on another host name of the same manager, so each keeps its own session cookie.
            with chromium(base / "profile") as browser:
                for tenant, url in ((a, m.url), (b, m.url.replace("127.0.0.1", "localhost"))):
                    tenant.page = browser.new_page()
                    login(tenant.page, url, tenant.name, tenant.password)
                    open_terminal(tenant.page, url + f"/w/{tenant.name}/{tenant.workspace}/")
                    tenant.url = url
                    tenant.session = _session(m, tenant.name, tenant.password)
                yield Site(
                    m,
                    a,
                    b,
                    base,
                    outside,
                    engine_commit(engine.static_root) or "",
                    engine.static_root,
                    git_url=f"https://127.0.0.1:{ready.split()[1]}/private.git",
                    helper_marker=marker,
                )
        finally:
            for tenant in tenants:
                if tenant.session is not None:
                    tenant.session.close()
            m.stop()
            for user in names:
                found = accounts.lookup(user)
                if found:
                    accounts.kill_processes(found, Path("/"))
                    subprocess.run(["userdel", found.name], check=False, capture_output=True)
            shutil.rmtree(base, ignore_errors=True)


def _host_address() -> str:
    for addresses in psutil.net_if_addrs().values():
        for address in addresses:
            if address.family == socket.AF_INET and not address.address.startswith("127."):
                return str(address.address)
    pytest.skip("this host has no address besides loopback")


def _reachable_from_host(url: str) -> bool:
    try:
        httpx.get(url, timeout=5)
        return True
    except httpx.TransportError:
        return False


def test_ports_processes_tmp_and_environment_of_others_are_out_of_reach(site: Site) -> None:
    a, b, m = site.a, site.b, site.m
    # b's dev server on its localhost, and a file in its /tmp: b itself reaches both (the control).
    b.write("index.html", "b's dev server\n")
    b.start("exec python3 -m http.server 9011 --bind 127.0.0.1")
    b.run(
        "echo b-tmp-secret > /tmp/b-secret; for i in $(seq 50); do curl -s -m 2 http://127.0.0.1:9011/ > r_own && break; sleep 0.2; done"
    )
    assert b.read("r_own") == "b's dev server\n"
    assert b.session is not None and b.session.get(f"/w/{b.name}/wb/proxy/9011/").text == "b's dev server\n"
    # A service of the host's, on all its addresses, and the manager's own port: reachable from the host (the control).
    host, manager_port = _host_address(), int(m.url.rsplit(":", 1)[1])
    with peer(
        [
            sys.executable,
            "-c",
            "import http.server, sys\n"
            "s = http.server.HTTPServer(('0.0.0.0', 0), http.server.SimpleHTTPRequestHandler)\n"
            "print('ready', s.server_address[1], flush=True)\ns.serve_forever()",
        ]
    ) as ready:
        host_port = int(ready.split()[1])
        assert _reachable_from_host(f"http://{host}:{host_port}/")
        metadata = _reachable_from_host("http://169.254.169.254/")
        egress = _reachable_from_host("https://pypi.org/simple/")
        a.run(f"""
id -un > r_id
ps -eo user,pid,args > r_ps
env > r_env
ls -a /tmp /dev/shm > r_tmp 2>&1
for target in 127.0.0.1:9011 127.0.0.1:{manager_port} {host}:{manager_port} {host}:{host_port} 10.0.2.2:{manager_port} 169.254.169.254:80; do
  code=$(curl -s -m 5 -o /dev/null -w '%{{http_code}}' http://$target/); echo "$target $code $?" >> r_net
done
curl -s -m 20 -o /dev/null -w '%{{http_code}}' https://pypi.org/simple/ > r_egress 2>&1
""")
    assert a.read("r_id").strip() == a.account.name
    # Ports: b's, the manager's, the host's services on any of its addresses, link-local metadata: none answers.
    answered = [line for line in a.read("r_net").splitlines() if line.split()[1] != "000"]
    assert not answered, f"reached from a's terminal: {answered}"
    # ... nor through a's own workspace's port proxy (it runs in a's sandbox, with a's own localhost).
    assert a.session is not None
    through = a.session.get(f"/w/{a.name}/wa/proxy/9011/")
    assert "b's dev server" not in through.text and through.status_code >= 400
    # Processes: a sees its own sandbox only; /tmp is its own.
    ps = a.read("r_ps")
    assert b.name not in ps and b.account.name not in ps and "devyard up" not in ps and "slirp4netns" not in ps, ps
    assert "b-secret" not in a.read("r_tmp")
    # The manager's environment stays its own; the owner's own secret does reach the terminal.
    env = a.read("r_env")
    planted = m.env["PLANTED_SECRET"]
    assert planted not in env and "DEVYARD_" not in env and f"OWN_SECRET={a.name}-own" in env
    # Egress still works (git, pip, npm), where this host itself reaches the internet.
    if egress:
        assert a.read("r_egress").strip() == "200"
    else:
        print("egress not checked: this host does not reach https://pypi.org either")
    if not metadata:
        print("no link-local metadata service answers this host: 169.254.169.254 was checked only as unreachable")


def test_socket_swap_cannot_fill_what_others_are_served(site: Site) -> None:
    a, b, m = site.a, site.b, site.m
    js = "out/vs/code/browser/workbench/workbench.js"
    real = (site.static_root / js).read_bytes()
    # a rebinds its engine's socket to a server of its own that answers everything with its script.
    a.write(
        "evil.py",
        """import os, re, socket, subprocess
out = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
path = re.search(r"--socket (\\S+)", out).group(1)
os.unlink(path)
server = socket.socket(socket.AF_UNIX)
server.bind(path)
server.listen(64)
open("evil_ready", "w").write(path)
body = b"alert('tenant a owns this origin')//EVIL"
while True:
    conn, _ = server.accept()
    try:
        conn.recv(65536)
        conn.sendall(b"HTTP/1.1 200 OK\\r\\nContent-Type: text/javascript\\r\\nCache-Control: public, max-age=31536000\\r\\n"
                     b"Set-Cookie: devyard_session=stolen; Path=/\\r\\nService-Worker-Allowed: /\\r\\nClear-Site-Data: \\"cookies\\"\\r\\n"
                     b"Content-Length: %d\\r\\nConnection: close\\r\\n\\r\\n%s" % (len(body), body))
    finally:
        conn.close()
""",
    )
    a.start("exec python3 evil.py")
    wait_for(lambda: (a.files / "evil_ready").exists(), 60, "a's server on its engine's socket")
    time.sleep(4)  # past the gateway's idle-connection reuse: every new request reaches a's server
    try:
        assert a.session is not None and b.session is not None
        path = f"stable-{site.commit}/static/{js}"
        for coding in ("br", "gzip", "identity"):
            mine = a.session.get(f"/w/{a.name}/wa/{path}", headers={"accept-encoding": coding})
            assert mine.status_code == 200 and b"EVIL" not in mine.content and mine.content == real, coding
            theirs = b.session.get(f"/w/{b.name}/wb/{path}", headers={"accept-encoding": coding})
            assert theirs.status_code == 200 and theirs.content == real, coding
        # What a's server does answer (its own workspace's other paths) carries none of devyard's cookies or powers.
        own = a.session.get(f"/w/{a.name}/wa/anything")
        assert b"EVIL" in own.content  # it is a's own server answering, for a's own workspace only
        assert "devyard_session" not in own.headers.get("set-cookie", "")
        assert "service-worker-allowed" not in own.headers and "clear-site-data" not in own.headers
        assert a.session.cookies.get("devyard_session") != "stolen"
    finally:
        with m.api(a.name) as api:  # a fresh engine and socket for the tests that follow
            assert api.post("/workspaces/wa/restart").status_code == 202
        m.wait_status("wa", "running", token=a.name)
        assert a.page is not None
        open_terminal(a.page, a.url + f"/w/{a.name}/wa/")


def test_a_socket_linked_to_another_engine_reaches_nothing(site: Site) -> None:
    a, b, m = site.a, site.b, site.m
    theirs = json.loads(
        next(p for p in (m.data_dir / "run" / "engines").glob("*.json") if '"wb"' in p.read_text()).read_text()
    )["socket"]
    # a swaps its engine's socket for a link to b's (the gateway, root, would follow it) and asks for its own workspace.
    a.run(f"""sock=$(ps -eo args | grep -o -- '--socket [^ ]*' | head -1 | cut -d' ' -f2)
rm -f "$sock" && ln -s {theirs} "$sock" && ls -l "$sock" > r_link""")
    assert theirs in a.read("r_link")
    time.sleep(4)  # past the gateway's idle-connection reuse: the next request opens a new connection
    try:
        assert a.session is not None
        r = a.session.get(f"/w/{a.name}/wa/", follow_redirects=False)
        assert (
            r.status_code == 502
            and "wb" not in r.headers.get("location", "")
            and r.json()["error"]["code"] == "engine_unreachable"
        )
        assert (
            b.session is not None and b.session.get(f"/w/{b.name}/wb/").status_code == 302
        )  # b's engine itself is fine
    finally:
        with m.api(a.name) as api:
            assert api.post("/workspaces/wa/restart").status_code == 202
        m.wait_status("wa", "running", token=a.name)
        assert a.page is not None
        open_terminal(a.page, a.url + f"/w/{a.name}/wa/")


def _chained_backup(outside: Path, data_dir: Path) -> bytes:
    """A backup whose links chain (`x -> .`, `x/x/x/data -> ../../../outside`): text-only checks see nothing leave the folder."""
    unpacked = data_dir / "uploads" / ".unpacked-x"  # where the manager unpacks it
    up = os.path.relpath(outside, unpacked)
    depth = up.count("..")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        manifest = json.dumps({"format": 1, "name": "chain", "owner": "x"}).encode()
        info = tarfile.TarInfo("devyard-backup.json")
        info.size = len(manifest)
        tar.addfile(info, io.BytesIO(manifest))
        folder = tarfile.TarInfo("files")
        folder.type = tarfile.DIRTYPE
        tar.addfile(folder)
        loop = tarfile.TarInfo("x")
        loop.type, loop.linkname = tarfile.SYMTYPE, "."
        tar.addfile(loop)
        chain = tarfile.TarInfo("/".join(["x"] * depth) + "/data")
        chain.type, chain.linkname = tarfile.SYMTYPE, up
        tar.addfile(chain)
    return buf.getvalue()


def test_a_chained_link_backup_moves_nothing_of_the_host_in(site: Site) -> None:
    a, m = site.a, site.m
    before = {p.name: p.read_bytes() for p in site.outside.iterdir()}
    assert a.session is not None
    r = a.session.post(
        "/api/v1/workspaces/restore",
        params={"name": "chain"},
        content=_chained_backup(site.outside, m.data_dir),
        headers={"content-type": "application/gzip", "origin": m.url},
    )
    assert r.status_code == 422 and r.json()["error"]["code"] == "archive_refused", r.text
    assert "outside" in r.json()["error"]["message"]
    assert {p.name: p.read_bytes() for p in site.outside.iterdir()} == before
    assert not (m.data_dir / "workspaces" / a.name / "chain").exists()


def test_a_planted_settings_link_before_adding_groups_writes_nowhere_else(site: Site) -> None:
    a, m = site.a, site.m
    victim = site.outside / "victim"
    before = victim.read_bytes()
    user = m.data_dir / "workspaces" / a.name / "wa" / "data" / "User"
    a.run(f"ln -sfn {victim} {user}/.settings.json.tmp; ln -sfn {victim} {user}/settings.json; ls -l {user} > r_links")
    assert "settings.json ->" in a.read("r_links")
    assert a.session is not None
    r = a.session.post("/api/v1/workspaces/wa/extension-groups", json={"groups": ["tidy"]}, headers={"origin": m.url})
    assert r.status_code == 200, r.text
    assert victim.read_bytes() == before
    settings = user / "settings.json"
    assert (
        not settings.is_symlink()
        and json.loads(settings.read_text())["editor.tabSize"] == GROUP_SETTING["editor.tabSize"]
    )
    assert settings.stat().st_uid == a.account.uid


def test_backups_never_read_through_a_swapped_link(site: Site) -> None:
    a, m = site.a, site.m
    rootonly = site.outside / "rootonly"
    secret = rootonly.read_bytes().strip()
    # 200 names, each flipped between a file of a's and a link to root's file by one atomic exchange
    # (renameat2 RENAME_EXCHANGE), round and round, as fast as a loop can: a reader that looks, then
    # opens by name, is caught between the two every few files.
    a.write(
        "swap.py",
        f"""import ctypes, os, time
libc = ctypes.CDLL(None, use_errno=True)
AT_FDCWD, RENAME_EXCHANGE = -100, 2
pairs = []
for i in range(200):
    name = f"s{{i}}"
    open(name, "w").write("public\\n")
    os.symlink("{rootonly}", name + ".l")
    pairs.append((name.encode(), (name + ".l").encode()))
open("swap_ready", "w").write("ok")
end = time.time() + 120
while time.time() < end and not os.path.exists("stop_swap"):
    for a, b in pairs:
        libc.renameat2(AT_FDCWD, a, AT_FDCWD, b, RENAME_EXCHANGE)
""",
    )
    a.start("exec python3 swap.py")
    wait_for(lambda: (a.files / "swap_ready").exists(), 30, "the swapping loop")
    assert a.session is not None
    made, seen_links = 0, 0
    try:
        for _ in range(15):  # bounded: each backup reads every one of the 200 files while they swap
            r = a.session.post("/api/v1/workspaces/wa/backup", headers={"origin": m.url})
            if r.status_code == 422 and r.json()["error"]["code"] == "backup_busy":
                continue  # a file kept changing: refused whole, nothing read through a link
            assert r.status_code == 200, r.text
            made += 1
            raw = gzip.decompress(r.content)
            assert secret not in raw, "a root-only byte reached a tenant's backup"
            with tarfile.open(fileobj=io.BytesIO(r.content)) as tar:
                seen_links += sum(1 for t in tar.getmembers() if t.issym() and t.name.startswith("files/s"))
    finally:
        a.write("stop_swap", "")
    assert made >= 3, f"only {made} backups went through"
    assert seen_links, "the files were never caught as links: the swap did not race the backup"


def test_a_planted_run_folder_link_is_never_written_through(site: Site) -> None:
    a, m = site.a, site.m
    victim = site.outside / "victim2"
    before = victim.read_bytes()
    record = next(
        json.loads(p.read_text())
        for p in (m.data_dir / "run" / "engines").glob("*.json")
        if json.loads(p.read_text()).get("name") == "wa2"
    )
    runtime = Path(record["socket"]).parent
    # From wa, a plants links where the engine of its other workspace, wa2, had its runtime files, while wa2 restarts.
    a.start(
        f"end=$((SECONDS+40)); while [ $SECONDS -lt $end ] && [ ! -e stop_plant ]; do "
        f"ln -sfn {victim} {runtime}/code-server.yaml 2>>r_plant; ln -sfn {victim} {runtime}/.code-server.yaml.tmp 2>>r_plant; done"
    )
    try:
        for _ in range(3):
            with m.api(a.name) as api:
                assert api.post("/workspaces/wa2/restart").status_code == 202
            time.sleep(0.5)
            m.wait_status("wa2", "running", token=a.name)
    finally:
        a.write("stop_plant", "")
    assert victim.read_bytes() == before
    assert not (runtime / "code-server.yaml").exists()  # the engines' config is root's, outside every tenant's folder
    config = m.data_dir / "run" / "code-server.yaml"
    assert config.stat().st_uid == 0 and oct(config.stat().st_mode & 0o777) == "0o644"


def test_a_clone_uses_nothing_of_roots_git_credentials(site: Site) -> None:
    a, m = site.a, site.m
    with m.api(a.name) as api:
        assert api.post("/workspaces", json={"name": "cloned", "git_url": site.git_url}).status_code == 201
    failed = m.wait_status("cloned", "failed", token=a.name)
    # Without the owner's own GIT_TOKEN the server refuses: root's credential helper and .netrc were never used.
    assert "git clone of" in failed["error"] and not site.helper_marker.exists()
    assert not (m.data_dir / "workspaces" / a.name / "cloned" / "files" / "README.md").exists()
    # With the owner's own secret it clones, as the owner's account.
    with m.api(a.name) as api:
        assert api.put("/secrets/GIT_TOKEN", json={"value": _server_token(site)}).status_code == 201
        assert api.post("/workspaces/cloned/retry-provision").status_code == 202
    m.wait_status("cloned", "running", token=a.name)
    readme = m.data_dir / "workspaces" / a.name / "cloned" / "files" / "README.md"
    assert readme.read_text() == "root's private repository\n" and readme.stat().st_uid == a.account.uid
    assert not site.helper_marker.exists()


def _server_token(site: Site) -> str:
    netrc = (site.base / "roothome" / ".netrc").read_text()
    return netrc.split("password ", 1)[1].strip()


def test_a_fork_bomb_is_contained(site: Site) -> None:
    a, b, m = site.a, site.b, site.m
    record = next(
        json.loads(p.read_text())
        for p in (m.data_dir / "run" / "engines").glob("*.json")
        if json.loads(p.read_text()).get("name") == "wa"
    )
    limited = cgroups.detect().pids is not None
    pids_group = next((Path(g) for g in record["cgroups"] if (Path(g) / "pids.max").exists()), None)
    if limited:
        assert pids_group is not None and (pids_group / "pids.max").read_text().strip() == str(PIDS_MAX)
    else:
        print(
            "no pids controller on this host: the bomb is contained by the sandbox's process namespace and memory limit only"
        )
    assert a.page is not None
    run_in_terminal(a.page, "bomb() { bomb | bomb & }; bomb")
    if pids_group is not None:  # it really ran, and hit the wall
        wait_for(
            lambda: int((pids_group / "pids.current").read_text()) >= PIDS_MAX * 0.9,
            60,
            "the bomb to reach the pids limit",
        )
    else:
        time.sleep(10)
    # Contained: the manager answers, b's workspace works, and a's processes stay at the limit.
    with m.api() as api:
        assert api.get("/workspaces", params={"all": 1}).status_code == 200
    assert b.session is not None and b.session.get(f"/w/{b.name}/wb/").status_code == 302
    if pids_group is not None:
        assert int((pids_group / "pids.current").read_text()) <= PIDS_MAX
    with m.api(a.name) as api:
        assert api.post("/workspaces/wa/stop").status_code == 202
    m.wait_status("wa", "stopped", token=a.name, timeout=120)
    wait_for(
        lambda: not psutil.pid_exists(record["pid"]) and not psutil.pid_exists(record["sandbox"]["pid"]),
        30,
        "a's sandbox gone",
    )
    wait_for(
        lambda: (
            not any(
                p.info["uids"] and p.info["uids"].real == a.account.uid and p.info["name"] == "bash"
                for p in psutil.process_iter(["uids", "name"])
            )
        ),
        60,
        "the bomb's processes ended with the workspace",
    )
