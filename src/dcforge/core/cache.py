"""Build-cache scoping (pure): CI context in, buildx ``cache-from``/``cache-to`` out.

The cache-poisoning rule: a pull request reads its own scope and the default branch's,
and writes only its own. The default branch writes ``main-<perm>-<hash>``; nothing a PR
runs can write there. ``<hash>`` is a short hash of the permutation's Dockerfile, so a new
Dockerfile starts a new cache line (like ``hashFiles()`` keys in Actions).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MAIN_SCOPE = "main"
LOCAL_SCOPE = "local"


@dataclass(frozen=True)
class CiContext:
    """What the cache scope depends on, read from GitHub's environment and event payload."""

    event: str = ""
    ref: str = ""
    default_branch: str = "main"
    pr_number: int | None = None
    fork: bool = False

    @property
    def on_ci(self) -> bool:
        return bool(self.event)


@dataclass(frozen=True)
class CacheArgs:
    scope: str
    cache_from: tuple[str, ...]
    cache_to: tuple[str, ...]


def ci_context(
    env: Mapping[str, str], event: Mapping[str, Any] | None, default_branch: str
) -> CiContext:
    """Build the context from ``GITHUB_*`` variables and the decoded ``GITHUB_EVENT_PATH``."""
    if not env.get("GITHUB_ACTIONS"):
        return CiContext(default_branch=default_branch)
    event = event or {}
    repo = event.get("repository") if isinstance(event.get("repository"), dict) else {}
    branch = str((repo or {}).get("default_branch") or default_branch)
    pr = event.get("pull_request") if isinstance(event.get("pull_request"), dict) else None
    number: int | None = None
    fork = False
    if pr is not None:
        raw = pr.get("number", event.get("number"))
        number = raw if isinstance(raw, int) and not isinstance(raw, bool) else None
        head = pr.get("head") if isinstance(pr.get("head"), dict) else {}
        head_repo = (head or {}).get("repo") if isinstance((head or {}).get("repo"), dict) else {}
        fork = bool((head_repo or {}).get("fork"))
    if number is None and env.get("GITHUB_REF", "").startswith("refs/pull/"):
        m = re.match(r"refs/pull/(\d+)/", env["GITHUB_REF"])
        number = int(m.group(1)) if m else None
    return CiContext(
        event=env.get("GITHUB_EVENT_NAME", "unknown"),
        ref=env.get("GITHUB_REF", ""),
        default_branch=branch,
        pr_number=number,
        fork=fork,
    )


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")[:40] or "x"


def scope(ctx: CiContext) -> str:
    """``main``, ``pr-<n>``, ``tag-<name>``, ``branch-<name>`` or ``local``."""
    if not ctx.on_ci:
        return LOCAL_SCOPE
    if ctx.event.startswith("pull_request") or ctx.pr_number is not None:
        return f"pr-{ctx.pr_number}" if ctx.pr_number is not None else "pr-unknown"
    if ctx.ref == f"refs/heads/{ctx.default_branch}":
        return MAIN_SCOPE
    if ctx.ref.startswith("refs/tags/"):
        return "tag-" + _slug(ctx.ref.removeprefix("refs/tags/"))
    return "branch-" + _slug(ctx.ref.removeprefix("refs/heads/"))


def cache_key(scope_name: str, permutation: str, dockerfile_hash: str) -> str:
    return f"{scope_name}-{permutation}-{dockerfile_hash[:12]}"


def cache_args(
    ctx: CiContext,
    backend: str,
    permutation: str,
    dockerfile_hash: str,
    *,
    local_dir: Path,
    cache_registry: str = "",
) -> CacheArgs:
    """buildx cache arguments for one permutation. ``backend``: local, registry, gha or none."""
    own = scope(ctx)
    if backend == "none":
        return CacheArgs(own, (), ())
    keys_from = [cache_key(own, permutation, dockerfile_hash)]
    if own != MAIN_SCOPE and ctx.on_ci:
        keys_from.append(cache_key(MAIN_SCOPE, permutation, dockerfile_hash))
    write_key = cache_key(own, permutation, dockerfile_hash)
    # A fork's PR holds no registry credentials worth trusting: read only.
    may_write = not (ctx.fork and backend == "registry")
    if backend == "gha":
        cfrom = [f"type=gha,scope={k}" for k in keys_from]
        cto = [f"type=gha,scope={write_key},mode=max"]
    elif backend == "registry":
        cfrom = [f"type=registry,ref={cache_registry}:{k}" for k in keys_from]
        cto = [
            f"type=registry,ref={cache_registry}:{write_key},mode=max,"
            "image-manifest=true,oci-mediatypes=true"
        ]
    elif backend == "local":
        cfrom = [f"type=local,src={local_dir / k}" for k in keys_from]
        cto = [f"type=local,dest={local_dir / write_key},mode=max"]
    else:
        raise ValueError(f"unknown cache backend {backend!r}")
    return CacheArgs(own, tuple(cfrom), tuple(cto) if may_write else ())
