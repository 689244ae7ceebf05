"""Workshops: one workspace per user from one template in one call, followed, then torn down in one call."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from devyard.engine import install
from tests.support import Manager, make_repo, start_manager, wait_for

STUDENTS = ["ana", "ben", "chloe"]


@pytest.fixture(scope="module")
def workshop(engine: install.Engine, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Manager]:
    base = tmp_path_factory.mktemp("workshop")
    repo = make_repo(base / "repos" / "course.git", {"lesson1.md": "# Lesson 1\n"})
    config = base / "devyard.yaml"
    config.write_text(
        json.dumps(
            {
                "devyard": {"git_file_roots": [str(base / "repos")]},
                "packaged_assets": {
                    "tabs": [{"name": "Course", "items": [{"name": "Lesson", "github_url": f"file://{repo}"}]}]
                },
            }
        )
    )
    m = start_manager(base / "data", args=("--config", str(config)))
    try:
        for user in STUDENTS:
            out = m.cli(
                "user",
                "add",
                user,
                "--password-stdin",
                "--data-dir",
                str(m.data_dir),
                token=None,
                input=f"{user}-password\n",
            )
            assert out.returncode == 0, out.stderr
        yield m
    finally:
        m.stop()


def test_bulk_create_and_teardown_by_api(workshop: Manager) -> None:
    m = workshop
    with m.api() as api:
        r = api.post(
            "/workspaces/bulk", json={"users": [*STUDENTS, "nobody", "ana"], "name": "lab", "template": "Lesson"}
        )
        assert r.status_code == 201, r.text
        outcomes = r.json()
        assert [o["user"] for o in outcomes] == [*STUDENTS, "nobody"]
        assert all(o["workspace"] and o["workspace"]["owner"] == o["user"] for o in outcomes[:3])
        assert outcomes[3]["workspace"] is None and "no user" in outcomes[3]["error"]
        for user in STUDENTS:
            m.wait_status("lab", "running", token=user)
            assert (m.data_dir / "workspaces" / user / "lab" / "files" / "lesson1.md").read_text() == "# Lesson 1\n"
        again = api.post("/workspaces/bulk", json={"users": ["ana"], "name": "lab", "template": "Lesson"}).json()
        assert again[0]["error"] and "already" in again[0]["error"]
        with m.api("ana") as student:
            assert student.post("/workspaces/bulk", json={"users": ["ben"], "name": "x"}).status_code == 403
            assert student.post("/workspaces/bulk/delete", json={"users": ["ben"], "name": "lab"}).status_code == 403
        gone = api.post("/workspaces/bulk/delete", json={"users": [*STUDENTS, "nobody"], "name": "lab"}).json()
        assert [o["error"] for o in gone[:3]] == [None, None, None] and gone[3]["error"]
        assert not [w for w in api.get("/workspaces", params={"all": "1"}).json() if w["name"] == "lab"]
    assert not m.engine_pids()


def test_bulk_by_cli_with_a_users_file(workshop: Manager, tmp_path: Path) -> None:
    m = workshop
    users = tmp_path / "students.txt"
    users.write_text("# the Tuesday group\nana\nben   # late\n\nchloe\n")
    out = m.cli("ws", "create", "class", "--template", "Lesson", "--for-users", str(users))
    assert out.returncode == 0, out.stdout + out.stderr
    assert all(u in out.stdout for u in STUDENTS) and "running" in out.stdout
    with m.api() as api:
        owners = sorted(w["owner"] for w in api.get("/workspaces", params={"all": "1"}).json() if w["name"] == "class")
        assert owners == sorted(STUDENTS)
    out = m.cli("ws", "rm", "class", "--for-users", str(users))
    assert out.returncode == 0 and out.stdout.count("deleted") == 3
    wait_for(lambda: not m.engine_pids(), 30, "every engine to stop")
    empty = tmp_path / "empty.txt"
    empty.write_text("# nobody\n")
    out = m.cli("ws", "create", "class", "--for-users", str(empty))
    assert out.returncode == 1 and "names no users" in out.stderr
