"""The API's contract: what /api/v1/openapi.json says is what the manager does.

schemathesis (PyPI), the standard OpenAPI fuzzer, runs every check it has (`--checks all`: no
server error, only documented statuses and content types, bodies that match their schemas,
schema-valid requests accepted and invalid ones refused, `Allow` on 405, resources usable after
they are made and gone after they are deleted, ...) against a live manager with real engines,
bounded by a fixed example count and seed. Its only setting beyond the command line is in
tests/schemathesis.toml: an archive's bytes are checked beyond what a schema can say.

Then the way a team's tooling would use the API: a typed Python client generated from the schema
(openapi-python-client) creates a workspace, opens it and deletes it.
"""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest
import yaml

from devyard.engine import install
from tests.support import start_manager, wait_for

ST = str(Path(sys.executable).parent / "st")
CONFIG = Path(__file__).parent / "schemathesis.toml"
EXAMPLES = 6
SEED = 20261204


def test_schemathesis_finds_nothing(engine: install.Engine, tmp_path: Path) -> None:
    config = tmp_path / "devyard.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "extension_groups": {"python": {"name": "Python", "extensions": []}},
                "packaged_assets": {"tabs": [{"name": "Starters", "items": [{"name": "starter"}]}]},
                # Whatever it creates, at most one engine runs at a time.
                "devyard": {"max_workspaces_per_user": 4, "max_running_per_user": 1},
            }
        )
    )
    with start_manager(tmp_path / "data", args=("--config", str(config))) as m:
        # The tokens the run may revoke (DELETE /tokens/{id} tries small ids) are another user's, not its own.
        m.add_user("other")
        for _ in range(8):
            m.token("other")
        out = subprocess.run(
            [
                ST,
                "--config-file",
                str(CONFIG),
                "run",
                m.url + "/api/v1/openapi.json",
                "--checks",
                "all",
                "--header",
                f"Authorization: Bearer {m.token()}",
                "--max-examples",
                str(EXAMPLES),
                "--seed",
                str(SEED),
                "--workers",
                "2",
                "--no-color",
                "--generation-database",
                "none",
            ],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=900,
        )
        assert out.returncode == 0, out.stdout[-12000:] + out.stderr[-2000:]


GENERATOR = "openapi-python-client==0.29.1"


@pytest.fixture(scope="session")
def generator() -> Path:
    """openapi-python-client, in a virtual environment of its own (it pins a typer the manager does not use)."""
    venv = Path.home() / ".cache" / "devyard" / "test-tools" / GENERATOR.replace("==", "-")
    command = venv / "bin" / "openapi-python-client"
    if not command.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
        pip = [str(venv / "bin" / "pip"), "install", "--quiet", "--disable-pip-version-check", GENERATOR]
        subprocess.run(pip, check=True, timeout=600)
    return command


def test_a_generated_typed_client_creates_opens_and_deletes(
    engine: install.Engine, generator: Path, tmp_path: Path
) -> None:
    # Path mode: the workspace opens under the manager's own address, with the same bearer token.
    with start_manager(tmp_path / "data", {"DEVYARD_WORKSPACE_DOMAIN": "none"}) as m:
        auth = {"authorization": f"Bearer {m.token()}"}
        spec = tmp_path / "openapi.json"
        spec.write_text(httpx.get(m.url + "/api/v1/openapi.json", headers=auth).text)
        # Enums as Literal types: the time zones' enum has names a Python enum cannot tell apart (GMT+0, GMT-0).
        generator_config = tmp_path / "generator.yaml"
        generator_config.write_text("literal_enums: true\n")
        made = subprocess.run(
            [
                str(generator),
                "generate",
                "--path",
                str(spec),
                "--output-path",
                str(tmp_path / "devyard_api"),
                "--meta",
                "none",
                "--config",
                str(generator_config),
            ],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert made.returncode == 0, made.stdout + made.stderr
        sys.path.insert(0, str(tmp_path))
        try:
            client_module = importlib.import_module("devyard_api")
            models = importlib.import_module("devyard_api.models")
            ops = ("create_workspace", "get_workspace", "delete_workspace")
            workspaces = SimpleNamespace(
                **{op: importlib.import_module(f"devyard_api.api.workspaces.{op}") for op in ops}
            )
        finally:
            sys.path.remove(str(tmp_path))
        client = client_module.AuthenticatedClient(base_url=m.url, token=m.token(), raise_on_unexpected_status=True)
        with client:
            # Typed all the way: a WorkspaceCreate in, a Workspace out, its status a Literal of the schema's.
            created = workspaces.create_workspace.sync(client=client, body=models.WorkspaceCreate(name="typed"))
            assert isinstance(created, models.Workspace) and created.name == "typed"

            def running() -> bool:
                found = workspaces.get_workspace.sync(name="typed", client=client)
                return isinstance(found, models.Workspace) and found.status == "running"

            wait_for(running, 120, "the workspace to run")
            # Open: the workbench through the gateway, as the same user.
            opened = httpx.get(m.url + created.url, headers=auth, follow_redirects=True, timeout=60)
            assert opened.status_code == 200 and "vscode" in opened.text.lower()
            # A refusal is typed too: the schema's ErrorBody.
            missing = workspaces.get_workspace.sync_detailed(name="nosuch", client=client)
            assert missing.status_code == 404 and isinstance(missing.parsed, models.ErrorBody)
            assert missing.parsed.error.code == "workspace_not_found"
            assert workspaces.delete_workspace.sync_detailed(name="typed", client=client).status_code == 204
            gone = workspaces.get_workspace.sync_detailed(name="typed", client=client)
            assert gone.status_code == 404
