"""SSH's parts on their own: certificates as OpenSSH reads them, the sshd_config sshd accepts, the ~/.ssh/config section."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat, load_ssh_private_key

from devyard.errors import Invalid
from devyard.ssh import client_config, server
from devyard.ssh.keys import Authority, alias, workspace_principal

pytestmark = pytest.mark.fast


def _key(folder: Path) -> str:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(folder / "k")], check=True)
    return (folder / "k.pub").read_text()


def _listed(cert: str, folder: Path) -> str:
    (folder / "cert.pub").write_text(cert + "\n")
    return subprocess.run(
        ["ssh-keygen", "-L", "-f", str(folder / "cert.pub")], capture_output=True, text=True, check=True
    ).stdout


def test_a_user_certificate_is_short_lived_for_one_account_and_workspace(tmp_path: Path) -> None:
    authority = Authority(os.urandom(32))
    cert, until = authority.user_certificate(
        _key(tmp_path), ["dy-ann", workspace_principal("u1")], "devyard:ann:ann/proj:x", 300, False
    )
    assert abs(until - (time.time() + 300)) < 5
    listed = _listed(cert, tmp_path)
    assert "Type: ssh-ed25519-cert-v01@openssh.com user certificate" in listed
    principals = listed.split("Principals:")[1].split("Critical Options:")[0].split()
    assert principals == ["dy-ann", "devyard-workspace-u1"]
    extensions = listed.split("Extensions:")[1].split()
    assert extensions == ["permit-port-forwarding", "permit-pty"]  # no agent, no X11, no user rc
    (tmp_path / "b").mkdir()
    with_agent, _ = authority.user_certificate(_key(tmp_path / "b"), ["dy-ann"], "x", 60, True)
    assert "permit-agent-forwarding" in _listed(with_agent, tmp_path)
    for bad in ("", "ssh-ed25519 !!!", "ssh-dss AAAAB3NzaC1kc3M=", "ssh-ed25519 AAAA"):
        with pytest.raises(Invalid):
            authority.user_certificate(bad, ["dy-ann"], "x", 60, False)


def test_host_keys_are_stable_per_workspace_and_certified_for_its_aliases(tmp_path: Path) -> None:
    seed = os.urandom(32)
    one, again, other = Authority(seed), Authority(seed), Authority(os.urandom(32))

    def public(a: Authority, uid: str) -> bytes:
        key = load_ssh_private_key(a.host_key(uid, "ann", "proj").private.encode(), None)
        return key.public_key().public_bytes(Encoding.OpenSSH, PublicFormat.OpenSSH)

    assert public(one, "u1") == public(again, "u1") != public(one, "u2")
    assert one.known_hosts() == again.known_hosts() != other.known_hosts()
    listed = _listed(one.host_key("u1", "ann", "proj").certificate.strip(), tmp_path)
    assert "host certificate" in listed
    assert listed.split("Principals:")[1].split("Critical Options:")[0].split() == [
        "devyard--proj",
        "devyard--ann--proj",
    ]
    assert alias("ann", "proj", "ann") == "devyard--proj" and alias("ann", "proj", "bob") == "devyard--ann--proj"


@pytest.mark.skipif(not Path(server.SSHD).exists(), reason="needs openssh-server")
def test_sshd_takes_the_config_with_any_variable(tmp_path: Path) -> None:
    authority = Authority(os.urandom(32))
    host = authority.host_key("u1", "ann", "proj")
    (tmp_path / "host_key").write_text(host.private)
    (tmp_path / "host_key").chmod(0o600)
    (tmp_path / "host_key-cert.pub").write_text(host.certificate)
    (tmp_path / "user_ca.pub").write_text(authority.user_ca_public + "\n")
    env = {"A": 'quote " and \\ backslash', "B": "it's", "C": "a b  c", "NL": "two\nlines"}
    (tmp_path / "sshd_config").write_text(server.config(tmp_path, env, agent_forwarding=False))
    if os.geteuid() == 0:
        os.makedirs("/run/sshd", exist_ok=True)  # a root sshd checks its privilege separation folder
    done = subprocess.run([server.SSHD, "-T", "-f", str(tmp_path / "sshd_config")], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    settings = done.stdout
    assert "allowagentforwarding no" in settings and "allowtcpforwarding local" in settings
    assert "authorizedkeysfile none" in settings and "passwordauthentication no" in settings
    assert "permitopen localhost:* 127.0.0.1:* [::1]:*" in settings
    setenv = " ".join(line for line in settings.splitlines() if line.startswith("setenv"))
    assert 'A=quote " and \\ backslash' in setenv and "B=it's" in setenv and "NL=" not in setenv


def test_config_block_refuses_broken_markers(tmp_path: Path) -> None:
    section = client_config.render(["/usr/bin/devyard"], "https://dev.example", [], tmp_path, tmp_path / "kh")
    assert client_config.updated("", section) == section
    assert client_config.updated("Host a\n", section) == "Host a\n\n" + section
    once = client_config.updated("Host a\n", section)
    assert client_config.updated(once + "Host b\n", section) == once + "Host b\n"
    for broken in (
        section + section,
        client_config.START + "\n",
        client_config.END + "\n" + client_config.START + "\n",
    ):
        with pytest.raises(Invalid) as exc:
            client_config.updated(broken, section)
        assert "marker" in exc.value.message
    with pytest.raises(Invalid):
        client_config.command_line(["/tmp/evil\nProxyCommand x"])
    assert client_config.command_line(["env", "DEVYARD_URL=https://h/a%20b", "/opt/my devyard"]) == (
        "env DEVYARD_URL=https://h/a%%20b '/opt/my devyard'"
    )


def test_a_keys_folder_without_ssh_key_turns_ssh_off_not_the_manager(tmp_path: Path) -> None:
    """Replicas given a keys Secret from before SSH (session.key, secrets.key) keep serving; SSH says why it is off."""
    from types import SimpleNamespace

    from devyard.api.ssh import authority
    from devyard.errors import Conflict

    (tmp_path / "not-a-folder").write_text("")
    unmakeable = tmp_path / "not-a-folder" / "keys"
    request = SimpleNamespace(
        app=SimpleNamespace(state=SimpleNamespace(settings=SimpleNamespace(secrets_dir=unmakeable)))
    )
    with pytest.raises(Conflict) as exc:
        authority(request)  # type: ignore[arg-type]
    assert exc.value.code == "ssh_unavailable" and "ssh.key" in exc.value.message
    with pytest.raises(Conflict):  # said again, not tried again at every request
        authority(request)  # type: ignore[arg-type]
    usable = SimpleNamespace(
        app=SimpleNamespace(state=SimpleNamespace(settings=SimpleNamespace(secrets_dir=tmp_path / "keys")))
    )
    made = authority(usable)  # type: ignore[arg-type]
    assert made is authority(usable) and (tmp_path / "keys" / "ssh.key").stat().st_size == 32  # type: ignore[arg-type]
