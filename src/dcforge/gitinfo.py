"""The git commit a build belongs to."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from dcforge.errors import ConfigError, ToolError
from dcforge.runner import Runner

SHA_RE = re.compile(r"^[0-9a-f]{40}$")


@dataclass(frozen=True)
class GitInfo:
    sha: str
    dirty: bool


def current(runner: Runner, root: Path, env: Mapping[str, str]) -> GitInfo:
    """HEAD of ``root`` (``DCFORGE_GIT_SHA`` overrides, for builds outside a checkout)."""
    override = env.get("DCFORGE_GIT_SHA", "")
    if override:
        if not SHA_RE.match(override):
            raise ConfigError(f"DCFORGE_GIT_SHA={override!r} is not a full 40-hex commit SHA")
        return GitInfo(override, False)
    try:
        sha = runner.run(
            ["git", "-C", root, "rev-parse", "--verify", "HEAD^{commit}"],
            timeout=30,
            mutates=False,
        ).stdout.strip()
        status = runner.run(
            ["git", "-C", root, "status", "--porcelain", "--untracked-files=no"],
            timeout=60,
            mutates=False,
        ).stdout
    except ToolError as err:
        raise ConfigError(
            f"{root} is not a git checkout with a commit ({err}) — commit first or set "
            "DCFORGE_GIT_SHA"
        ) from None
    if not SHA_RE.match(sha):
        raise ConfigError(f"git returned {sha!r} for HEAD, not a commit SHA")
    return GitInfo(sha, bool(status.strip()))
