"""What makes a build dirty: anything built that is not in the commit (real git, no Docker)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from dcforge.infra import gitinfo
from dcforge.infra.runner import Runner

pytestmark = pytest.mark.integration


def git(root: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(root), "-c", "user.name=t", "-c", "user.email=t@x", *args],
        capture_output=True,
        text=True,
        check=True,
    ).stdout


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    (tmp_path / "ctx").mkdir()
    (tmp_path / "ctx/Dockerfile").write_text("FROM scratch\n")
    (tmp_path / ".gitignore").write_text("*.log\n")
    git(tmp_path, "init", "-q", "-b", "main")
    git(tmp_path, "add", "-A")
    git(tmp_path, "commit", "-q", "-m", "x")
    return tmp_path


def dirty(repo: Path, env: dict[str, str] | None = None) -> bool:
    import os

    runner = Runner(env={"PATH": os.environ["PATH"]})
    return gitinfo.current(runner, repo, env or {}, [repo / "ctx"]).dirty


def test_a_clean_checkout_is_clean_and_outside_files_do_not_count(repo: Path) -> None:
    assert not dirty(repo)
    (repo / "notes.txt").write_text("not built\n")
    assert not dirty(repo)


@pytest.mark.parametrize(
    "make_dirty",
    [
        lambda r: (r / "ctx/Dockerfile").write_text("FROM busybox\n"),
        lambda r: (r / "ctx/extra.txt").write_text("untracked, built\n"),
        lambda r: (r / "ctx/build.log").write_text("ignored by git, still sent to BuildKit\n"),
    ],
    ids=["tracked change", "untracked in context", "ignored in context"],
)
def test_what_is_built_but_not_committed_is_dirty(repo: Path, make_dirty: object) -> None:
    make_dirty(repo)  # type: ignore[operator]
    assert dirty(repo)


def test_files_git_was_told_to_overlook_are_dirty(repo: Path) -> None:
    git(repo, "update-index", "--skip-worktree", "ctx/Dockerfile")
    (repo / "ctx/Dockerfile").write_text("FROM evil\n")
    assert git(repo, "status", "--porcelain") == ""  # git itself says clean
    assert dirty(repo)


def test_an_override_sha_never_makes_a_tree_clean(
    repo: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    sha = "a" * 40
    (repo / "ctx/extra.txt").write_text("x\n")
    assert dirty(repo, {"DCFORGE_GIT_SHA": sha})
    elsewhere = tmp_path_factory.mktemp("not-a-checkout")
    import os

    info = gitinfo.current(
        Runner(env={"PATH": os.environ["PATH"]}), elsewhere, {"DCFORGE_GIT_SHA": sha}
    )
    assert (info.sha, info.dirty) == (sha, True)


def test_descends_reads_history_and_says_when_a_shallow_clone_cannot_tell(
    repo: Path, tmp_path: Path
) -> None:
    import os

    runner = Runner(env={"PATH": os.environ["PATH"]})
    first = git(repo, "rev-parse", "HEAD").strip()
    (repo / "ctx/Dockerfile").write_text("FROM scratch\nLABEL b=1\n")
    git(repo, "commit", "-q", "-am", "b")
    second = git(repo, "rev-parse", "HEAD").strip()
    git(repo, "checkout", "-q", "-b", "side", first)
    (repo / "ctx/Dockerfile").write_text("FROM scratch\nLABEL c=1\n")
    git(repo, "commit", "-q", "-am", "c")
    side = git(repo, "rev-parse", "HEAD").strip()
    assert gitinfo.descends(runner, repo, first, second) is True
    assert gitinfo.descends(runner, repo, second, second) is True
    assert gitinfo.descends(runner, repo, second, first) is False
    assert gitinfo.descends(runner, repo, second, side) is False  # a branch off an older one
    # actions/checkout's default: one commit. It cannot tell, and says so (None).
    shallow = tmp_path / "shallow"
    subprocess.run(
        ["git", "clone", "-q", "--depth=1", "-b", "main", f"file://{repo}", str(shallow)],
        check=True,
    )
    assert gitinfo.descends(runner, shallow, first, second) is None
    assert gitinfo.descends(runner, shallow, "f" * 40, second) is None


def test_a_build_is_dated_by_its_commits_committer_time(repo: Path) -> None:
    """SOURCE_DATE_EPOCH is the committer time (not the author's, which a rebase keeps), of
    HEAD for a dirty tree too; the environment's only where git cannot tell."""
    import os

    runner = Runner(env={"PATH": os.environ["PATH"]})
    (repo / "ctx/Dockerfile").write_text("FROM scratch\nLABEL c=1\n")
    dates = {
        "GIT_AUTHOR_DATE": "2020-01-01T00:00:00Z",
        "GIT_COMMITTER_DATE": "2024-05-01T12:00:00Z",
    }
    subprocess.run(
        ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@x",
         "commit", "-q", "-am", "dated"],
        env={**os.environ, **dates}, check=True,
    )  # fmt: skip
    info = gitinfo.current(runner, repo, {"SOURCE_DATE_EPOCH": "1"}, [repo / "ctx"])
    assert info.commit_time == 1714564800
    (repo / "ctx/Dockerfile").write_text("FROM scratch\nLABEL c=2\n")
    assert gitinfo.current(runner, repo, {}, [repo / "ctx"]).commit_time == 1714564800
    missing = {"DCFORGE_GIT_SHA": "f" * 40}
    assert gitinfo.current(runner, repo, missing, []).commit_time is None
    assert gitinfo.current(runner, repo, {**missing, "SOURCE_DATE_EPOCH": "7"}).commit_time == 7
