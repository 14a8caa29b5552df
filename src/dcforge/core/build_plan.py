"""What a build builds, decided without a process or the network: the permutations selected
and which of them to refresh, each one's base and Features once resolved
(:class:`PlannedPermutation`), a platform part of them, which an earlier release already
holds unchanged, the manifest entry each becomes; and the CI matrix that shares the
permutations out to jobs.

The registry lookups that fill a plan in are :mod:`dcforge.infra.build_inputs`; the bake
targets made from it are :mod:`dcforge.core.bake`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from dcforge.core import devcontainer, permfile
from dcforge.core import manifest as mf
from dcforge.core.errors import ConfigError
from dcforge.core.settings import Settings


@dataclass(frozen=True)
class PlannedPermutation:
    """A permutation with its base resolved and its input hash computed."""

    perm: permfile.Permutation
    base_digest: str
    input_hash: str
    base_platforms: Mapping[str, str] = field(default_factory=dict)  # platform → digest
    part_of: tuple[str, ...] = ()  # a platform part: every platform of the permutation
    # Registry Features, pinned: reference as written → repository@sha256:… (the lock)
    features: Mapping[str, str] = field(default_factory=dict)
    # A devcontainer.json permutation's base, per platform: its config (the layers the
    # image must start with, the Features its own metadata label already names).
    base_configs: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)


def builtins(settings: Settings) -> dict[str, str]:
    """The values a permutation file may refer to by name (``{registry}``, …)."""
    return {"registry": settings.registry, "base_registry": settings.base_registry}


def load_permutations(settings: Settings, names: Sequence[str] = ()) -> list[permfile.Permutation]:
    """The project's permutations, or those ``names`` selects (comma lists allowed)."""
    perms = permfile.load_all(
        settings.permutations_dir,
        root=settings.root,
        registry=settings.registry,
        builtins=builtins(settings),
        licenses=settings.licenses,
    )
    return permfile.select(perms, names)


def refresh_names(
    settings: Settings, perms: Sequence[permfile.Permutation], refresh: Sequence[str]
) -> list[str]:
    """The selected permutations to refresh. Every name must exist (a typo is an error),
    but a CI job builds only its own share of them (every job gets the whole list)."""
    wanted = [n.strip() for r in refresh for n in r.split(",") if n.strip()]
    if not wanted:
        return []
    selected = {p.name for p in perms}
    return [
        p.name for p in permfile.select(load_permutations(settings), wanted) if p.name in selected
    ]


def feature_refs(perm: permfile.Permutation) -> dict[str, str]:
    """A devcontainer.json permutation's registry Features → what to resolve: the digest
    reference its committed devcontainer-lock.json names, else the reference as written."""
    if not perm.devcontainer:
        return {}
    lock = devcontainer.read_lock(perm.dockerfile)
    return {
        ref: lock.get(ref, ref)
        for ref in perm.feature_refs()
        if not devcontainer.is_local_feature(ref)
    }


def base_platforms(
    perm: permfile.Permutation, digest: str, children: Mapping[str, str], dry_run: bool
) -> dict[str, str]:
    """The base image's digest for each platform the permutation builds (checked now: a
    missing platform would otherwise surface minutes into an emulated build)."""
    if dry_run:
        return {}
    if not children:
        if len(perm.platforms) > 1:
            raise ConfigError(
                f"{perm.source}: '{perm.name}' builds {', '.join(perm.platforms)} but its base "
                f"{perm.base_ref} is a single-platform image — use a multi-platform base"
            )
        return {perm.platforms[0]: digest}
    missing = [pl for pl in perm.platforms if pl not in children]
    if missing:
        raise ConfigError(
            f"{perm.source}: '{perm.name}' builds {', '.join(missing)}, which its base "
            f"{perm.base_ref} ({digest[:19]}) does not have (it has {', '.join(sorted(children))})"
        )
    return {pl: children[pl] for pl in perm.platforms}


def left_out(
    perms: Sequence[permfile.Permutation], platform: str, named: bool
) -> list[permfile.Permutation]:
    """With ``--platform``: the permutations that do not build it, left out of the build.
    Refused when one was asked for by name (``named``), or when none is left to build."""
    out = [p for p in perms if platform and platform not in p.platforms]
    if out and named:
        p = out[0]
        raise ConfigError(
            f"{p.source}: '{p.name}' does not build {platform} "
            f"(its platforms: {', '.join(p.platforms)})"
        )
    if platform and len(out) == len(perms):
        raise ConfigError(f"no selected permutation builds {platform}")
    return out


def platform_parts(
    planned: Sequence[PlannedPermutation], platform: str
) -> list[PlannedPermutation]:
    """With ``--platform``: each permutation declaring it, narrowed to that platform (its
    input hash and base stay the whole permutation's, so that the parts merge into the
    same index a one-machine build makes); the others are left out (see :func:`left_out`)."""
    if not platform:
        return list(planned)
    out = []
    for item in planned:
        p = item.perm
        if platform not in p.platforms:
            continue
        if len(p.platforms) == 1:
            out.append(item)
            continue
        out.append(
            replace(
                item,
                perm=replace(p, platforms=(platform,)),
                base_platforms={pl: d for pl, d in item.base_platforms.items() if pl == platform},
                part_of=p.platforms,
            )
        )
    return out


