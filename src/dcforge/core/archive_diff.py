"""Why two builds of one image differ (pure, on two OCI archives): per platform, the image
digests, the config and manifest fields that differ, and for each layer that differs the
files that differ, with each side's size and sha256. A layer is read as a stream and
hashed member by member, never held in memory (layers run to hundreds of MB)."""

from __future__ import annotations

import hashlib
import itertools
import json
import tarfile
import zlib
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Literal

from dcforge.core import oci_archive
from dcforge.core.errors import BuildError

MAX_FILES = 50  # differing files listed per layer; the rest are counted
_SHORT = 60  # characters of a config value shown
_CHUNK = 1 << 20
# How tarfile streams each layer media type. A zstd layer is reported, not compared: the
# stdlib reads zstd only from Python 3.14 (compression.zstd).
_LAYER_MODES: dict[str, Literal["r|gz", "r|"]] = {
    "application/vnd.oci.image.layer.v1.tar+gzip": "r|gz",
    "application/vnd.docker.image.rootfs.diff.tar.gzip": "r|gz",
    "application/vnd.oci.image.layer.v1.tar": "r|",
    "application/vnd.docker.image.rootfs.diff.tar": "r|",
}
_KINDS = {tarfile.DIRTYPE: "dir", tarfile.SYMTYPE: "symlink", tarfile.LNKTYPE: "hardlink",
          tarfile.CHRTYPE: "char device", tarfile.BLKTYPE: "block device",
          tarfile.FIFOTYPE: "fifo"}  # fmt: skip
# ValueError: a JSONDecodeError or UnicodeDecodeError; EOFError: a truncated gzip stream.
_READ_ERRORS = (tarfile.TarError, KeyError, TypeError, ValueError, OSError, EOFError, zlib.error)
_ABSENT = object()


@dataclass(frozen=True)
class FileEntry:
    """One member of a layer, as a file diff shows it."""

    kind: str  # file, dir, symlink, hardlink, char device, block device, fifo, other
    size: int  # of a regular file, else 0
    sha256: str  # of a regular file's content (hex), else ""
    mode: int
    uid: int
    gid: int
    mtime: float
    linkname: str


@dataclass(frozen=True)
class FileDiff:
    path: str  # "/var/log/dpkg.log"
    # "only in A", "only in B", or any of "type", "content", "link target", "mode",
    # "owner", "mtime" — in that order
    changes: tuple[str, ...]
    a: FileEntry | None
    b: FileEntry | None


@dataclass(frozen=True)
class LayerDiff:
    index: int  # from 1
    a_digest: str  # "" where A has no layer at this index
    b_digest: str
    files: tuple[FileDiff, ...] = ()  # sorted by path, at most max_files
    more_files: int = 0  # differing files beyond those listed
    note: str = ""  # why files were not compared: "only in A", "cannot be compared (zstd)"


@dataclass(frozen=True)
class ValueDiff:
    path: str  # dotted: "created", "config.Labels.x", "annotations.x"
    a: str  # JSON, shortened; "(absent)"
    b: str


@dataclass(frozen=True)
class PlatformDiff:
    platform: str
    a_digest: str  # the image manifest digest; "" where A has no image for the platform
    b_digest: str
    config: tuple[ValueDiff, ...] = ()
    manifest: tuple[ValueDiff, ...] = ()  # beside its config and layers
    layer_counts: tuple[int, int] = (0, 0)
    layers: tuple[LayerDiff, ...] = ()

    @property
    def identical(self) -> bool:
        return self.a_digest == self.b_digest


@dataclass(frozen=True)
class ArchiveDiff:
    a_digest: str  # what each index.json names: one image, or an index of platforms
    b_digest: str
    platforms: tuple[PlatformDiff, ...]  # sorted by platform

    @property
    def identical(self) -> bool:
        return self.a_digest == self.b_digest


