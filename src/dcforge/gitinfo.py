"""The git commit a build belongs to."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from dcforge.errors import ConfigError, ToolError
from dcforge.runner import Runner

SHA_RE = re.compile(r"^[0-9a-f]{40}$")


@dataclass(frozen=True)
class GitInfo:
    sha: str
    dirty: bool


def current(
    runner: Runner, root: Path, env: Mapping[str, str], contexts: Sequence[Path] = ()
) -> GitInfo:
    """HEAD of ``root`` and whether the tree is dirty: a change to a tracked file, or an
    untracked (not ignored) file inside one of the build ``contexts`` — both are built but
    are not in the commit the provenance names.

    ``DCFORGE_GIT_SHA`` overrides the SHA (builds outside a checkout), never the dirtiness:
    a checkout is still inspected, and without one the tree cannot be shown clean.
    """
    override = env.get("DCFORGE_GIT_SHA", "")
    if override and not SHA_RE.match(override):
        raise ConfigError(f"DCFORGE_GIT_SHA={override!r} is not a full 40-hex commit SHA")
    try:
        sha = _git(runner, root, "rev-parse", "--verify", "HEAD^{commit}").strip()
        tracked = _git(runner, root, "status", "--porcelain", "--untracked-files=no")
        untracked = (
            _git(
                runner,
                root,
                "ls-files",
                "--others",
                "--exclude-standard",
                "--",
                *map(str, contexts),
            )
            if contexts
            else ""
        )
    except ToolError as err:
        if override:
            return GitInfo(override, True)
        raise ConfigError(
            f"{root} is not a git checkout with a commit ({err}) — commit first or set "
            "DCFORGE_GIT_SHA"
        ) from None
    if not SHA_RE.match(sha):
        raise ConfigError(f"git returned {sha!r} for HEAD, not a commit SHA")
    return GitInfo(override or sha, bool(tracked.strip() or untracked.strip()))


def _git(runner: Runner, root: Path, *args: str) -> str:
    return runner.run(["git", "-C", root, *args], timeout=60, mutates=False).stdout
