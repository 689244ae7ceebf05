"""Settings: file, environment and flags, in that order of strength."""

from __future__ import annotations

from pathlib import Path

import pytest

from devyard.config import load_settings
from devyard.errors import Invalid


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


@pytest.mark.parametrize("content, code", [("devyard: [1, 2]\n", "config_invalid"), ("[a", "config_invalid"), ("- 1\n", "config_invalid")])
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
