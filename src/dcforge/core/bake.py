"""Bake targets (pure): a planned permutation → what buildx (or, for a devcontainer.json,
the Dev Containers CLI) is asked to build, the bake file they make, and how they split
over bake sessions. :mod:`dcforge.infra.tools.buildx` runs the bake."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dcforge.core import cache, staging
from dcforge.core.build_plan import PlannedPermutation
from dcforge.core.errors import BuildError
from dcforge.core.hashing import file_sha256
from dcforge.core.refs import at_digest
from dcforge.core.settings import Settings

# BuildKit loses track of a bake's jobs with hundreds of targets in one invocation ("failed
# to receive status: … no such job", seen here at 256): a session bakes at most this many
# at a time.
BAKE_MAX_TARGETS = 32


@dataclass(frozen=True)
class Target:
    """One bake target: everything buildx needs to build one permutation."""

    name: str
    context: Path
    dockerfile: Path
    args: Mapping[str, str]
    platforms: Sequence[str]
    tags: Sequence[str]
    labels: Mapping[str, str]
    output_tar: Path
    cache_from: Sequence[str] = ()
    cache_to: Sequence[str] = ()
    no_cache: bool = False  # every step rebuilt (a refresh: the fix is in the package mirror)
    devcontainer: Path | None = None  # a devcontainer.json: the Dev Containers CLI builds it


def bake_name(name: str) -> str:
    """Bake target names allow only ``[a-zA-Z0-9_-]``; permutation names may hold dots."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", name)


def bake_definition(targets: Sequence[Target]) -> dict[str, Any]:
    """A docker-bake.json document building ``targets`` as one group."""
    if any(t.devcontainer for t in targets):
        raise BuildError("a devcontainer.json permutation is built by the Dev Containers CLI")
    return {
        "group": {"default": {"targets": [bake_name(t.name) for t in targets]}},
        "target": {
            bake_name(t.name): {
                "context": str(t.context),
                "dockerfile": str(t.dockerfile),
                "args": dict(t.args),
                "platforms": list(t.platforms),
                "tags": list(t.tags),
                "labels": dict(t.labels),
                "output": [f"type=oci,dest={t.output_tar}"],
                "cache-from": [] if t.no_cache else list(t.cache_from),
                "cache-to": list(t.cache_to),
                **({"no-cache": True, "pull": True} if t.no_cache else {}),
                # Provenance/SBOM are attested by dcforge at publish time, by digest.
                "attest": [],
            }
            for t in targets
        },
    }


def targets(
    settings: Settings,
    env: Mapping[str, str],
    planned: Sequence[PlannedPermutation],
    incoming: Path,
    git_sha: str,
) -> list[Target]:
    """One target per planned permutation: FROM its base by digest, tagged with its
    immutable tag, labelled with its input hash, its archive in ``incoming``, and the build
    cache of this run's scope (a local cache not written yet is not read)."""
    ci = staging.ci_context(settings, env)
    local_dir = settings.state_root / "cache"
    out = []
    for item in planned:
        p = item.perm
        args = cache.cache_args(
            ci,
            settings.cache_backend,
            p.name,
            file_sha256(p.dockerfile),
            local_dir=local_dir,
            cache_registry=settings.cache_registry,
        )
        cache_from = [
            c
            for c in args.cache_from
            if not c.startswith("type=local,") or Path(c.split("src=", 1)[1]).is_dir()
        ]
        out.append(
            Target(
                name=p.name,
                context=p.context,
                dockerfile=p.dockerfile,
                args={**dict(p.build_args), "BASE_IMAGE": at_digest(p.base_ref, item.base_digest)},
                platforms=p.platforms,
                tags=[f"{p.repository}:{p.immutable_tag(git_sha)}"],
                labels={
                    "dev.dcforge.permutation": p.name,
                    "dev.dcforge.input-hash": item.input_hash,
                    "dev.dcforge.base.digest": item.base_digest,
                    **({"devcontainer.metadata": p.metadata} if p.metadata else {}),
                },
                devcontainer=p.devcontainer,
                output_tar=incoming / f"{p.name}.tar",
                cache_from=cache_from,
                cache_to=args.cache_to,
            )
        )
    return out


def groups(targets: Sequence[Target], sessions: int) -> list[list[Target]]:
    """``targets`` dealt round-robin over at most ``sessions`` bake sessions (at least one)."""
    n = max(1, min(sessions, len(targets)))
    return [list(targets[i::n]) for i in range(n)]