def same_images(a: Mapping[str, str], b: Mapping[str, str]) -> dict[str, bool]:
    """platform → whether two builds made the same image for it (False where only one
    did), from two manifest entries' ``platform_images()``."""
    return {p: a.get(p) == b.get(p) for p in sorted(a.keys() | b.keys())}


def diff_archives(a: Path, b: Path, *, max_files: int = MAX_FILES) -> ArchiveDiff:
    """What differs between two builds' OCI archives, platform by platform."""
    with ExitStack() as stack:
        side_a, side_b = (_Archive(stack.enter_context(_open(path)), path) for path in (a, b))
        top_a, images_a = side_a.images()
        top_b, images_b = side_b.images()
        platforms = tuple(
            _platform_diff(side_a, side_b, p, images_a.get(p, ""), images_b.get(p, ""), max_files)
            for p in sorted(images_a.keys() | images_b.keys())
        )
    return ArchiveDiff(top_a, top_b, platforms)


@contextmanager
def _reading(source: Path) -> Iterator[None]:
    try:
        yield
    except _READ_ERRORS as err:
        raise BuildError(f"{source}: not a readable OCI archive ({err})") from err


def _open(path: Path) -> tarfile.TarFile:
    with _reading(path):
        return tarfile.open(path, "r:")


@dataclass(frozen=True)
class _Archive:
    tar: tarfile.TarFile
    source: Path

    def images(self) -> tuple[str, dict[str, str]]:
        """The digest index.json names, and platform → image manifest digest (attestation
        manifests left out)."""
        with _reading(self.source):
            oci_archive.check_members(self.tar, self.source)
            top, index = oci_archive.archive_top(self.tar, self.source)
        digest = str(top["digest"])
        if index is not None:
            return digest, oci_archive.index_children(index, str(self.source))
        return digest, {oci_archive.platform_key(self.config(self.json(digest))): digest}

    def json(self, digest: str) -> dict[str, Any]:
        with _reading(self.source):
            document = oci_archive.archive_json(self.tar, self.source, _blob(digest), digest)
        if not isinstance(document, dict):
            raise BuildError(f"{self.source}: {digest} is not a JSON object")
        return document

    def config(self, manifest: Mapping[str, Any]) -> dict[str, Any]:
        with _reading(self.source):
            digest = str(manifest["config"]["digest"])
        return self.json(digest)

    def layers(self, manifest: Mapping[str, Any]) -> list[dict[str, Any]]:
        layers = manifest.get("layers") or []
        if not isinstance(layers, list) or not all(isinstance(x, dict) for x in layers):
            raise BuildError(f"{self.source}: an image manifest's layers are not descriptors")
        return layers

    def layer_files(self, layer: Mapping[str, Any]) -> dict[str, FileEntry]:
        """path → entry of each member of a layer, hashed as it streams past (a later
        member at one path replaces an earlier one, as unpacking the layer would)."""
        files: dict[str, FileEntry] = {}
        with _reading(self.source):
            blob = self.tar.extractfile(_blob(str(layer["digest"])))
            if blob is None:
                raise BuildError(f"{self.source}: layer {layer['digest']} is not a file")
            mode = _LAYER_MODES[str(layer["mediaType"])]
            with blob, tarfile.open(fileobj=blob, mode=mode) as tar:
                for member in tar:
                    files[_path(member.name, self.source)] = _entry(tar, member)
        return files


def _blob(digest: str) -> str:
    return f"blobs/sha256/{digest.removeprefix('sha256:')}"


def _path(name: str, source: Path) -> str:
    """A layer member's name as the path it unpacks to: ``./usr/bin/`` → ``/usr/bin``."""
    path = PurePosixPath(name)
    if path.is_absolute() or ".." in path.parts:
        raise BuildError(
            f"{source}: a layer holds {name!r}, which would land outside the root — not a "
            "layer a build wrote"
        )
    return "/" + "/".join(path.parts)


