"""Unit tests: account names, folder names from the database, and the traversal check."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from devyard.errors import Invalid
from devyard.fields import USER_NAME
from devyard.osaccounts import MAX_NAME, Account, account_name, give, traversal_blocker
from devyard.paths import child


@pytest.mark.parametrize(
    "user", ["alice", "a.b-c_d", "9lives", "x" * 29, "x" * 39, "long.name.with.dots-and-more-than-32"]
)
def test_account_names_are_valid_and_distinct(user: str) -> None:
    assert USER_NAME.match(user)
    name = account_name(user)
    assert name.startswith("dy-") and len(name) <= MAX_NAME
    assert name[0].isalpha() and all(c.isalnum() or c in "-_." for c in name)
    assert account_name(user + "y") != name


def test_short_names_are_kept_readable() -> None:
    assert account_name("alice") == "dy-alice"
    assert account_name("x" * 40).startswith("dy-" + "x" * 20 + "-")


@pytest.mark.parametrize("name", ["", ".", "..", "a/b", "../etc", "a\0b"])
def test_names_never_leave_their_base(name: str, tmp_path: Path) -> None:
    with pytest.raises(Invalid):
        child(tmp_path, "alice", name)
    assert child(tmp_path, "alice", "a..b") == tmp_path / "alice" / "a..b"


def test_traversal_blocker_names_the_closed_folder() -> None:
    base = Path(tempfile.mkdtemp(dir="/var/tmp"))  # below folders every account may pass
    try:
        os.chmod(base, 0o711)
        closed = base / "closed"
        (closed / "inner").mkdir(parents=True)
        os.chmod(closed, 0o700)
        assert traversal_blocker(closed / "inner" / "data") == closed
        os.chmod(closed, 0o711)
        assert traversal_blocker(closed / "inner" / "data") is None
        assert traversal_blocker(base / "not" / "made" / "yet") is None
    finally:
        shutil.rmtree(base)


@pytest.mark.skipif(os.geteuid() != 0, reason="changing owners needs root")
def test_a_folder_handed_to_an_account_never_gives_away_a_links_target(tmp_path: Path) -> None:
    folder = tmp_path / "extensions"
    (folder / "old").mkdir(parents=True)
    (folder / "new-ext").mkdir()
    (folder / "new-ext" / "package.json").write_text("{}")
    (folder / "link").symlink_to("/etc/passwd")
    give(folder, Account("nobody", 65534, 65534))
    for p in (folder, folder / "new-ext", folder / "new-ext" / "package.json", folder / "old", folder / "link"):
        assert (p.lstat().st_uid, p.lstat().st_gid) == (65534, 65534)
    assert os.stat("/etc/passwd").st_uid == 0  # the link itself changed hands, never its target
    assert folder.stat().st_mode & 0o777 == 0o700
    # A file or a link where a folder must be is an error, never followed.
    (tmp_path / "file").write_text("x")
    (tmp_path / "linked").symlink_to(tmp_path / "mine")
    for path in (tmp_path / "file", tmp_path / "linked"):
        with pytest.raises(NotADirectoryError):
            give(path, Account("nobody", 65534, 65534))
