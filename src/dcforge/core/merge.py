"""Combine partial manifests (one per CI matrix job) into one manifest.json."""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from dcforge.core import manifest as mf
from dcforge.core import oci_index
from dcforge.core.errors import ManifestError
from dcforge.core.hashing import file_sha256

# What every platform part of one permutation must agree on (they are one image).
SAME_IN_EVERY_PART = (
    "input_hash",
    "tags",
    "repository",
    "immutable_tag",
    "floating_tags",
    "part_of",
    "build_args",
    "os",
    "family",
)


def merge(parts: list[Path], dist: Path) -> mf.Manifest:
    """Validate and merge ``parts`` (directories holding manifest.json + tarballs) into ``dist``.

    Refused: no parts, different git SHAs or registries, a permutation or tag claimed twice,
    a tarball that does not match its partial manifest.
    """
    if not parts:
        raise ManifestError("no partial manifests to merge")
    loaded = []
    for part in parts:
        if not (part / "manifest.json").is_file():
            what = "holds no manifest.json" if part.is_dir() else "is not a directory"
            raise ManifestError(
                f"{part}: {what} — pass the dist/ folders the build jobs uploaded "
                "(one per `build --permutation … --platform …` job), downloaded as artifacts"
            )
        m = mf.load(part / "manifest.json")
        mf.verify_tarballs(m, part)
        loaded.append((part, m))
    first = loaded[0][1]
    for part, m in loaded[1:]:
        if m.git_sha != first.git_sha:
            raise ManifestError(
                f"{part}/manifest.json is for git {m.git_sha[:12]}, {loaded[0][0]} for "
                f"{first.git_sha[:12]} — every part must come from the same commit"
            )
        if m.registry != first.registry:
            raise ManifestError(f"{part}/manifest.json targets {m.registry}, not {first.registry}")
    dist.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".merge-", dir=dist))
    try:
        merged, joined = _merged(loaded, staging)
        # Nothing in dist/ changes until every check passed (a part may live in dist/).
        for name in joined:
            (staging / f"{name}.tar").replace(dist / f"{name}.tar")
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    for part, m in loaded:
        for e in m.permutations:
            if e.reused or e.staged or e.name in joined:
                continue
            if (part / e.tarball).resolve() != (dist / e.tarball).resolve():
                shutil.copyfile(part / e.tarball, dist / e.tarball)
    mf.write(dist / "manifest.json", merged)
    return merged


def _merged(loaded: list[tuple[Path, mf.Manifest]], staging: Path) -> tuple[mf.Manifest, set[str]]:
    first = loaded[0][1]
    entries, joined = _entries(loaded, staging)
    merged = mf.Manifest(
        schema_version=mf.SCHEMA_VERSION,
        git_sha=first.git_sha,
        created_at=datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        registry=first.registry,
        permutations=entries,
        git_dirty=any(m.git_dirty for _, m in loaded),
        builder=first.builder,
        source_date_epoch=first.source_date_epoch,  # one commit, one time (git_sha checked)
    )
    # parse() refuses duplicate names, tarballs and tags before anything is written.
    mf.parse(merged.to_json(), "merged manifest")
    merged.check_complete("merged manifest")
    return merged, joined


def _entries(loaded: list[tuple[Path, mf.Manifest]], dist: Path) -> tuple[list[mf.Entry], set[str]]:
    """Every part's entries; platform parts of one permutation joined into one."""
    by_name: dict[str, list[tuple[Path, mf.Entry]]] = {}
    for part, m in loaded:
        for e in m.permutations:
            by_name.setdefault(e.name, []).append((part, e))
    entries, joined = [], set()
    for name, group in by_name.items():
        if len(group) > 1 and all(e.is_part for _, e in group):
            entries.append(join_parts(name, group, dist))
            joined.add(name)
        elif len(group) > 1 and all(e.reused and e == group[0][1] for _, e in group):
            entries.append(group[0][1])  # every platform job reused the same release image
        else:
            entries += [e for _, e in group]  # a name claimed twice is refused below
    return entries, joined


def join_parts(name: str, group: list[tuple[Path, mf.Entry]], dist: Path) -> mf.Entry:
    """One permutation's platform parts (build --platform, one per native runner) joined
    into the entry a one-machine build makes: one archive with an index over the parts'
    images, byte for byte, so every platform keeps the digest its own build gave it."""
    first = group[0][1]
    for part, e in group[1:]:
        for key in SAME_IN_EVERY_PART:
            if getattr(e, key) != getattr(first, key):
                raise ManifestError(
                    f"{name}: the platform parts disagree on {key} ({part} and "
                    f"{group[0][0]}) — rebuild every part from the same commit"
                )
        if (e.base_image.ref, e.base_image.digest) != (
            first.base_image.ref,
            first.base_image.digest,
        ):
            raise ManifestError(
                f"{name}: the platform parts were built FROM different base images "
                f"({first.base_image.digest[:19]} and {e.base_image.digest[:19]}) — rebuild"
            )
    got = [e.platforms[0] for _, e in group]
    if sorted(got) != sorted(first.part_of) or len(set(got)) != len(got):
        raise ManifestError(
            f"{name}: the platform parts cover {', '.join(sorted(got))}, the permutation "
            f"builds {', '.join(first.part_of)} — give exactly one part per platform"
        )
    by_platform = {e.platforms[0]: (part, e) for part, e in group}
    ordered = [(pl, by_platform[pl][0] / by_platform[pl][1].tarball) for pl in first.part_of]
    tarball = dist / f"{name}.tar"
    index_digest, digests = oci_index.join(ordered, tarball)
    for pl, (_, e) in by_platform.items():
        if digests[pl] != e.image_digest:
            raise ManifestError(f"{name}: the {pl} part's archive is not its manifest's image")
    base = {pl: d for _, e in group for pl, d in e.base_image.platform_digests.items()}
    return replace(
        first,
        tarball=tarball.name,
        tarball_sha256=file_sha256(tarball),
        image_digest=index_digest,
        platforms=list(first.part_of),
        platform_digests=digests,
        base_image=replace(first.base_image, platform_digests=base),
        part_of=[],
        build_started_at=min(e.build_started_at for _, e in group),
        built_at=max(e.built_at for _, e in group),
    )