def _entry(tar: tarfile.TarFile, member: tarfile.TarInfo) -> FileEntry:
    kind = "file" if member.isreg() else _KINDS.get(member.type, "other")
    sha256 = ""
    if member.isreg():
        content = tar.extractfile(member)
        if content is None:
            raise tarfile.TarError(f"{member.name!r} has no content")
        digest = hashlib.sha256()
        with content:
            while chunk := content.read(_CHUNK):
                digest.update(chunk)
        sha256 = digest.hexdigest()
    size = member.size if member.isreg() else 0
    return FileEntry(
        kind, size, sha256, member.mode, member.uid, member.gid, member.mtime, member.linkname
    )


def _platform_diff(
    a: _Archive, b: _Archive, platform: str, digest_a: str, digest_b: str, max_files: int
) -> PlatformDiff:
    if not digest_a or not digest_b or digest_a == digest_b:
        return PlatformDiff(platform, digest_a, digest_b)
    manifest_a, manifest_b = a.json(digest_a), b.json(digest_b)
    layers_a, layers_b = a.layers(manifest_a), b.layers(manifest_b)
    return PlatformDiff(
        platform,
        digest_a,
        digest_b,
        config=tuple(_value_diffs(a.config(manifest_a), b.config(manifest_b))),
        manifest=tuple(_value_diffs(_beside_layers(manifest_a), _beside_layers(manifest_b))),
        layer_counts=(len(layers_a), len(layers_b)),
        layers=tuple(_layer_diffs(a, b, layers_a, layers_b, max_files)),
    )


def _beside_layers(manifest: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in manifest.items() if k not in ("config", "layers")}


def _value_diffs(a: Any, b: Any, path: str = "") -> list[ValueDiff]:
    """Dotted paths down through objects (a list is one value) where ``a`` and ``b`` differ."""
    if not (isinstance(a, dict) and isinstance(b, dict)):
        return [] if a == b else [ValueDiff(path, _short(a), _short(b))]
    diffs: list[ValueDiff] = []
    for key in sorted(a.keys() | b.keys()):
        inner = f"{path}.{key}" if path else key
        diffs += _value_diffs(a.get(key, _ABSENT), b.get(key, _ABSENT), inner)
    return diffs


def _short(value: Any) -> str:
    text = "(absent)" if value is _ABSENT else json.dumps(value, sort_keys=True)
    return text if len(text) <= _SHORT else text[: _SHORT - 1] + "…"


def _layer_diffs(
    a: _Archive,
    b: _Archive,
    layers_a: list[dict[str, Any]],
    layers_b: list[dict[str, Any]],
    max_files: int,
) -> Iterator[LayerDiff]:
    """The layers that differ, index by index; files compared where both sides can be read."""
    pairs: Iterator[tuple[dict[str, Any], dict[str, Any]]]
    pairs = itertools.zip_longest(layers_a, layers_b, fillvalue={})
    for index, (layer_a, layer_b) in enumerate(pairs, start=1):
        digest_a, digest_b = str(layer_a.get("digest", "")), str(layer_b.get("digest", ""))
        if digest_a == digest_b:
            continue
        note = "only in A" if not digest_b else "only in B" if not digest_a else ""
        note = note or _cannot_compare(layer_a) or _cannot_compare(layer_b)
        if note:
            yield LayerDiff(index, digest_a, digest_b, note=note)
            continue
        files, more = _file_diffs(a.layer_files(layer_a), b.layer_files(layer_b), max_files)
        yield LayerDiff(index, digest_a, digest_b, files, more)


def _cannot_compare(layer: Mapping[str, Any]) -> str:
    media_type = str(layer.get("mediaType", ""))
    if media_type in _LAYER_MODES:
        return ""
    return f"cannot be compared ({media_type.rpartition('+')[2] or 'no media type'})"


