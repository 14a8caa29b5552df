"""Platform parts joined into one index (pure, on archives the test writes): the index
carries the OCI annotations every part's manifest agrees on."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path
from typing import Any

from dcforge.core import oci_index

MANIFEST = "application/vnd.oci.image.manifest.v1+json"
CREATED = "org.opencontainers.image.created"
REVISION = "org.opencontainers.image.revision"


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def part(path: Path, arch: str, annotations: dict[str, str]) -> Path:
    """A single-platform OCI archive: one image manifest (no layers) for linux/``arch``."""
    config = json.dumps({"os": "linux", "architecture": arch, "rootfs": {}}).encode()
    config_digest = "sha256:" + hashlib.sha256(config).hexdigest()
    doc: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": config_digest, "size": len(config)},
        "layers": [],
        "annotations": annotations,
    }  # fmt: skip
    manifest = json.dumps(doc).encode()
    digest = "sha256:" + hashlib.sha256(manifest).hexdigest()
    top = {"schemaVersion": 2, "manifests": [
        {"mediaType": MANIFEST, "digest": digest, "size": len(manifest)}
    ]}  # fmt: skip
    with tarfile.open(path, "w") as tar:
        _add(tar, "oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
        _add(tar, "index.json", json.dumps(top).encode())
        _add(tar, f"blobs/sha256/{digest[7:]}", manifest)
        _add(tar, f"blobs/sha256/{config_digest[7:]}", config)
    return path


def index_of(archive: Path) -> dict[str, Any]:
    with tarfile.open(archive) as tar:
        top = json.load(tar.extractfile("index.json"))["manifests"][0]  # type: ignore[arg-type]
        blob = tar.extractfile(f"blobs/sha256/{top['digest'][7:]}")
        doc: dict[str, Any] = json.load(blob)  # type: ignore[arg-type]
    return doc


def test_the_joined_index_carries_the_oci_annotations_every_part_agrees_on(
    tmp_path: Path,
) -> None:
    """A part is a single-platform build, which BuildKit gives no index (nor index
    annotations): the merge's index gets the parts' common org.opencontainers.image.*
    annotations — not one only some parts have, not a value they disagree on, not another
    vendor's key — and is the same bytes on every re-run."""
    shared = {CREATED: "2024-05-01T12:00:00Z", REVISION: "c" * 40}
    amd64 = part(tmp_path / "amd64.tar", "amd64", {**shared, "vendor.x": "1",
                 "org.opencontainers.image.title": "amd64 only"})  # fmt: skip
    arm64 = part(tmp_path / "arm64.tar", "arm64", {**shared, "vendor.x": "1"})
    parts = [("linux/amd64", amd64), ("linux/arm64", arm64)]
    digest, children = oci_index.join(parts, tmp_path / "joined.tar")
    index = index_of(tmp_path / "joined.tar")
    assert index["annotations"] == {CREATED: shared[CREATED], REVISION: shared[REVISION]}
    assert sorted(children) == ["linux/amd64", "linux/arm64"]
    assert oci_index.join(parts, tmp_path / "again.tar")[0] == digest


def test_parts_without_annotations_make_an_index_without_any(tmp_path: Path) -> None:
    parts = [
        ("linux/amd64", part(tmp_path / "a.tar", "amd64", {})),
        ("linux/arm64", part(tmp_path / "b.tar", "arm64", {REVISION: "c" * 40})),
    ]
    oci_index.join(parts, tmp_path / "joined.tar")
    assert "annotations" not in index_of(tmp_path / "joined.tar")
