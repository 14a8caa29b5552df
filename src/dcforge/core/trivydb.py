"""Write a Trivy vulnerability DB (bbolt ``trivy.db`` + ``metadata.json``) from advisories.

Used for the offline/air-gapped path and the gate canary: Trivy reads it like the real DB
(schema v2). Layout, per Trivy's trivy-db: bucket ``data-source`` (``debian 12`` → source
info), bucket ``debian 12`` → one nested bucket per *source* package → CVE id →
``{"FixedVersion": …}``, and bucket ``vulnerability`` → CVE id → details.
"""

from __future__ import annotations

import io
import json
import struct
import tarfile
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any

PAGE_SIZE = 4096
META_OFFSET = 16  # page header
META_CHECKSUM_OFFSET = 56  # bytes of meta covered by the checksum
DB_MEDIA_TYPE = "application/vnd.aquasec.trivy.db.layer.v1.tar+gzip"
DB_ARTIFACT_TYPE = "application/vnd.aquasec.trivy.config.v1+json"
SAMPLE_SOURCE_NAME = "dcforge SAMPLE data (not a real vulnerability database)"
# The sample DB carries a marker three ways, so it is told apart wherever it is copied to:
# a file in the DB archive (Trivy keeps it in its cache; it rewrites metadata.json), an
# annotation on the artifact, and the data-source name every finding reports.
SAMPLE_MARKER_FILE = "dcforge-sample"
SAMPLE_ANNOTATION = "dev.dcforge.sample"
SEVERITY_CODES = {"UNKNOWN": 0, "LOW": 1, "MEDIUM": 2, "HIGH": 3, "CRITICAL": 4}


@dataclass(frozen=True)
class Advisory:
    """One planted vulnerability: ``source_package`` as dpkg's Source field names it."""

    cve: str
    source_package: str
    fixed_version: str
    severity: str = "CRITICAL"
    title: str = ""
    platform: str = "debian 12"


# bbolt's on-disk format (go.etcd.io/bbolt: page.go, node.go, db.go): every page starts
# with a 16-byte header (id u64, flags u16, count u16, overflow u32); pages 0 and 1 hold
# the meta (magic, version, page size, flags, root bucket {root page u64, sequence u64},
# freelist, pgid, txid, checksum); a branch page's elements are (pos u32, ksize u32,
# pgid u64), a leaf page's (flags u32, pos u32, ksize u32, vsize u32), pos counted from
# the element itself; a leaf element with flag 1 is a bucket.
BOLT_MAGIC = 0xED0CDAED
_BRANCH, _LEAF, _BUCKET_LEAF = 0x01, 0x02, 0x01


class DbFormatError(ValueError):
    """A trivy.db that is not a bbolt file this reader understands."""


def platforms(db_file: Path) -> frozenset[str]:
    """The names of the top-level buckets of ``trivy.db``: the platforms (``debian 12``,
    ``ubuntu 24.04``, ``alpine 3.20``, …) and language ecosystems it holds advisories for,
    plus its own ``data-source`` and ``vulnerability`` buckets."""
    with db_file.open("rb") as fh:
        first = fh.read(PAGE_SIZE)
        size = struct.unpack_from("<I", first, META_OFFSET + 8)[0] if len(first) >= 64 else 0
        if not 512 <= size <= 1 << 20:
            raise DbFormatError(f"{db_file}: not a bbolt file (page size {size})")
        fh.seek(size)
        page_size, root = _meta([first[META_OFFSET:][:64], fh.read(PAGE_SIZE)[META_OFFSET:][:64]])
        names: set[str] = set()
        try:
            _collect(fh, page_size, root, names, depth=0)
        except struct.error as err:  # an element or key past the end of its page
            raise DbFormatError(f"{db_file}: a bbolt page is cut short ({err})") from None
    return frozenset(names)


def _meta(metas: list[bytes]) -> tuple[int, int]:
    """(page size, root page of the root bucket) from the newer valid meta page."""
    best: tuple[int, int, int] | None = None
    for meta in metas:
        if len(meta) < 64:
            continue
        magic, _version, size, _flags, root, _seq, _free, _pgid, txid, checksum = struct.unpack(
            "<IIIIQQQQQQ", meta
        )
        if magic != BOLT_MAGIC or checksum != _fnv1a64(meta[:META_CHECKSUM_OFFSET]):
            continue
        if best is None or txid > best[0]:
            best = (txid, size, root)
    if best is None:
        raise DbFormatError("no valid bbolt meta page")
    return best[1], best[2]


def _collect(fh: Any, page_size: int, pgid: int, names: set[str], depth: int) -> None:
    if depth > 32:
        raise DbFormatError("bbolt tree deeper than 32 pages")
    fh.seek(pgid * page_size)
    header = fh.read(16)
    if len(header) < 16:
        raise DbFormatError(f"bbolt page {pgid} is past the end of the file")
    _id, flags, count, overflow = struct.unpack("<QHHI", header)
    fh.seek(pgid * page_size)
    page = fh.read(page_size * (overflow + 1))
    if 16 + 16 * count > len(page):
        raise DbFormatError(f"bbolt page {pgid} lists {count} elements past its end")
    for i in range(count):
        at = 16 + 16 * i
        if flags & _BRANCH:
            pos, ksize, child = struct.unpack_from("<IIQ", page, at)
            _collect(fh, page_size, child, names, depth + 1)
        elif flags & _LEAF:
            leaf_flags, pos, ksize, _vsize = struct.unpack_from("<IIII", page, at)
            if leaf_flags & _BUCKET_LEAF:
                names.add(page[at + pos : at + pos + ksize].decode("utf-8", "replace"))
        else:
            raise DbFormatError(f"bbolt page {pgid} is neither a branch nor a leaf")


