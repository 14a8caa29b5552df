"""Content hashes: the ``input_hash`` of a permutation and file digests."""

from __future__ import annotations

import hashlib
import json
import os
import stat
from collections.abc import Mapping
from pathlib import Path

from dcforge.core.errors import ConfigError
from dcforge.core.permfile import Permutation

# Bump when what goes into the hash changes, so old hashes never match by accident — or
# when the same inputs make a different image: v2 images carry the OCI labels and
# annotations and are dated by the commit (SOURCE_DATE_EPOCH, rewrite-timestamp), so
# --since never reuses an image built before that as if this build would make it.
HASH_SCHEMA = "dcforge-input-v2"
_CHUNK = 1 << 20


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def context_files(context: Path) -> list[tuple[str, str, int]]:
    """(relative path, sha256 or link target, mode) for every entry in a build context.

    A symlink that points outside the context is refused: BuildKit would not follow it,
    and a hash that read through it would describe files the build never sees.
    """
    entries: list[tuple[str, str, int]] = []
    root = context.resolve()
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames) + [d for d in dirnames if Path(dirpath, d).is_symlink()]:
            full = Path(dirpath, name)
            rel = full.relative_to(root).as_posix()
            st = full.lstat()
            if stat.S_ISLNK(st.st_mode):
                target = os.readlink(full)
                resolved = (full.parent / target).resolve()
                try:
                    resolved.relative_to(root)
                except ValueError:
                    raise ConfigError(
                        f"{full}: symlink points outside the build context ({target}) — "
                        "copy the file into the context instead"
                    ) from None
                entries.append((rel, "link:" + target, 0o777))
            elif stat.S_ISREG(st.st_mode):
                entries.append((rel, file_sha256(full), st.st_mode & 0o111))
    return entries


def _context(
    context: Path, cache: dict[Path, list[tuple[str, str, int]]] | None
) -> list[tuple[str, str, int]]:
    """Many permutations share one context: hash its files once per planning run."""
    if cache is None:
        return context_files(context)
    if context not in cache:
        cache[context] = context_files(context)
    return cache[context]


def input_hash(
    perm: Permutation,
    base_digest: str,
    context_cache: dict[Path, list[tuple[str, str, int]]] | None = None,
    features: Mapping[str, str] | None = None,
    builder: str = "",
) -> str:
    """sha256 over what determines the image: Dockerfile (or devcontainer.json), context,
    args, base, platforms; and where a permutation has them, its metadata label, its
    description and licenses (labels), its Features pinned by digest (``features``:
    reference → ``repository@sha256:…``) and options, and its image test. A moved Feature
    digest is a new hash, as a moved base. (The commit the labels name is not in it: a
    reused image keeps the labels of the commit that built it.)"""
    payload: dict[str, object] = {
        "schema": HASH_SCHEMA,
        "dockerfile": file_sha256(perm.dockerfile),
        "dockerfile_path": perm.dockerfile.relative_to(perm.context.resolve()).as_posix(),
        "context": _context(perm.context, context_cache),
        "build_args": list(perm.build_args),
        "base": base_digest,
        "platforms": sorted(perm.platforms),
    }
    extra: dict[str, object] = {
        "devcontainer": perm.devcontainer_form,
        "builder": builder,  # the Dev Containers CLI version: it writes the Features' steps
        "metadata": perm.metadata,
        "description": perm.description,
        "licenses": perm.licenses,
        "features": sorted((features or {}).items()),
        "feature_options": list(perm.features),
        "test": _context(perm.test.parent, context_cache) if perm.test else [],
        "test_script": perm.test.name if perm.test else "",
    }
    # Only what a permutation has goes in: a plain Dockerfile permutation keeps its hash.
    payload.update({k: v for k, v in extra.items() if v})
    blob = json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()
    return "sha256:" + hashlib.sha256(blob).hexdigest()