def _file_diffs(
    a: Mapping[str, FileEntry], b: Mapping[str, FileEntry], max_files: int
) -> tuple[tuple[FileDiff, ...], int]:
    """The first ``max_files`` differing paths (sorted), and how many more differ."""
    listed: list[FileDiff] = []
    count = 0
    for path in sorted(a.keys() | b.keys()):
        if changes := _changes(a.get(path), b.get(path)):
            count += 1
            if len(listed) < max_files:
                listed.append(FileDiff(path, changes, a.get(path), b.get(path)))
    return tuple(listed), count - len(listed)


def _changes(a: FileEntry | None, b: FileEntry | None) -> tuple[str, ...]:
    if a is None or b is None:
        return ("only in B",) if a is None else ("only in A",)
    checks = (
        ("type", a.kind != b.kind),
        ("content", (a.size, a.sha256) != (b.size, b.sha256)),
        ("link target", a.linkname != b.linkname),
        ("mode", a.mode != b.mode),
        ("owner", (a.uid, a.gid) != (b.uid, b.gid)),
        ("mtime", a.mtime != b.mtime),
    )
    return tuple(change for change, differs in checks if differs)


def render(diff: ArchiveDiff) -> list[str]:
    """One line per difference, for a person (control characters in names escaped)."""
    lines = [line for platform in diff.platforms for line in _render_platform(platform)]
    if not diff.identical and all(p.identical for p in diff.platforms):
        lines.append(
            f"index {_digest(diff.a_digest)} ≠ {_digest(diff.b_digest)}: every platform's "
            "image is identical (the index's annotations or attestations differ)"
        )
    return ["".join(c if c.isprintable() else ascii(c)[1:-1] for c in line) for line in lines]


def _render_platform(p: PlatformDiff) -> list[str]:
    if p.identical:
        return [f"{p.platform} identical {_digest(p.a_digest)}"]
    if not p.a_digest or not p.b_digest:
        side = "A" if p.a_digest else "B"
        return [f"{p.platform} only in {side} {_digest(p.a_digest or p.b_digest)}"]
    lines = [f"{p.platform} image {_digest(p.a_digest)} ≠ {_digest(p.b_digest)}"]
    lines += [f"{p.platform} config {d.path} {d.a} ≠ {d.b}" for d in p.config]
    lines += [f"{p.platform} manifest {d.path} {d.a} ≠ {d.b}" for d in p.manifest]
    count_a, count_b = p.layer_counts
    if count_a != count_b:
        lines.append(f"{p.platform} layer count {count_a} ≠ {count_b}")
    for layer in p.layers:
        head = (
            f"{p.platform} layer {layer.index}/{max(count_a, count_b)} "
            f"{_digest(layer.a_digest)} ≠ {_digest(layer.b_digest)}"
        )
        lines += _render_layer(head, layer)
    return lines


def _render_layer(head: str, layer: LayerDiff) -> list[str]:
    if layer.note:
        return [f"{head}: {layer.note}"]
    if not layer.files:
        return [f"{head}: no file differs (the compression or tar headers do)"]
    lines = [
        f"{head}: {f.path} {', '.join(f.changes)} {_side(f.a, f.changes)} ≠ {_side(f.b, f.changes)}"
        for f in layer.files
    ]
    if layer.more_files:
        lines.append(f"{head}: and {layer.more_files} more files")
    return lines


def _side(entry: FileEntry | None, changes: tuple[str, ...]) -> str:
    """What one side of a file diff shows: the fields that changed."""
    if entry is None:
        return "(absent)"
    fields = {
        "link target": f"→ {entry.linkname}",
        "mode": f"mode {entry.mode:o}",
        "owner": f"owner {entry.uid}:{entry.gid}",
        "mtime": f"mtime {entry.mtime}",
    }
    shown = [fields.get(change, _what(entry)) for change in changes]
    return " ".join(dict.fromkeys(shown))


def _what(entry: FileEntry) -> str:
    if entry.kind == "file":
        return f"{entry.size} B sha256:{entry.sha256[:12]}…"
    return f"{entry.kind} → {entry.linkname}" if entry.linkname else entry.kind


def _digest(digest: str) -> str:
    return digest[:19] + "…" if digest else "(none)"