def _fnv1a64(data: bytes) -> int:
    h = 0xCBF29CE484222325
    for byte in data:
        h ^= byte
        h = (h * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


def _fix_meta_checksums(path: Path) -> None:
    """boltdb==0.0.2 writes wrong meta checksums; bbolt (and so Trivy) checks them."""
    with path.open("r+b") as fh:
        for page in (0, 1):
            fh.seek(page * PAGE_SIZE + META_OFFSET)
            meta = fh.read(META_CHECKSUM_OFFSET)
            fh.write(struct.pack("<Q", _fnv1a64(meta)))


# The bundled sample DB: only for a local demo when the public DB is unreachable. It flags
# the gate canary's planted package and nothing a real image ships with at a blocking level.
SAMPLE_ADVISORIES = (
    Advisory(
        "DCFORGE-CANARY-0001", "dcforge-canary", "2.0-1", "CRITICAL", "planted canary vulnerability"
    ),
    Advisory("DCFORGE-SAMPLE-0002", "curl", "", "LOW", "sample low-severity advisory"),
    Advisory("DCFORGE-SAMPLE-0003", "zlib", "1:1.2.0-1", "HIGH", "sample advisory, fixed long ago"),
)


def write_db(
    directory: Path,
    advisories: Iterable[Advisory],
    *,
    updated_at: datetime | None = None,
    sample: bool = False,
) -> Path:
    """Write ``trivy.db`` and ``metadata.json`` into ``directory``; returns the directory."""
    directory.mkdir(parents=True, exist_ok=True)
    db_path = directory / "trivy.db"
    db_path.unlink(missing_ok=True)
    items = list(advisories)
    platforms = sorted({a.platform for a in items} | {"debian 12"})
    from boltdb import BoltDB  # writing DBs is for tests and scripts: not a runtime dependency

    db = BoltDB(str(db_path))
    with db.update() as tx:
        _data_sources(tx, platforms, sample)
        for platform in platforms:
            _platform_bucket(tx, platform, [a for a in items if a.platform == platform])
        _vulnerabilities(tx, items)
    db.close()
    # boltdb's __del__ closes again and raises on the closed fd; make that a no-op.
    db.close = lambda: None
    _fix_meta_checksums(db_path)
    _write_metadata(directory, updated_at or datetime.now(UTC), sample)
    return directory


def _data_sources(tx: Any, platforms: list[str], sample: bool) -> None:
    sources = tx.create_bucket(b"data-source")
    info = {
        "ID": "debian",
        "Name": SAMPLE_SOURCE_NAME if sample else "Debian Security Tracker",
        "URL": "https://salsa.debian.org/security-tracker-team/security-tracker",
    }
    for platform in platforms:
        sources.put(platform.encode(), json.dumps(info).encode())


def _platform_bucket(tx: Any, platform: str, advisories: list[Advisory]) -> None:
    """``<platform>`` → source package → CVE id → ``{"FixedVersion": …}``."""
    bucket = tx.create_bucket(platform.encode())
    by_pkg: dict[str, list[Advisory]] = {}
    for a in advisories:
        by_pkg.setdefault(a.source_package, []).append(a)
    for pkg, advs in sorted(by_pkg.items()):
        pkg_bucket = bucket.create_bucket(pkg.encode())
        for a in advs:
            pkg_bucket.put(a.cve.encode(), json.dumps({"FixedVersion": a.fixed_version}).encode())


def _vulnerabilities(tx: Any, advisories: list[Advisory]) -> None:
    vulns = tx.create_bucket(b"vulnerability")
    for a in advisories:
        detail = {
            "Title": a.title or f"planted advisory for {a.source_package}",
            "Description": "Sample advisory from dcforge.core.trivydb (not real data).",
            "Severity": a.severity,
            "VendorSeverity": {"debian": SEVERITY_CODES.get(a.severity, 0)},
        }
        vulns.put(a.cve.encode(), json.dumps(detail).encode())


def _write_metadata(directory: Path, now: datetime, sample: bool) -> None:
    stamp = now.strftime("%Y-%m-%dT%H:%M:%S.000000000Z")
    metadata: dict[str, object] = {
        "Version": 2,
        "NextUpdate": "2099-01-01T00:00:00Z",
        "UpdatedAt": stamp,
        "DownloadedAt": stamp,
    }
    marker = directory / SAMPLE_MARKER_FILE
    marker.unlink(missing_ok=True)
    if sample:
        metadata["DcforgeSample"] = True  # reports say loudly that this is not real data
        marker.write_text(SAMPLE_SOURCE_NAME + "\n")
    (directory / "metadata.json").write_text(json.dumps(metadata))


SAMPLE_DB_RESOURCE = "sample-trivy.db"


def sample_db(directory: Path, *, updated_at: datetime | None = None) -> Path:
    """The bundled sample DB (``resources/sample-trivy.db``, written from SAMPLE_ADVISORIES
    by ``scripts/make-sample-db``), dated now and carrying the sample marker."""
    directory.mkdir(parents=True, exist_ok=True)
    data = resources.files("dcforge.resources").joinpath(SAMPLE_DB_RESOURCE).read_bytes()
    (directory / "trivy.db").write_bytes(data)
    _write_metadata(directory, updated_at or datetime.now(UTC), sample=True)
    return directory


def pack(directory: Path, out: Path) -> Path:
    """``db.tar.gz`` as Trivy's DB artifact layer holds it (trivy.db + metadata.json)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name in ("trivy.db", "metadata.json", SAMPLE_MARKER_FILE):
            if name != SAMPLE_MARKER_FILE or (directory / name).is_file():
                tar.add(directory / name, arcname=name)
    out.write_bytes(buf.getvalue())
    return out
