"""The git commit a build belongs to."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from dcforge.core.errors import ConfigError, ToolError
from dcforge.infra.runner import Runner

SHA_RE = re.compile(r"^[0-9a-f]{40}$")
SECONDS_RE = re.compile(r"^[0-9]{1,12}$")


@dataclass(frozen=True)
class GitInfo:
    sha: str
    dirty: bool
    # The commit's committer time (seconds since 1970, UTC): the build's SOURCE_DATE_EPOCH.
    # A dirty tree is dated by its HEAD commit too. None: no checkout here holds the commit.
    commit_time: int | None = None


def current(
    runner: Runner, root: Path, env: Mapping[str, str], contexts: Sequence[Path] = ()
) -> GitInfo:
    """HEAD of ``root`` and whether the tree is dirty: anything built that is not in the
    commit the provenance names — a change to a tracked file (also one git was told to
    overlook: skip-worktree, assume-unchanged), or any untracked file, ignored or not,
    inside a build context or the permutations passed in ``contexts`` (BuildKit sends
    ignored files too, unless a .dockerignore drops them).

    ``DCFORGE_GIT_SHA`` overrides the SHA (builds outside a checkout), never the dirtiness:
    a checkout is still inspected, and without one the tree cannot be shown clean.

    The commit time is the committer time of that commit (HEAD, or the override's when the
    checkout holds it). Only where git cannot tell — no checkout, or one without the
    override's commit — is ``SOURCE_DATE_EPOCH`` from the environment taken instead; a
    value there never overrides what git says.
    """
    override = env.get("DCFORGE_GIT_SHA", "")
    if override and not SHA_RE.match(override):
        raise ConfigError(f"DCFORGE_GIT_SHA={override!r} is not a full 40-hex commit SHA")
    try:
        sha = _git(runner, root, "rev-parse", "--verify", "HEAD^{commit}").strip()
        dirty = _dirty(runner, root, contexts)
    except ToolError as err:
        if override:
            return GitInfo(override, True, _env_epoch(env))
        raise ConfigError(
            f"{root} is not a git checkout with a commit ({err}) — commit first or set "
            "DCFORGE_GIT_SHA"
        ) from None
    if not SHA_RE.match(sha):
        raise ConfigError(f"git returned {sha!r} for HEAD, not a commit SHA")
    commit = override or sha
    return GitInfo(commit, dirty, _commit_time(runner, root, commit, env))


def _commit_time(runner: Runner, root: Path, commit: str, env: Mapping[str, str]) -> int | None:
    """``commit``'s committer time from git (``%ct``); else SOURCE_DATE_EPOCH, else None."""
    found = runner.run(
        ["git", "-C", root, "show", "-s", "--format=%ct", f"{commit}^{{commit}}", "--"],
        timeout=60,
        mutates=False,
        check=False,
    )
    text = found.stdout.strip()
    if found.returncode == 0 and SECONDS_RE.match(text):
        return int(text)
    return _env_epoch(env)


def _env_epoch(env: Mapping[str, str]) -> int | None:
    raw = env.get("SOURCE_DATE_EPOCH", "").strip()
    if not raw:
        return None
    if not SECONDS_RE.match(raw):
        raise ConfigError(
            f"environment: SOURCE_DATE_EPOCH={raw!r} is not a time in seconds since 1970 "
            "(git log -1 --format=%ct gives the commit's)"
        )
    return int(raw)


def _dirty(runner: Runner, root: Path, contexts: Sequence[Path]) -> bool:
    if _git(runner, root, "status", "--porcelain", "--untracked-files=no").strip():
        return True
    # `ls-files -v`: a lowercase tag is assume-unchanged, S is skip-worktree.
    flags = _git(runner, root, "ls-files", "-v").splitlines()
    if any(line[:1].islower() or line.startswith("S ") for line in flags):
        return True
    paths = [str(c) for c in contexts]
    return bool(paths and _git(runner, root, "ls-files", "--others", "--", *paths).strip())


def _git(runner: Runner, root: Path, *args: str) -> str:
    return runner.run(["git", "-C", root, *args], timeout=60, mutates=False).stdout


def descends(runner: Runner, root: Path, ancestor: str, commit: str) -> bool | None:
    """Whether ``commit`` is ``ancestor`` or has it in its history; None when this
    checkout cannot tell (it lacks either commit, or is a shallow clone cut above
    ``ancestor``)."""

    def git(*args: str, ok: tuple[int, ...] = (0,)) -> int:
        argv = ["git", "-C", str(root), *args]
        return runner.run(argv, timeout=60, mutates=False, ok_codes=ok, check=False).returncode

    if any(git("cat-file", "-e", f"{c}^{{commit}}") != 0 for c in (ancestor, commit)):
        return None
    found = git("merge-base", "--is-ancestor", ancestor, commit, ok=(0, 1))
    if found not in (0, 1):
        raise ToolError(f"git merge-base --is-ancestor {ancestor[:12]} {commit[:12]} failed")
    if found == 0:
        return True
    shallow = _git(runner, root, "rev-parse", "--is-shallow-repository").strip() == "true"
    return None if shallow else False


def origin_url(runner: Runner, root: Path) -> str:
    """The URL of the ``origin`` remote of ``root`` ('' when there is none)."""
    result = runner.run(
        ["git", "-C", root, "remote", "get-url", "origin"],
        timeout=30,
        mutates=False,
        check=False,
    )
    return result.stdout.strip()
