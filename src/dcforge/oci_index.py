"""Join single-platform OCI archives (platform parts built on native runners) into one
archive holding an image index: every part's image manifest, config and layers are copied
byte for byte, so each platform keeps the digest its own build gave it; the index is new."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from dcforge.errors import ManifestError

INDEX_TYPE = "application/vnd.oci.image.index.v1+json"
MANIFEST_TYPES = frozenset(
    {
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    }
)


def _blob(tar: tarfile.TarFile, source: Path, digest: str) -> bytes:
    algo, _, hexdigest = digest.partition(":")
    try:
        member = tar.extractfile(f"blobs/{algo}/{hexdigest}")
    except KeyError:
        member = None
    if member is None:
        raise ManifestError(f"{source}: the archive has no blob {digest}")
    data = member.read()
    if algo != "sha256" or hashlib.sha256(data).hexdigest() != hexdigest:
        raise ManifestError(f"{source}: blob {digest} does not match its digest")
    return data


def _platform(config: Any) -> str:
    parts = [str(config.get("os", "")), str(config.get("architecture", ""))]
    if config.get("variant"):
        parts.append(str(config["variant"]))
    return "/".join(parts)


def part_descriptor(tar: tarfile.TarFile, source: Path, platform: str) -> dict[str, Any]:
    """The descriptor of the one image a part archive holds, checked to be ``platform``'s
    (its config's os/architecture, not just what the part's manifest entry claims)."""
    try:
        member = tar.extractfile("index.json")
        index = json.load(member) if member else None
    except (KeyError, json.JSONDecodeError) as err:
        raise ManifestError(f"{source}: not a readable OCI archive ({err})") from None
    manifests = index.get("manifests") if isinstance(index, dict) else None
    if not isinstance(manifests, list) or len(manifests) != 1:
        raise ManifestError(f"{source}: a platform part holds exactly one image")
    top = manifests[0]
    if top.get("mediaType") not in MANIFEST_TYPES:
        raise ManifestError(
            f"{source}: a platform part holds one image, not {top.get('mediaType')}"
        )
    manifest = json.loads(_blob(tar, source, str(top["digest"])))
    config = json.loads(_blob(tar, source, str(manifest["config"]["digest"])))
    found = _platform(config)
    if found != platform:
        raise ManifestError(
            f"{source}: the part for {platform} holds a {found or 'platform-less'} image"
        )
    os_name, arch, *variant = platform.split("/")
    plat = {"architecture": arch, "os": os_name, **({"variant": variant[0]} if variant else {})}
    return {
        "mediaType": top["mediaType"],
        "digest": top["digest"],
        "size": top["size"],
        "platform": plat,
    }


def _add(out: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), 0o644, 0
    out.addfile(info, io.BytesIO(data))


def join(parts: Sequence[tuple[str, Path]], out: Path) -> tuple[str, dict[str, str]]:
    """Write ``out``: one index over the parts' images, in ``parts`` order.

    Returns the index digest and platform → image digest. Deterministic: the same parts
    give the same bytes, so the index digest is the same on every re-run of a merge.
    """
    with ExitStack() as stack:
        tars = [
            (platform, src, stack.enter_context(tarfile.open(src, "r:"))) for platform, src in parts
        ]
        descriptors = [part_descriptor(tar, src, platform) for platform, src, tar in tars]
        index = {"schemaVersion": 2, "mediaType": INDEX_TYPE, "manifests": descriptors}
        index_bytes = json.dumps(index, separators=(",", ":")).encode()
        index_digest = "sha256:" + hashlib.sha256(index_bytes).hexdigest()
        top = {
            "schemaVersion": 2,
            "manifests": [
                {"mediaType": INDEX_TYPE, "digest": index_digest, "size": len(index_bytes)}
            ],
        }
        blobs: dict[str, tuple[tarfile.TarFile, tarfile.TarInfo]] = {}
        for _, _, tar in tars:
            for member in tar.getmembers():
                if member.isfile() and member.name.startswith("blobs/sha256/"):
                    blobs.setdefault(member.name, (tar, member))
        tmp = out.with_name(out.name + ".tmp")
        with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as dest:
            _add(dest, "oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
            _add(dest, "index.json", json.dumps(top, separators=(",", ":")).encode())
            _add(dest, f"blobs/sha256/{index_digest[7:]}", index_bytes)
            for name in sorted(blobs):
                tar, member = blobs[name]
                source = tar.extractfile(member)
                info = tarfile.TarInfo(name)
                info.size, info.mode, info.mtime = member.size, 0o644, 0
                dest.addfile(info, source)
        tmp.replace(out)
    return index_digest, {
        platform: d["digest"] for (platform, _), d in zip(parts, descriptors, strict=True)
    }
