"""SSH benchmark: devyard's SSH (ProxyCommand → manager WebSocket → sshd in the sandbox) against a plain sshd on loopback.

    prompt            `ssh -tt HOST` until the shell's first prompt: a warm (running) workspace,
                      the developer's whole cost: ssh, `devyard ssh --prepare` (a key and its
                      certificate), `devyard ssh --stdio` (the WebSocket), sshd in the sandbox, bash
    command           `ssh HOST true`: connect, log in, run, exit
    … --prepare only  one `devyard ssh --prepare` (two API calls and a certificate) alone
    scp up / down     a 100 MiB file each way, as MiB/s

The direct rows are Debian's sshd started by hand on 127.0.0.1 with a key of its own, run by root
(privileged: the system's usual set-up), logging in the same machine's root, no proxy at all.

Usage (as root, with the sandbox): .venv/bin/python bench/ssh.py [--runs 10]. Prints a table, writes bench/results/ssh.json.
"""

from __future__ import annotations

import argparse
import os
import re
import secrets
import select
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.stats import report, scratch  # noqa: E402
from devyard import osaccounts  # noqa: E402
from tests.sshclient import Dev, developer  # noqa: E402
from tests.support import free_port, kill_tree, start_manager  # noqa: E402

PROMPT = re.compile(rb"[$#] $")
MB = 1 << 20


def until_prompt(argv: list[str], env: dict[str, str]) -> float:
    """Seconds from starting `argv` (an interactive ssh) until the remote shell prints its prompt."""
    began = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stdin is not None
    seen = b""
    try:
        while time.perf_counter() - began < 60:
            ready, _, _ = select.select([proc.stdout], [], [], 1)
            if ready:
                chunk = os.read(proc.stdout.fileno(), 4096)
                if not chunk:
                    break
                seen += chunk
                if PROMPT.search(seen):
                    return time.perf_counter() - began
        raise AssertionError(f"no prompt: {seen[-300:]!r} {proc.stderr.read() if proc.stderr else b''!r}")
    finally:
        proc.stdin.close()
        kill_tree(proc.pid)
        proc.wait()
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()


def timed(argv: list[str], env: dict[str, str]) -> float:
    """Seconds `argv` takes to run to success."""
    began = time.perf_counter()
    done = subprocess.run(argv, env=env, capture_output=True, timeout=600)
    assert done.returncode == 0, done.stderr.decode(errors="replace")[-500:]
    return time.perf_counter() - began


@contextmanager
def direct_sshd(folder: Path) -> Iterator[tuple[list[str], str]]:
    """Debian's sshd on 127.0.0.1 with a key of its own; the ssh options reaching it, and its host alias."""
    port = free_port()
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(folder / "host")], check=True)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(folder / "client")], check=True)
    (folder / "authorized").write_text((folder / "client.pub").read_text())
    (folder / "sshd_config").write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {folder / 'host'}\nPidFile none\nUsePAM no\nStrictModes no\n"
        f"AuthorizedKeysFile {folder / 'authorized'}\nPermitRootLogin prohibit-password\nPasswordAuthentication no\n"
        "Subsystem sftp internal-sftp\n"
    )
    os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
    proc = subprocess.Popen(
        ["/usr/sbin/sshd", "-D", "-e", "-f", str(folder / "sshd_config")], stderr=subprocess.DEVNULL
    )
    time.sleep(0.5)
    options = [
        *("-p", str(port), "-i", str(folder / "client"), "-o", "IdentitiesOnly=yes"),
        *("-o", "StrictHostKeyChecking=no", "-o", f"UserKnownHostsFile={folder / 'known'}", "-o", "LogLevel=ERROR"),
        *("-o", "BatchMode=yes", "-o", "User=root"),
    ]
    try:
        yield options, "127.0.0.1"
    finally:
        kill_tree(proc.pid)
        proc.wait()


def main() -> None:
    """Run both, print the table, write the results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--mib", type=int, default=100)
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root: workspaces need their accounts and sandboxes")
    user = f"bench{secrets.token_hex(3)}"
    rows: dict[str, list[float]] = {k: [] for k in ("prompt", "command", "prompt direct", "command direct")}
    rows["… --prepare only"] = []
    throughput: dict[str, list[float]] = {"scp up": [], "scp down": [], "scp up direct": [], "scp down direct": []}
    with scratch("devyard-bench-ssh-") as folder:
        m = start_manager(folder / "data", {"DEVYARD_OS_ACCOUNTS": "on", "DEVYARD_SANDBOX": "on"})
        try:
            m.add_user(user)
            dev: Dev = developer(m, folder, user)
            with m.api(dev.token) as api:
                assert api.post("/workspaces", json={"name": "bench"}).status_code == 201
            m.wait_status("bench", "running", dev.token, timeout=180)
            dev.configured()
            payload = folder / "payload.bin"
            payload.write_bytes(os.urandom(args.mib * MB))
            with direct_sshd(folder) as (options, host):
                for _ in range(args.runs):  # interleaved, so both see the same machine
                    rows["prompt"].append(until_prompt(dev.ssh_argv("-tt", "devyard--bench"), dev.env))
                    rows["prompt direct"].append(until_prompt(["ssh", "-tt", *options, host], dev.env))
                    rows["command"].append(timed(dev.ssh_argv("devyard--bench", "true"), dev.env))
                    rows["command direct"].append(timed(["ssh", *options, host, "true"], dev.env))
                    rows["… --prepare only"].append(timed([*dev_cli(), "ssh", "--prepare", "devyard--bench"], dev.env))
                for _ in range(max(1, args.runs // 3)):
                    up = timed(dev.ssh_argv(str(payload), "devyard--bench:payload.bin", tool="scp"), dev.env)
                    down = timed(
                        dev.ssh_argv("devyard--bench:payload.bin", str(folder / "back.bin"), tool="scp"), dev.env
                    )
                    throughput["scp up"].append(args.mib / up)
                    throughput["scp down"].append(args.mib / down)
                    scp = ["scp", *[o.replace("-p", "-P") if o == "-p" else o for o in options]]
                    up = timed([*scp, str(payload), f"{host}:{folder / 'direct.bin'}"], dev.env)
                    down = timed([*scp, f"{host}:{folder / 'direct.bin'}", str(folder / "back2.bin")], dev.env)
                    throughput["scp up direct"].append(args.mib / up)
                    throughput["scp down direct"].append(args.mib / down)
        finally:
            m.stop()
            account = osaccounts.lookup(user)
            if account:
                osaccounts.kill_processes(account, Path("/"))
                subprocess.run(["userdel", account.name], check=False, capture_output=True)
    report("ssh", "SSH: devyard vs direct sshd on loopback (seconds)", rows, "s", {"throughput_mib_s": throughput})
    report("ssh-throughput", f"scp of {args.mib} MiB (MiB/s)", throughput, "MiB/s")


def dev_cli() -> list[str]:
    """The devyard CLI of this checkout."""
    return [str(Path(sys.executable).with_name("devyard"))]


if __name__ == "__main__":
    main()
