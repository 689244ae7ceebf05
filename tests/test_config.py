"""Settings: file, environment and flags, in that order of strength."""

from __future__ import annotations

import os
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
    # The list form: a group is called by its name.
    assert list(s.extension_groups) == ["py"] and s.extension_groups["py"].id == "py"
    assert s.extension_groups["py"].user_settings == {"editor.rulers": [88]}
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
    assert exc.value.code == "invalid_settings"
    assert exc.value.message == "environment variable DEVYARD_PORT: Input should be greater than or equal to 0"


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


DEVBOX = Path(__file__).parent / "data" / "devbox.yaml"


def test_a_devbox_file_loads_as_it_is() -> None:
    s = load_settings(DEVBOX)
    # Groups keyed by id, in the file's order; each knows its key and keeps its display name.
    assert list(s.extension_groups) == ["python", "jupyter", "claude-code"]
    python = s.extension_groups["python"]
    assert (python.id, python.name, python.user_settings) == ("python", "Python", {"python.languageServer": "None"})
    assert s.extension_groups["claude-code"].extensions == ["anthropic.claude-code"]
    assert s.ui.default_extension_groups == ["python", "jupyter"]
    assert s.packaged_assets.tabs[0].items[0].extensions_groups == ["python", "claude-code"]
    assert s.port == 8123  # server.default_port, as no port is given otherwise
    assert s.ui.workspace.default_type == "empty" and s.ui.workspace.max_upload_size_mb == 100
    assert s.ui.workspace.archive_kinds() == {"zip", "tar.gz"}
    assert s.ignored() == ["server.code_server_port_range", "ui.settings"]
    assert load_settings(DEVBOX, port=9000).port == 9000  # a flag beats server.default_port


def test_server_default_port_yields_to_devyard_and_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "devyard.yaml"
    cfg.write_text("server: {default_port: 8123}\ndevyard: {port: 8200}\n")
    assert load_settings(cfg).port == 8200
    cfg.write_text("server: {default_port: 8123}\n")
    monkeypatch.setenv("DEVYARD_PORT", "8300")
    assert load_settings(cfg).port == 8300


def test_unknown_keys_are_named(tmp_path: Path) -> None:
    cfg = tmp_path / "devyard.yaml"
    cfg.write_text(
        "devyard: {prot: 9000, ui: {workspace: {max_upload_size_mb: 5, colour: red}}}\n"
        "extension_groups: {py: {name: Python, icon: snake}}\n"
        "servers: {}\n"
    )
    s = load_settings(cfg)
    assert s.ui.workspace.max_upload_size_mb == 5
    assert s.ignored() == [
        "servers",
        "devyard.prot (did you mean port?)",
        "devyard.ui.workspace.colour",
        "extension_groups.py.icon",
    ]


@pytest.mark.parametrize(
    "content, message",
    [
        (
            "extension_groups:\n  python:\n    name: Python\n    extensions: ms-python.python\n",
            "{cfg}: extension_groups.python.extensions: Input should be a valid list",
        ),
        ("extension_groups:\n  python: {extensions: []}\n", "{cfg}: extension_groups.python.name: Field required"),
        (
            "extension_groups: [{name: py}, {name: py}]\n",
            "{cfg}: extension_groups: two extension groups are called 'py'",
        ),
        (
            "ui: {workspace: {default_type: zip}}\n",
            "{cfg}: ui.workspace.default_type: Input should be 'empty', 'upload' or 'github'",
        ),
        (
            "ui: {workspace: {supported_archive_types: [.rar]}}\n",
            "{cfg}: ui.workspace: supported_archive_types: .rar cannot be unpacked (known: .zip, .tar, .tar.gz, .tgz)",
        ),
        ("server: {default_port: 70000}\n", "{cfg}: server.default_port: Input should be less than or equal to 65535"),
        (
            "devyard: {port: abc}\n",
            "{cfg}: devyard.port: Input should be a valid integer, unable to parse string as an integer",
        ),
        (
            "extension_groups: {py: {name: Python}}\nui: {default_extension_groups: [python]}\n",
            "{cfg}: ui.default_extension_groups: no group python (groups: py)",
        ),
        ("devyard: {port: 1\n", "{cfg}: not valid YAML (line 2): expected ',' or '}', but got '<stream end>'"),
    ],
)
def test_a_config_error_is_one_line_with_exit_2(tmp_path: Path, content: str, message: str) -> None:
    cfg = tmp_path / "devyard.yaml"
    cfg.write_text(content)
    out = subprocess.run(
        [DEVYARD, "up", "--config", str(cfg), "--data-dir", str(tmp_path / "data"), "--no-install-engine"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2, out.stderr
    assert out.stderr == f"error: {message.replace('{cfg}', str(cfg))}\n"
    assert not (tmp_path / "data").exists()


@pytest.mark.parametrize(
    "variable, value, message",
    [
        (
            "DEVYARD_PORT",
            "x",
            "environment variable DEVYARD_PORT: Input should be a valid integer, unable to parse string as an integer",
        ),
        (
            "DEVYARD_SIZES",
            "{small",
            "environment variable DEVYARD_SIZES: not valid JSON, as a list or mapping setting needs "
            "(Expecting property name enclosed in double quotes: line 1 column 2 (char 1))",
        ),
        (
            "DEVYARD_UI__WORKSPACE__MAX_UPLOAD_SIZE_MB",
            "-1",
            "environment variable DEVYARD_UI__WORKSPACE__MAX_UPLOAD_SIZE_MB: workspace.max_upload_size_mb: "
            "Input should be greater than 0",
        ),
        ("DEVYARD_LOG_FORMAT", "xml", "environment variable DEVYARD_LOG_FORMAT: Input should be 'text' or 'json'"),
    ],
)
def test_an_environment_error_is_one_line_with_exit_2(variable: str, value: str, message: str) -> None:
    for command in (["doctor"], ["engine", "path"]):
        out = subprocess.run(
            [DEVYARD, *command], capture_output=True, text=True, timeout=60, env={**os.environ, variable: value}
        )
        assert (out.returncode, out.stderr) == (2, f"error: {message}\n")
