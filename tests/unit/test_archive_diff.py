"""Why two builds differ (pure, on OCI archives the tests write): per platform, the config
fields, the layers and the files inside them that differ, with each side's size and hash."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from dcforge.core import archive_diff
from dcforge.core.archive_diff import FileDiff, LayerDiff, ValueDiff
from dcforge.core.errors import BuildError

MANIFEST = "application/vnd.oci.image.manifest.v1+json"
INDEX = "application/vnd.oci.image.index.v1+json"
GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
TAR = "application/vnd.oci.image.layer.v1.tar"
ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
CREATED = "2024-05-01T12:00:00Z"


def _add(tar: tarfile.TarFile, name: str, data: bytes, mtime: int = 0) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime = len(data), mtime
    tar.addfile(info, io.BytesIO(data))


def layer(files: Mapping[str, bytes], *, mtime: int = 0, media_type: str = GZIP) -> Any:
    """A layer: a tar of ``files`` (all dated ``mtime``), gzipped unless ``media_type``
    says otherwise (a "zstd" layer here is never decompressed, so it is not zstd)."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        for name, data in files.items():
            _add(tar, name, data, mtime)
    data = gzip.compress(raw.getvalue(), mtime=0) if media_type == GZIP else raw.getvalue()
    return media_type, data


