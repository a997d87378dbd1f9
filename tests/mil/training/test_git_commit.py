"""The commit a run records is mil's own checkout's, never the repository the user happens to run from."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

import mil
from mil.training.rundir import git_commit

SOURCE = Path(mil.__file__).resolve().parent


def _git(*args: str, cwd: Path) -> str:
    env = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t", "PATH": "/usr/bin:/bin"}  # fmt: skip
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True, env=env).stdout


@pytest.mark.skipif(shutil.which("git") is None, reason="no git")
def test_a_run_started_inside_another_repository_records_mils_commit(tmp_path, monkeypatch):
    other = tmp_path / "my_project"
    other.mkdir()
    _git("init", "-q", cwd=other)
    _git("commit", "-q", "--allow-empty", "-m", "x", cwd=other)
    theirs = _git("rev-parse", "HEAD", cwd=other).strip()
    monkeypatch.chdir(other)
    try:
        ours = _git("rev-parse", "HEAD", cwd=SOURCE).strip()
    except subprocess.CalledProcessError:
        ours = None  # mil installed from a wheel: no commit to record
    assert git_commit() == ours and git_commit() != theirs
