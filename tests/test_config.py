"""Settings: file, environment and flags, in that order of strength."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from devyard.config import OVERRIDE_REFUSED, load_settings
from devyard.errors import Invalid
from tests.support import DEVYARD


def test_file_env_and_flags(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "devyard.yaml"
    cfg.write_text(
        "devyard:\n  port: 9001\n  session_ttl_s: 60\n"
        "extension_groups:\n  - name: py\n    description: Python\n    extensions: [ms-python.python]\n    user_settings: {editor.rulers: [88]}\n"
        "packaged_assets: {tabs: []}\nui: {default_extension_groups: [py]}\n"
    )
    s = load_settings(cfg)
    assert s.port == 9001 and s.session_ttl_s == 60
    assert s.extension_groups[0].name == "py" and s.extension_groups[0].user_settings == {"editor.rulers": [88]}
    monkeypatch.setenv("DEVYARD_PORT", "9002")
    assert load_settings(cfg).port == 9002  # environment beats the file
    assert load_settings(cfg, port=9003).port == 9003  # flags beat the environment
    assert load_settings(cfg, data_dir=tmp_path / "x").db_url.endswith(str(tmp_path / "x" / "devyard.db"))


@pytest.mark.parametrize(
    "content, code", [("devyard: [1, 2]\n", "config_invalid"), ("[a", "config_invalid"), ("- 1\n", "config_invalid")]
)
def test_bad_files(tmp_path: Path, content: str, code: str) -> None:
    cfg = tmp_path / "devyard.yaml"
    cfg.write_text(content)
    with pytest.raises(Invalid) as exc:
        load_settings(cfg)
    assert exc.value.code == code and str(cfg) in exc.value.message


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(Invalid) as exc:
        load_settings(tmp_path / "nope.yaml")
    assert exc.value.code == "config_not_found"


def test_overrides_are_validated(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(Invalid) as exc:
        load_settings(port=70000)
    assert exc.value.code == OVERRIDE_REFUSED
    assert exc.value.message == "port: Input should be less than or equal to 65535"
    with pytest.raises(Invalid) as exc:
        load_settings(tls="maybe")
    assert exc.value.code == OVERRIDE_REFUSED and exc.value.message.startswith("tls: ")
    coerced = load_settings(port=0, engine_start_timeout_s=60)  # like any other value
    assert coerced.engine_start_timeout_s == 60.0
    monkeypatch.setenv("DEVYARD_PORT", "-1")
    with pytest.raises(Invalid) as exc:
        load_settings()
    assert exc.value.code == "invalid_settings" and "port" in exc.value.message


@pytest.mark.parametrize(
    "flags, setting",
    [(("--port", "70000"), "port"), (("--tls", "maybe"), "tls"), (("--log-format", "xml"), "log_format")],
)
def test_up_refuses_a_bad_flag(tmp_path: Path, flags: tuple[str, str], setting: str) -> None:
    out = subprocess.run(
        [DEVYARD, "up", "--data-dir", str(tmp_path / "data"), "--no-install-engine", *flags],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2, out.stderr
    assert out.stderr.startswith(f"error: {setting}: ") and len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert not (tmp_path / "data").exists()  # refused before anything is made
