"""A build's inputs, resolved against the registry: each base reference to a digest (and,
for a multi-platform base, each platform's image), each registry Feature pinned by digest,
and — for the checks after a build — each base image's config. What it makes is the plan
of :mod:`dcforge.core.build_plan`, with every input hashed."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from dcforge.core import build_plan, devcontainer, oci_archive, permfile
from dcforge.core.build_plan import PlannedPermutation
from dcforge.core.errors import ConfigError, RegistryError
from dcforge.core.hashing import input_hash
from dcforge.core.refs import at_digest
from dcforge.infra.tools import devcontainer_cli
from dcforge.infra.tools.registry import Registry


def resolve(
    reg: Registry,
    perms: Sequence[permfile.Permutation],
    *,
    dry_run: bool = False,
    base_configs: bool = False,
) -> list[PlannedPermutation]:
    """Resolve every base reference to a digest (once per ref) and hash the inputs;
    ``base_configs``: also fetch each base image's config (what a build checks against).
    ``dry_run``: the bases' digests only (no index, no config)."""
    refs = sorted({p.base_ref for p in perms})

    def base(ref: str) -> tuple[str, dict[str, str]]:
        digest = reg.resolve(ref)
        if dry_run:
            return digest, {}
        return digest, oci_archive.index_children(reg.manifest(at_digest(ref, digest)), ref)

    wanted = {p.name: build_plan.feature_refs(p) for p in perms}
    features = sorted({ref for refs in wanted.values() for ref in refs.values()})
    with ThreadPoolExecutor(max_workers=max(1, min(8, len(refs) + len(features)))) as pool:
        bases = dict(zip(refs, pool.map(base, refs), strict=True))
        digests = pool.map(lambda ref: _pin_feature(reg, ref), features)
        pinned = dict(zip(features, digests, strict=True))
    contexts: dict[Path, list[tuple[str, str, int]]] = {}
    configs: dict[str, Mapping[str, Any]] = {}  # base image digest → its config
    cli = devcontainer_cli.pinned_version()
    planned = []
    for p in perms:
        digest, children = bases[p.base_ref]
        pins = {ref: pinned[to_pin] for ref, to_pin in wanted[p.name].items()}
        platforms = build_plan.base_platforms(p, digest, children, dry_run)
        planned.append(
            PlannedPermutation(
                p,
                digest,
                input_hash(p, digest, contexts, pins, cli if p.devcontainer else ""),
                platforms,
                features=pins,
                base_configs=_base_configs(reg, p, platforms, configs)
                if base_configs and not dry_run
                else {},
            )
        )
    return planned


def _base_configs(
    reg: Registry,
    perm: permfile.Permutation,
    platforms: Mapping[str, str],
    seen: dict[str, Mapping[str, Any]],
) -> dict[str, Mapping[str, Any]]:
    """platform → the base image's config (fetched once per base image): the layers a
    devcontainer.json image must start with, the label it inherits."""
    out = {}
    for platform, digest in platforms.items():
        if digest not in seen:
            ref = at_digest(perm.base_ref, digest)
            config_digest = str(reg.manifest(ref).get("config", {}).get("digest", ""))
            seen[digest] = reg.blob_json(at_digest(perm.base_ref, config_digest))
        out[platform] = seen[digest]
    return out


def _pin_feature(reg: Registry, ref: str) -> str:
    """``repository@sha256:…`` of a Feature reference, as the registry serves it now (a
    digest reference must exist with that digest)."""
    name = ref.split("@", 1)[0]
    tagged = "@" in ref or ":" in name.rsplit("/", 1)[-1]
    try:
        digest = reg.resolve(ref if tagged else f"{ref}:latest")
    except RegistryError as err:
        raise ConfigError(f"Feature {ref}: {err}") from None
    if "@" in ref and ref.split("@", 1)[1] != digest:
        raise ConfigError(f"Feature {ref}: the registry serves {digest} for it")
    return f"{devcontainer.feature_repository(ref)}@{digest}"
