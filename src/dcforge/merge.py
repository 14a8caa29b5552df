"""Combine partial manifests (one per CI matrix job) into one manifest.json."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

from dcforge import manifest as mf
from dcforge.errors import ManifestError


def merge(parts: list[Path], dist: Path) -> mf.Manifest:
    """Validate and merge ``parts`` (directories holding manifest.json + tarballs) into ``dist``.

    Refused: no parts, different git SHAs or registries, a permutation or tag claimed twice,
    a tarball that does not match its partial manifest.
    """
    if not parts:
        raise ManifestError("no partial manifests to merge")
    loaded = []
    for part in parts:
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
    entries = [e for _, m in loaded for e in m.permutations]
    merged = mf.Manifest(
        schema_version=mf.SCHEMA_VERSION,
        git_sha=first.git_sha,
        created_at=datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        registry=first.registry,
        permutations=entries,
        git_dirty=any(m.git_dirty for _, m in loaded),
        builder=first.builder,
    )
    # parse() refuses duplicate names, tarballs and tags before anything is written.
    mf.parse(merged.to_json(), "merged manifest")
    dist.mkdir(parents=True, exist_ok=True)
    for part, m in loaded:
        for e in m.permutations:
            if e.reused:
                continue
            if (part / e.tarball).resolve() != (dist / e.tarball).resolve():
                shutil.copyfile(part / e.tarball, dist / e.tarball)
    mf.write(dist / "manifest.json", merged)
    return merged