def unchanged(item: PlannedPermutation, previous: Mapping[str, mf.Entry]) -> mf.Entry | None:
    """The earlier release's entry for this permutation when its inputs (input hash) and
    repository are the same: a build would make the same image, so it may be reused."""
    old = previous.get(item.perm.name)
    if old is None or old.input_hash != item.input_hash or old.repository != item.perm.repository:
        return None
    return old


def reused_entry(
    item: PlannedPermutation, old: mf.Entry, git_sha: str, reused_from: dict[str, str]
) -> mf.Entry:
    """The manifest entry of an unchanged permutation: the earlier release's image, by
    digest (a platform part reuses the whole released index)."""
    whole = item
    if item.part_of:
        whole = replace(
            item,
            perm=replace(item.perm, platforms=item.part_of),
            part_of=(),
            base_platforms=old.base_image.platform_digests,
        )
    return entry(
        whole,
        git_sha,
        digest=old.image_digest,
        tarball="",
        tarball_sha256="",
        built=(old.build_started_at, old.built_at),
        platform_digests=old.platform_images(),
        reused_from=reused_from,
    )


def entry(
    item: PlannedPermutation,
    git_sha: str,
    *,
    digest: str,
    tarball: str,
    tarball_sha256: str,
    built: tuple[str, str],
    platform_digests: Mapping[str, str],
    reused_from: dict[str, str] | None = None,
) -> mf.Entry:
    """The manifest entry of a planned permutation, built now or reused."""
    p = item.perm
    immutable = p.immutable_tag(git_sha)
    return mf.Entry(
        name=p.name,
        tarball=tarball,
        tarball_sha256=tarball_sha256,
        image_digest=digest,
        tags=[f"{p.repository}:{immutable}", *p.floating_refs()],
        base_image=mf.BaseImage(
            ref=p.base_ref, digest=item.base_digest, platform_digests=dict(item.base_platforms)
        ),
        input_hash=item.input_hash,
        platforms=list(p.platforms),
        repository=p.repository,
        immutable_tag=immutable,
        floating_tags=list(p.floating_tags),
        family=p.family,
        build_args=dict(p.build_args),
        smoke=list(p.smoke),
        build_started_at=built[0],
        built_at=built[1],
        reused_from=reused_from,
        os=p.os_mode,
        platform_digests=dict(platform_digests),
        part_of=list(item.part_of),
        features=dict(item.features),
    )


DEFAULT_CI_RUNNER = "ubuntu-24.04"


def ci_matrix(
    perms: Sequence[permfile.Permutation], labels: Mapping[str, str], max_jobs: int = 256
) -> dict[str, list[dict[str, str]]]:
    """The CI build matrix: one job per permutation, or, when every platform of a
    multi-platform permutation has a native runner, one job per platform (a part that
    ``merge-manifests`` joins by digest). Past ``max_jobs`` jobs (GitHub caps a matrix at
    256), the jobs of each runner and platform are grouped: a job then builds a
    comma-separated group of permutations in one bake session."""
    default = labels.get("linux/amd64", DEFAULT_CI_RUNNER)
    units: list[tuple[str, str, str]] = []  # (permutation, platform or "", runner)
    for p in perms:
        if len(p.platforms) > 1 and all(pl in labels for pl in p.platforms):
            units += [(p.name, pl, labels[pl]) for pl in p.platforms]
        else:
            one = labels.get(p.platforms[0], default) if len(p.platforms) == 1 else default
            units.append((p.name, "", one))
    buckets: dict[tuple[str, str], list[str]] = {}
    for name, platform, runner in units:
        buckets.setdefault((platform, runner), []).append(name)
    if len(buckets) > max_jobs:
        raise ConfigError(
            f"max_matrix_jobs = {max_jobs} is fewer than the {len(buckets)} runner/platform "
            "combinations the permutations need — raise it"
        )
    shares = _shares([len(names) for names in buckets.values()], max_jobs)
    include: list[dict[str, str]] = []
    for ((platform, runner), names), share in zip(buckets.items(), shares, strict=True):
        part = platform.replace("/", "-") if platform else "all"
        for group in _split(names, share):
            include.append(
                {"permutation": ",".join(group), "platform": platform, "part": part,
                 "runner": runner, "job": f"{len(include) + 1:04d}"}
            )  # fmt: skip
    return {"include": include}


def _shares(sizes: Sequence[int], max_jobs: int) -> list[int]:
    """Jobs per bucket: one per unit when everything fits; else at least one each and the
    rest by largest remainder, never more than ``max_jobs`` in all."""
    if sum(sizes) <= max_jobs:
        return list(sizes)
    spare = max_jobs - len(sizes)
    total = sum(s - 1 for s in sizes) or 1
    exact = [(s - 1) * spare / total for s in sizes]
    shares = [1 + int(e) for e in exact]
    by_remainder = sorted(range(len(sizes)), key=lambda i: int(exact[i]) - exact[i])
    for i in by_remainder[: max_jobs - sum(shares)]:
        shares[i] += 1
    return [min(share, size) for share, size in zip(shares, sizes, strict=True)]


def _split(names: Sequence[str], parts: int) -> list[list[str]]:
    """``names`` in at most ``parts`` groups of (almost) equal size, order kept."""
    parts = max(1, min(parts, len(names)))
    size, extra = divmod(len(names), parts)
    out, start = [], 0
    for i in range(parts):
        end = start + size + (i < extra)
        out.append(list(names[start:end]))
        start = end
    return out
