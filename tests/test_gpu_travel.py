"""gpu/travel.sh: committed paths leave a device call's working tree and come back unchanged."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="needs git")


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True).stdout


def _travel(repo: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(ROOT / "gpu" / "travel.sh"), *args], cwd=repo, capture_output=True, text=True)


def _travelling(repo: Path) -> set[str]:
    """What the device tool sends: tracked and untracked-not-ignored files."""
    return set(_git(repo, "ls-files", "--cached", "--others", "--exclude-standard").split())


@pytest.fixture
def repo(tmp_path):
    _git(tmp_path, "init", "-q")
    _git(tmp_path, "config", "user.email", "t@example.com")
    _git(tmp_path, "config", "user.name", "t")
    for name, size in {"run/a.bin": 3 << 20, "run/sub/b.bin": 1 << 20, "keep.txt": 10}.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x" * size)
    _git(tmp_path, "add", ".")
    _git(tmp_path, "commit", "-qm", "init")
    return tmp_path


def test_left_paths_stop_travelling_and_come_back(repo):
    done = _travel(repo, "leave", "run/")
    assert done.returncode == 0, done.stderr
    assert _travelling(repo) == {"keep.txt"}
    assert (repo / "run" / "a.bin").stat().st_size == 3 << 20  # still in the working tree
    assert "0.0 MiB travel" in done.stdout

    back = _travel(repo, "back")
    assert back.returncode == 0, back.stderr
    assert _travelling(repo) == {"keep.txt", "run/a.bin", "run/sub/b.bin"}
    assert _git(repo, "status", "--porcelain") == ""
    assert "4.0 MiB travel" in back.stdout


def test_a_second_leave_is_refused_until_back(repo):
    assert _travel(repo, "leave", "run").returncode == 0
    again = _travel(repo, "leave", "keep.txt")
    assert again.returncode == 2 and "run" in again.stderr and "back" in again.stderr
    assert "keep.txt" in _travelling(repo)
    assert _travel(repo, "back").returncode == 0


def test_a_missing_path_is_named(repo):
    done = _travel(repo, "leave", "nope")
    assert done.returncode == 2 and "nope" in done.stderr
    assert _travel(repo, "back").stdout.strip() == "nothing was left behind"


def test_back_says_when_a_commit_deleted_a_left_path(repo):
    assert _travel(repo, "leave", "run").returncode == 0
    _git(repo, "commit", "-qm", "oops")  # commits the index removal
    back = _travel(repo, "back")
    assert back.returncode == 1 and "git checkout HEAD~1 -- run" in back.stderr
