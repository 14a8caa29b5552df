"""The git commit a build belongs to."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from dcforge.core.errors import ConfigError, ToolError
from dcforge.infra.runner import Runner

SHA_RE = re.compile(r"^[0-9a-f]{40}$")


@dataclass(frozen=True)
class GitInfo:
    sha: str
    dirty: bool


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
    """
    override = env.get("DCFORGE_GIT_SHA", "")
    if override and not SHA_RE.match(override):
        raise ConfigError(f"DCFORGE_GIT_SHA={override!r} is not a full 40-hex commit SHA")
    try:
        sha = _git(runner, root, "rev-parse", "--verify", "HEAD^{commit}").strip()
        dirty = _dirty(runner, root, contexts)
    except ToolError as err:
        if override:
            return GitInfo(override, True)
        raise ConfigError(
            f"{root} is not a git checkout with a commit ({err}) — commit first or set "
            "DCFORGE_GIT_SHA"
        ) from None
    if not SHA_RE.match(sha):
        raise ConfigError(f"git returned {sha!r} for HEAD, not a commit SHA")
    return GitInfo(override or sha, dirty)


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
