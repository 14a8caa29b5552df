"""OCI image archives as buildx writes them (pure): the layout's members, the index and
its platform images, an image's config, labels and layers."""

from __future__ import annotations

import hashlib
import json
import re
import tarfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from dcforge.core.errors import BuildError

INDEX_TYPES = frozenset(
    {
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
    }
)


_MEMBER = re.compile(r"^(oci-layout|index\.json|blobs|blobs/sha256|blobs/sha256/[0-9a-f]{64})$")


def check_members(tar: tarfile.TarFile, tarball: Path) -> None:
    """An OCI archive's members are the layout's files under their canonical names, once
    each: a second ``blobs/sha256/X`` (or ``./blobs/…``) is read by one tool and
    overwritten for another, so what is scanned need not be what is pushed."""
    seen: set[str] = set()
    for member in tar.getmembers():
        name = member.name.rstrip("/") if member.isdir() else member.name
        if not _MEMBER.match(name) or name in seen or not (member.isfile() or member.isdir()):
            raise BuildError(
                f"{tarball}: member {member.name!r} is not an OCI layout file, or appears "
                "twice — not an archive buildx wrote; rebuild"
            )
        seen.add(name)


def archive_json(tar: tarfile.TarFile, tarball: Path, name: str, digest: str = "") -> Any:
    """The JSON document at ``name``, checked against ``digest`` when one is given."""
    member = tar.extractfile(name)
    if member is None:
        raise BuildError(f"{tarball}: {name} is not a file")
    data = member.read()
    if digest and "sha256:" + hashlib.sha256(data).hexdigest() != digest:
        raise BuildError(f"{tarball}: {name} does not match its digest")
    return json.loads(data)


def archive_top(tar: tarfile.TarFile, tarball: Path) -> tuple[dict[str, Any], Any]:
    """The one descriptor index.json names, and the document it points at when an index
    (None for one image), in an open archive whose members were checked."""
    index = archive_json(tar, tarball, "index.json")
    manifests = (index.get("manifests") or []) if isinstance(index, dict) else []
    if len(manifests) != 1 or not isinstance(manifests[0], dict):
        raise BuildError(f"{tarball}: expected one manifest in index.json, found {len(manifests)}")
    top = manifests[0]
    digest = str(top.get("digest", ""))
    if not re.fullmatch(r"sha256:[0-9a-f]{64}", digest):
        raise BuildError(f"{tarball}: index.json names no sha256 digest")
    document = archive_json(tar, tarball, f"blobs/sha256/{digest[7:]}", digest)
    return top, document if top.get("mediaType") in INDEX_TYPES else None


def _top(tarball: Path) -> tuple[dict[str, Any], Any]:
    try:
        with tarfile.open(tarball, "r:") as tar:
            check_members(tar, tarball)
            return archive_top(tar, tarball)
    except (tarfile.TarError, KeyError, json.JSONDecodeError, OSError, UnicodeDecodeError) as err:
        raise BuildError(f"{tarball}: not a readable OCI archive ({err})") from err


def platform_key(platform: Any) -> str:
    """``{"os": "linux", "architecture": "arm64"}`` → ``linux/arm64``."""
    if not isinstance(platform, dict):
        return "unknown/unknown"
    parts = [str(platform.get("os", "unknown")), str(platform.get("architecture", "unknown"))]
    if platform.get("variant"):
        parts.append(str(platform["variant"]))
    return "/".join(parts)


IMAGE_TYPES = frozenset(
    {
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    }
)


def index_children(index: Any, source: str, *, strict: bool = False) -> dict[str, str]:
    """platform → manifest digest of an image index (attestation manifests left out).

    ``strict`` (an archive dcforge built): every entry must be an image for a platform —
    anything else would be pushed with the index without having been scanned."""
    children: dict[str, str] = {}
    for child in (index.get("manifests") or []) if isinstance(index, dict) else []:
        key = platform_key(child.get("platform")) if isinstance(child, dict) else ""
        annotations = (child.get("annotations") or {}) if isinstance(child, dict) else {}
        extra = key in ("", "unknown/unknown") or "vnd.docker.reference.type" in annotations
        if strict and (extra or child.get("mediaType") not in IMAGE_TYPES):
            raise BuildError(
                f"{source}: the index holds {child.get('mediaType')} {child.get('digest')} "
                f"for {key or 'no platform'}, which is not one platform's image — only "
                "platform images are scanned and pushed"
            )
        if extra:
            continue
        digest = str(child.get("digest", "")) if isinstance(child, dict) else ""
        if key in children or not re.fullmatch(r"sha256:[0-9a-f]{64}", digest):
            raise BuildError(f"{source}: the index holds two images, or none, for {key}")
        if strict and digest in children.values():
            raise BuildError(f"{source}: the index names {digest[:19]} for two platforms")
        children[key] = digest
    return children


def oci_archive(tarball: Path) -> tuple[str, dict[str, str]]:
    """The digest index.json names, and platform → image digest of a multi-platform
    archive ({} for one image), from one read of the archive."""
    top, index = _top(tarball)
    children = {} if index is None else index_children(index, str(tarball), strict=True)
    return str(top["digest"]), children


def image_config(tarball: Path, digest: str) -> dict[str, Any]:
    """The config of image ``digest`` (a manifest in the OCI archive)."""
    try:
        with tarfile.open(tarball, "r:") as tar:
            manifest = archive_json(tar, tarball, f"blobs/sha256/{digest[7:]}", digest)
            config_digest = str(manifest["config"]["digest"])
            config = archive_json(tar, tarball, f"blobs/sha256/{config_digest[7:]}", config_digest)
    except (tarfile.TarError, KeyError, TypeError, json.JSONDecodeError, OSError) as err:
        raise BuildError(f"{tarball}: cannot read the config of {digest} ({err})") from err
    return config if isinstance(config, dict) else {}


def config_labels(config: Mapping[str, Any]) -> dict[str, str]:
    labels = (config.get("config") or {}).get("Labels")
    return {str(k): str(v) for k, v in (labels or {}).items()}


def config_layers(config: Mapping[str, Any]) -> list[str]:
    """The image's layers by their uncompressed digests (``rootfs.diff_ids``)."""
    return [str(d) for d in ((config.get("rootfs") or {}).get("diff_ids") or [])]


def same_platform(a: str, b: str) -> bool:
    """``linux/arm64`` and ``linux/arm64/v8`` are one platform (arm64's only variant)."""
    return a.removesuffix("/v8") == b.removesuffix("/v8")


def pick_platform(served: Mapping[str, str], wanted: str) -> tuple[str, str] | None:
    """(platform, digest) of the index's image for ``wanted`` (``os/arch[/variant]``), as a
    pull for that platform gets it; None when the index has none for it."""
    for platform, digest in sorted(served.items()):
        if same_platform(platform, wanted):
            return platform, digest
    return None


def host_platform(machine: str) -> str:
    """The platform a pull on this machine asks for (``platform.machine()`` in)."""
    arch = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}
    return f"linux/{arch.get(machine.lower(), machine.lower())}"