class Layout:
    """The blobs of one archive, written out by :meth:`write`."""

    def __init__(self) -> None:
        self.blobs: dict[str, bytes] = {}

    def blob(self, media_type: str, data: bytes) -> dict[str, Any]:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        self.blobs[digest] = data
        return {"mediaType": media_type, "digest": digest, "size": len(data)}

    def image(
        self, layers: Sequence[Any], *, arch: str = "amd64", created: str = CREATED
    ) -> dict[str, Any]:
        descriptors = [self.blob(media_type, data) for media_type, data in layers]
        config = {"created": created, "architecture": arch, "os": "linux",
                  "config": {"Labels": {"x": "1"}}, "rootfs": {"type": "layers"}}  # fmt: skip
        manifest = {"schemaVersion": 2, "mediaType": MANIFEST, "layers": descriptors,
                    "config": self.blob("application/vnd.oci.image.config.v1+json",
                                        json.dumps(config).encode())}  # fmt: skip
        return {**self.blob(MANIFEST, json.dumps(manifest).encode()),
                "platform": {"os": "linux", "architecture": arch}}  # fmt: skip

    def index(self, children: Sequence[dict[str, Any]]) -> dict[str, Any]:
        doc = {"schemaVersion": 2, "mediaType": INDEX, "manifests": list(children)}
        return self.blob(INDEX, json.dumps(doc).encode())

    def write(self, path: Path, top: dict[str, Any]) -> Path:
        index = {
            "schemaVersion": 2,
            "manifests": [{k: v for k, v in top.items() if k != "platform"}],
        }
        with tarfile.open(path, "w") as tar:
            _add(tar, "oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
            _add(tar, "index.json", json.dumps(index).encode())
            for digest, data in self.blobs.items():
                _add(tar, f"blobs/sha256/{digest[7:]}", data)
        return path


def single(path: Path, layers: Sequence[Any], **image: Any) -> Path:
    out = Layout()
    return out.write(path, out.image(layers, **image))


BASE = layer({"etc/os-release": b"ID=debian\n", "usr/bin/tool": b"#!/bin/sh\n"})


def only_layer(diff: archive_diff.ArchiveDiff) -> LayerDiff:
    (platform,) = diff.platforms
    (changed,) = platform.layers
    return changed


def test_identical_archives_have_no_differences(tmp_path: Path) -> None:
    a = single(tmp_path / "a.tar", [BASE, layer({"app": b"1"})])
    b = single(tmp_path / "b.tar", [BASE, layer({"app": b"1"})])
    diff = archive_diff.diff_archives(a, b)
    assert diff.identical
    assert [p.identical for p in diff.platforms] == [True]
    assert diff.platforms[0].layers == () and diff.platforms[0].config == ()
    assert archive_diff.render(diff) == [f"linux/amd64 identical {diff.a_digest[:19]}…"]


def test_a_file_whose_content_differs_is_named_with_both_sizes_and_hashes(
    tmp_path: Path,
) -> None:
    a = single(tmp_path / "a.tar", [BASE, layer({"var/log/dpkg.log": b"one\n"})])
    b = single(tmp_path / "b.tar", [BASE, layer({"./var/log/dpkg.log": b"two two\n"})])
    diff = archive_diff.diff_archives(a, b)
    changed = only_layer(diff)
    assert changed.index == 2 and changed.more_files == 0 and not changed.note
    (file,) = changed.files
    assert (file.path, file.changes) == ("/var/log/dpkg.log", ("content",))
    assert file.a is not None and file.b is not None
    assert (file.a.size, file.b.size) == (4, 8)
    assert file.a.sha256 == hashlib.sha256(b"one\n").hexdigest()
    assert diff.platforms[0].config == ()
    line = archive_diff.render(diff)[-1]
    assert line.startswith(f"linux/amd64 layer 2/2 {changed.a_digest[:19]}… ≠ ")
    assert line.endswith(
        f": /var/log/dpkg.log content 4 B sha256:{file.a.sha256[:12]}… ≠ "
        f"8 B sha256:{file.b.sha256[:12]}…"
    )


def test_a_file_that_differs_only_in_its_mtime(tmp_path: Path) -> None:
    a = single(tmp_path / "a.tar", [layer({"etc/motd": b"hi\n"}, mtime=1_700_000_000)])
    b = single(tmp_path / "b.tar", [layer({"etc/motd": b"hi\n"}, mtime=1_700_000_100)])
    diff = archive_diff.diff_archives(a, b)
    (file,) = only_layer(diff).files
    assert file.changes == ("mtime",)
    assert archive_diff.render(diff)[-1].endswith(
        ": /etc/motd mtime mtime 1700000000 ≠ mtime 1700000100"
    )


def test_a_file_on_one_side_only(tmp_path: Path) -> None:
    a = single(tmp_path / "a.tar", [layer({"etc/motd": b"hi\n"})])
    b = single(tmp_path / "b.tar", [layer({"etc/motd": b"hi\n", "tmp/cache.bin": b"xyz"})])
    diff = archive_diff.diff_archives(a, b)
    (file,) = only_layer(diff).files
    assert (file.path, file.changes, file.a) == ("/tmp/cache.bin", ("only in B",), None)
    assert archive_diff.render(diff)[-1].endswith(
        ": /tmp/cache.bin only in B (absent) ≠ 3 B sha256:"
        + hashlib.sha256(b"xyz").hexdigest()[:12]
        + "…"
    )


def test_a_config_created_difference_names_the_field_and_no_layer(tmp_path: Path) -> None:
    a = single(tmp_path / "a.tar", [BASE])
    b = single(tmp_path / "b.tar", [BASE], created="2024-05-02T08:00:00Z")
    diff = archive_diff.diff_archives(a, b)
    (platform,) = diff.platforms
    assert not platform.identical
    assert platform.config == (ValueDiff("created", f'"{CREATED}"', '"2024-05-02T08:00:00Z"'),)
    assert platform.layers == () and platform.layer_counts == (1, 1)
    assert f'linux/amd64 config created "{CREATED}" ≠ "2024-05-02T08:00:00Z"' in (
        archive_diff.render(diff)
    )


def test_an_index_names_the_one_platform_that_differs(tmp_path: Path) -> None:
    """An attestation manifest beside the platform images is no platform of its own."""
    archives = []
    for side, arm_file in (("a", b"1"), ("b", b"2")):
        out = Layout()
        attestation = {
            **out.blob(MANIFEST, side.encode()),
            "platform": {"os": "unknown", "architecture": "unknown"},
            "annotations": {"vnd.docker.reference.type": "attestation-manifest"},
        }
        children = [out.image([BASE]), out.image([layer({"f": arm_file})], arch="arm64")]
        archives.append(out.write(tmp_path / f"{side}.tar", out.index([*children, attestation])))
    diff = archive_diff.diff_archives(*archives)
    assert [(p.platform, p.identical) for p in diff.platforms] == [
        ("linux/amd64", True),
        ("linux/arm64", False),
    ]
    (file,) = diff.platforms[1].layers[0].files
    assert (file.path, file.changes) == ("/f", ("content",))
    lines = archive_diff.render(diff)
    assert lines[0].startswith("linux/amd64 identical ")
    assert all(line.startswith("linux/arm64 ") for line in lines[1:])


def test_an_index_whose_platform_images_all_match_says_so(tmp_path: Path) -> None:
    archives = []
    for side in ("a", "b"):
        out = Layout()
        attestation = {**out.blob(MANIFEST, side.encode()), "platform": {"os": "unknown"}}
        archives.append(
            out.write(tmp_path / f"{side}.tar", out.index([out.image([BASE]), attestation]))
        )
    diff = archive_diff.diff_archives(*archives)
    assert not diff.identical and all(p.identical for p in diff.platforms)
    assert "every platform's image is identical" in archive_diff.render(diff)[-1]


def test_a_layer_count_mismatch(tmp_path: Path) -> None:
    a = single(tmp_path / "a.tar", [BASE])
    b = single(tmp_path / "b.tar", [BASE, layer({"extra": b"1"})])
    (platform,) = archive_diff.diff_archives(a, b).platforms
    assert platform.layer_counts == (1, 2)
    (extra,) = platform.layers
    assert (extra.index, extra.a_digest, extra.note) == (2, "", "only in B")
    lines = archive_diff.render(archive_diff.diff_archives(a, b))
    assert "linux/amd64 layer count 1 ≠ 2" in lines
    assert lines[-1].startswith("linux/amd64 layer 2/2 (none) ≠ sha256:")


def test_the_files_listed_per_layer_are_capped_and_the_rest_counted(tmp_path: Path) -> None:
    a = single(tmp_path / "a.tar", [layer({f"f{i:02}": b"a" for i in range(10)})])
    b = single(tmp_path / "b.tar", [layer({f"f{i:02}": b"b" for i in range(10)})])
    changed = only_layer(archive_diff.diff_archives(a, b, max_files=3))
    assert [f.path for f in changed.files] == ["/f00", "/f01", "/f02"]
    assert changed.more_files == 7
    assert archive_diff.render(archive_diff.diff_archives(a, b, max_files=3))[-1].endswith(
        ": and 7 more files"
    )


def test_uncompressed_layers_are_compared_and_zstd_ones_reported(tmp_path: Path) -> None:
    a = single(tmp_path / "a.tar", [layer({"x": b"1"}, media_type=TAR), layer({"z": b"1"})])
    b = single(tmp_path / "b.tar", [layer({"x": b"2"}, media_type=TAR),
                                    layer({"z": b"2"}, media_type=ZSTD)])  # fmt: skip
    plain, zstd = archive_diff.diff_archives(a, b).platforms[0].layers
    assert [f.path for f in plain.files] == ["/x"]
    assert (zstd.files, zstd.note) == ((), "cannot be compared (zstd)")


def test_a_layer_that_differs_in_no_file_says_so(tmp_path: Path) -> None:
    """``./etc/motd`` and ``etc/motd`` are one path: the tars differ, the files do not."""
    a = single(tmp_path / "a.tar", [layer({"etc/motd": b"hi\n"})])
    b = single(tmp_path / "b.tar", [layer({"./etc/motd": b"hi\n"})])
    diff = archive_diff.diff_archives(a, b)
    assert only_layer(diff).files == ()
    assert archive_diff.render(diff)[-1].endswith(
        ": no file differs (the compression or tar headers do)"
    )


@pytest.mark.parametrize("name", ["../escape", "/etc/passwd"])
def test_a_layer_member_outside_the_root_is_refused(tmp_path: Path, name: str) -> None:
    a = single(tmp_path / "a.tar", [layer({"etc/motd": b"hi\n"})])
    b = single(tmp_path / "b.tar", [layer({name: b"x"})])
    with pytest.raises(BuildError, match="would land outside the root"):
        archive_diff.diff_archives(a, b)


def test_an_archive_with_a_stray_member_is_refused(tmp_path: Path) -> None:
    a = single(tmp_path / "a.tar", [BASE])
    with tarfile.open(a, "a") as tar:
        _add(tar, "./blobs/sha256/" + "0" * 64, b"shadow")
    with pytest.raises(BuildError, match="not an OCI layout file"):
        archive_diff.diff_archives(a, a)


def test_names_with_control_characters_are_escaped_in_the_rendering(tmp_path: Path) -> None:
    a = single(tmp_path / "a.tar", [layer({"x\x1b[2J": b"1"})])
    b = single(tmp_path / "b.tar", [layer({"x\x1b[2J": b"2"})])
    line = archive_diff.render(archive_diff.diff_archives(a, b))[-1]
    assert "\x1b" not in line and ": /x\\x1b[2J content " in line


def test_same_images_compares_two_manifests_platforms() -> None:
    a = {"linux/amd64": "sha256:1", "linux/arm64": "sha256:2"}
    b = {"linux/amd64": "sha256:1", "linux/arm64": "sha256:3", "linux/riscv64": "sha256:4"}
    assert archive_diff.same_images(a, b) == {
        "linux/amd64": True,
        "linux/arm64": False,
        "linux/riscv64": False,
    }


def test_the_result_is_the_same_on_every_run(tmp_path: Path) -> None:
    a = single(tmp_path / "a.tar", [BASE, layer({f"f{i}": bytes([i]) for i in range(5)})])
    b = single(tmp_path / "b.tar", [BASE, layer({f"f{i}": b"-" for i in range(5)})])
    first = archive_diff.diff_archives(a, b)
    assert first == archive_diff.diff_archives(a, b)
    assert isinstance(first.platforms[0].layers[0].files[0], FileDiff)
