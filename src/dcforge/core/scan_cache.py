"""Scan results reused by image digest: a re-gate of unchanged images runs no scanner.

Two caches, each keyed by the image digest and everything that decides its outputs. The
report cache (``REPORT_SUFFIXES``) holds one image's Trivy report and the platform its
config names (empty when Trivy read the image from a registry), keyed by the vulnerability
DB digest, the gate policy, the Trivy config (trivy.yaml and its ignore file) and Trivy's
version and binary: a new DB, policy, config or Trivy is another key, so it scans again.
The gate and the rescan share it — an image the rescan scanned with today's DB is not
scanned again by the gate that follows, nor by the rescan of the release it publishes.
SBOMs do not depend on the DB, the policy or Trivy: the SBOM cache (``SBOM_SUFFIXES``,
keyed by the image and syft alone) keeps them across DB updates, so a gate after a new DB —
every few hours, the CVE clock's case — runs Trivy on an unchanged image, not syft. The
verdict is never cached: it is decided afresh from the reused outputs with today's waivers
and date.

Entries are written whole (a temporary folder renamed into place) and each file is
checked against the sha256 recorded with it when read; anything missing or different is a
miss, never a verdict.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dcforge.core.hashing import file_sha256

REPORT_SUFFIXES = (".trivy.json",)
SBOM_SUFFIXES = (".spdx.json", ".cdx.json")
FORMAT = 2  # 1: one entry held the report and the SBOMs


def salt(parts: Mapping[str, Any]) -> str:
    """The part of every key that is not the image: a stable hash of ``parts``."""
    text = json.dumps({"format": FORMAT, **parts}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class Hit:
    report: dict[str, Any]
    sbom: dict[str, Any]
    platform: str


@dataclass(frozen=True)
class ScanCache:
    root: Path
    salt: str
    suffixes: tuple[str, ...] = REPORT_SUFFIXES  # SBOM_SUFFIXES: the SBOM cache

    def _dir(self, digest: str) -> Path:
        key = hashlib.sha256(f"{self.salt}\n{digest}".encode()).hexdigest()
        return self.root / key[:2] / key

    def _restore(
        self, digest: str, stem: str, reports_dir: Path
    ) -> tuple[dict[str, Any], dict[str, bytes]] | None:
        """The entry's files, each read once and checked against the sha256 kept with it,
        and written to ``reports_dir/<stem>.*``: (its meta, the bytes per suffix), or None.
        What the caller parses is what was checked, not the copy (another writer's)."""
        entry = self._dir(digest)
        try:
            meta = json.loads((entry / "meta.json").read_text())
            if meta.get("digest") != digest or meta.get("salt") != self.salt:
                return None
            kept = {suffix: (entry / f"x{suffix}").read_bytes() for suffix in self.suffixes}
            for suffix, data in kept.items():
                if hashlib.sha256(data).hexdigest() != meta["sha256"][suffix]:
                    return None
            for suffix, data in kept.items():
                (reports_dir / f"{stem}{suffix}").write_bytes(data)
        except (OSError, KeyError, TypeError, ValueError, AttributeError):
            return None
        return (meta, kept) if isinstance(meta, dict) else None

    def report(self, digest: str, stem: str, reports_dir: Path) -> Hit | None:
        """Of the report cache: copy Trivy's report to ``reports_dir/<stem>.trivy.json``;
        it and the platform, or None (``Hit.sbom`` is empty: see :meth:`sbom`)."""
        found = self._restore(digest, stem, reports_dir)
        if found is None:
            return None
        meta, kept = found
        report = _json_object(kept[".trivy.json"])
        return None if report is None else Hit(report, {}, str(meta.get("platform", "")))

    def sbom(self, digest: str, stem: str, reports_dir: Path) -> dict[str, Any] | None:
        """Of the SBOM cache: copy the SBOMs to ``reports_dir/<stem>.*``; the SPDX, or None."""
        found = self._restore(digest, stem, reports_dir)
        return _json_object(found[1][".spdx.json"]) if found else None

    def put(self, digest: str, stem: str, reports_dir: Path, platform: str) -> None:
        """Keep ``reports_dir/<stem>.*`` for ``digest``; a cache that cannot be written is
        only a slower next gate."""
        entry = self._dir(digest)
        tmp: Path | None = None
        try:
            entry.parent.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=".put-", dir=entry.parent))
            sums = {}
            for suffix in self.suffixes:
                shutil.copyfile(reports_dir / f"{stem}{suffix}", tmp / f"x{suffix}")
                sums[suffix] = file_sha256(tmp / f"x{suffix}")
            meta = {"digest": digest, "salt": self.salt, "platform": platform, "sha256": sums}
            (tmp / "meta.json").write_text(json.dumps(meta))
            shutil.rmtree(entry, ignore_errors=True)
            os.replace(tmp, entry)
        except OSError:
            if tmp is not None:
                shutil.rmtree(tmp, ignore_errors=True)


def _json_object(data: bytes) -> dict[str, Any] | None:
    try:
        doc = json.loads(data)
    except ValueError:
        return None
    return doc if isinstance(doc, dict) else None
