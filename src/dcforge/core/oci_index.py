"""Join single-platform OCI archives (platform parts built on native runners) into one
archive holding an image index: every part's image manifest, config and layers are copied
byte for byte, so each platform keeps the digest its own build gave it; the index is new,
and carries the ``org.opencontainers.image.*`` annotations every part's manifest agrees on
(a one-machine build's index gets them from BuildKit; a part, built alone, has no index)."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from dcforge.core import oci_archive
from dcforge.core.errors import BuildError, ManifestError

INDEX_TYPE = "application/vnd.oci.image.index.v1+json"
OCI_ANNOTATION_PREFIX = "org.opencontainers.image."
MANIFEST_TYPES_DEFAULT = "application/vnd.oci.image.manifest.v1+json"
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


def part_descriptor(
    tar: tarfile.TarFile, source: Path, platform: str
) -> tuple[dict[str, Any], list[str], dict[str, str]]:
    """The descriptor of the one image a part archive holds, checked to be ``platform``'s
    (its config's os/architecture, not just what the part's manifest entry claims), the
    digests of every blob that image is made of (manifest, config, layers), and the image
    manifest's annotations."""
    try:
        oci_archive.check_members(tar, source)
    except BuildError as err:
        raise ManifestError(str(err)) from None
    try:
        member = tar.extractfile("index.json")
        index = json.load(member) if member else None
    except (KeyError, ValueError) as err:
        raise ManifestError(f"{source}: not a readable OCI archive ({err})") from None
    manifests = index.get("manifests") if isinstance(index, dict) else None
    if not isinstance(manifests, list) or len(manifests) != 1 or not isinstance(manifests[0], dict):
        raise ManifestError(f"{source}: a platform part holds exactly one image")
    top = manifests[0]
    if top.get("mediaType") not in MANIFEST_TYPES:
        raise ManifestError(
            f"{source}: a platform part holds one image, not {top.get('mediaType')}"
        )
    digest = str(top.get("digest", ""))
    manifest = _json(_blob(tar, source, digest), source, digest)
    layers = manifest.get("layers")
    config_ref = manifest.get("config")
    if not isinstance(config_ref, dict) or not isinstance(layers, list):
        raise ManifestError(f"{source}: {digest} is not an image manifest")
    blobs = [digest, str(config_ref.get("digest", ""))]
    blobs += [str(layer.get("digest", "")) for layer in layers if isinstance(layer, dict)]
    config = _json(_blob(tar, source, blobs[1]), source, blobs[1])
    found = oci_archive.platform_key(config)
    if not oci_archive.same_platform(found, platform):
        raise ManifestError(f"{source}: the part for {platform} holds a {found} image")
    os_name, arch, *variant = platform.split("/")
    plat = {"architecture": arch, "os": os_name, **({"variant": variant[0]} if variant else {})}
    descriptor = {"mediaType": top["mediaType"], "digest": digest, "size": top.get("size")}
    found_annotations = manifest.get("annotations")
    annotations = found_annotations if isinstance(found_annotations, dict) else {}
    return (
        {**descriptor, "platform": plat},
        blobs,
        {str(k): str(v) for k, v in annotations.items()},
    )


def shared_annotations(parts: Sequence[dict[str, str]]) -> dict[str, str]:
    """The ``org.opencontainers.image.*`` annotations every part has, with one value (the
    parts of one build agree on all of them: source, revision, created, …), by key."""
    if not parts:
        return {}
    return {
        key: value
        for key, value in sorted(parts[0].items())
        if key.startswith(OCI_ANNOTATION_PREFIX) and all(p.get(key) == value for p in parts)
    }


def _json(data: bytes, source: Path, digest: str) -> dict[str, Any]:
    try:
        doc = json.loads(data)
    except ValueError:
        doc = None
    if not isinstance(doc, dict):
        raise ManifestError(f"{source}: {digest} is not a JSON object")
    return doc


def _add(out: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), 0o644, 0
    out.addfile(info, io.BytesIO(data))


