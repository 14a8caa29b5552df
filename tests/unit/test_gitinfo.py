"""The commit a build belongs to, and the time it is dated by, read from a git that answers
as told (no process: the real git is in tests/integration/test_gitinfo.py)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from dcforge.core.errors import ConfigError
from dcforge.infra import gitinfo
from dcforge.infra.runner import Result, Runner

HEAD = "a" * 40
OTHER = "b" * 40


@dataclass
class FakeGit(Runner):
    """A git whose HEAD is ``HEAD``, clean, with the commits (SHA → committer time) of
    ``commits``; ``checkout=False``: not a checkout at all."""

    commits: dict[str, str] = field(default_factory=lambda: {HEAD: "1714564800"})
    checkout: bool = True

    def _execute(
        self,
        args: list[str],
        env: Mapping[str, str],
        cwd: Path | None,
        input_text: str | None,
        timeout: float,
        shown: str,
        secrets: frozenset[str] = frozenset(),
    ) -> Result:
        if not self.checkout:
            return Result(tuple(args), 128, "", "fatal: not a git repository")
        command = args[3]
        if command == "rev-parse":
            return Result(tuple(args), 0, HEAD + "\n", "")
        if command == "show":
            commit = args[-2].removesuffix("^{commit}")
            if commit in self.commits:
                return Result(tuple(args), 0, self.commits[commit] + "\n", "")
            return Result(tuple(args), 128, "", f"fatal: bad object {commit}")
        return Result(tuple(args), 0, "", "")  # status, ls-files: a clean tree


def test_the_commit_is_dated_by_its_committer_time() -> None:
    info = gitinfo.current(FakeGit(), Path("."), {})
    assert (info.sha, info.dirty, info.commit_time) == (HEAD, False, 1714564800)


def test_an_environment_epoch_never_overrides_what_git_says() -> None:
    info = gitinfo.current(FakeGit(), Path("."), {"SOURCE_DATE_EPOCH": "1"})
    assert info.commit_time == 1714564800


def test_an_override_sha_is_dated_by_its_own_commit_when_the_checkout_has_it() -> None:
    git = FakeGit(commits={HEAD: "1714564800", OTHER: "1700000000"})
    info = gitinfo.current(git, Path("."), {"DCFORGE_GIT_SHA": OTHER})
    assert (info.sha, info.commit_time) == (OTHER, 1700000000)


@pytest.mark.parametrize("git", [FakeGit(), FakeGit(checkout=False)], ids=["lacks it", "none"])
def test_where_git_cannot_tell_the_environment_epoch_is_taken(git: FakeGit) -> None:
    """A checkout without the override's commit, or no checkout: SOURCE_DATE_EPOCH, else
    no time at all (the build stage then stops and says how to give one)."""
    env = {"DCFORGE_GIT_SHA": OTHER}
    assert gitinfo.current(git, Path("."), env).commit_time is None
    assert gitinfo.current(git, Path("."), {**env, "SOURCE_DATE_EPOCH": "42"}).commit_time == 42
    with pytest.raises(ConfigError, match="SOURCE_DATE_EPOCH='yesterday' is not a time"):
        gitinfo.current(git, Path("."), {**env, "SOURCE_DATE_EPOCH": "yesterday"})