def join(parts: Sequence[tuple[str, Path]], out: Path) -> tuple[str, dict[str, str]]:
    """Write ``out``: one index over the parts' images, in ``parts`` order. Every blob an
    image is made of is copied from its own part and checked against its digest.

    Returns the index digest and platform → image digest. Deterministic: the same parts
    give the same bytes, so the index digest is the same on every re-run of a merge.
    """
    try:
        with ExitStack() as stack:
            tars = [(pl, src, stack.enter_context(tarfile.open(src, "r:"))) for pl, src in parts]
            found = [part_descriptor(tar, src, pl) for pl, src, tar in tars]
            descriptors = [d for d, _, _ in found]
            index: dict[str, Any] = {
                "schemaVersion": 2,
                "mediaType": INDEX_TYPE,
                "manifests": descriptors,
            }
            if annotations := shared_annotations([a for _, _, a in found]):
                index["annotations"] = annotations
            index_bytes = json.dumps(index, separators=(",", ":")).encode()
            index_digest = "sha256:" + hashlib.sha256(index_bytes).hexdigest()
            top = {
                "schemaVersion": 2,
                "manifests": [
                    {"mediaType": INDEX_TYPE, "digest": index_digest, "size": len(index_bytes)}
                ],
            }
            with tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as dest:
                _add(dest, "oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
                _add(dest, "index.json", json.dumps(top, separators=(",", ":")).encode())
                _add(dest, f"blobs/sha256/{index_digest[7:]}", index_bytes)
                copied: set[str] = set()
                for (_, src, tar), (_, blobs, _) in zip(tars, found, strict=True):
                    for digest in blobs:
                        if digest not in copied:
                            _add(dest, f"blobs/sha256/{digest[7:]}", _blob(tar, src, digest))
                            copied.add(digest)
    except (tarfile.TarError, OSError) as err:
        raise ManifestError(f"a platform part is not a readable OCI archive ({err})") from None
    images = {pl: str(d["digest"]) for (pl, _), d in zip(parts, descriptors, strict=True)}
    return index_digest, images


def image_archive(source: Path, digest: str, out: Path, name: str) -> tuple[str, str]:
    # ``name``: ``repository:tag`` of a Docker Hub-style name (``dcforge-smoke/x:tag``).
    """Write ``out``: the one image ``digest`` of ``source`` (an archive checked by
    :func:`oci_archive.oci_archive`), as an archive both of Docker's image stores load — an OCI
    layout naming just that image (the containerd store reads it) and Docker's own
    ``manifest.json`` beside it (the classic store reads only that). Blobs are copied byte
    for byte and checked against their digests.

    Returns the image's platform (from its config) and its config digest: the containerd
    store names the loaded image by ``digest``, the classic store by the config digest."""
    try:
        with (
            tarfile.open(source, "r:") as tar,
            tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as dest,
        ):
            manifest_bytes = _blob(tar, source, digest)
            manifest = _json(manifest_bytes, source, digest)
            config_ref, layers = manifest.get("config"), manifest.get("layers")
            if not isinstance(config_ref, dict) or not isinstance(layers, list):
                raise ManifestError(f"{source}: {digest} is not an image manifest")
            config_digest = str(config_ref.get("digest", ""))
            config_bytes = _blob(tar, source, config_digest)
            platform = oci_archive.platform_key(_json(config_bytes, source, config_digest))
            layer_digests = [str(lay.get("digest", "")) for lay in layers if isinstance(lay, dict)]
            descriptor = {
                "mediaType": str(manifest.get("mediaType") or MANIFEST_TYPES_DEFAULT),
                "digest": digest,
                "size": len(manifest_bytes),
                # The containerd store wants the normalised name (a short one here and
                # RepoTags' in manifest.json make two images of one name).
                "annotations": {"io.containerd.image.name": f"docker.io/{name}"},
            }
            docker_manifest = [
                {
                    "Config": f"blobs/sha256/{config_digest[7:]}",
                    "RepoTags": [name],
                    "Layers": [f"blobs/sha256/{d[7:]}" for d in layer_digests],
                }
            ]
            _add(dest, "oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
            index = {"schemaVersion": 2, "manifests": [descriptor]}
            _add(dest, "index.json", json.dumps(index).encode())
            _add(dest, "manifest.json", json.dumps(docker_manifest).encode())
            _add(dest, f"blobs/sha256/{digest[7:]}", manifest_bytes)
            _add(dest, f"blobs/sha256/{config_digest[7:]}", config_bytes)
            for blob in dict.fromkeys(layer_digests):
                _add(dest, f"blobs/sha256/{blob[7:]}", _blob(tar, source, blob))
    except (tarfile.TarError, OSError) as err:
        raise ManifestError(f"{source}: not a readable OCI archive ({err})") from None
    return platform, config_digest
