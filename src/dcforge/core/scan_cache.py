"""Scan results reused by image digest: a re-gate of unchanged images runs no scanner.

An entry holds one image's Trivy report and syft SBOMs (SPDX, CycloneDX) and the platform
its config names, under a key hashed from everything that decides those outputs: the
image digest, the vulnerability DB digest, the gate policy, the Trivy config (trivy.yaml
and its ignore file) and the scanners' versions and binaries. A new DB, policy, config or
scanner is another key, so it scans again. The verdict is never cached: it is decided
afresh from the reused outputs with today's waivers and date.

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

SUFFIXES = (".trivy.json", ".spdx.json", ".cdx.json")
FORMAT = 1


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

    def _dir(self, digest: str) -> Path:
        key = hashlib.sha256(f"{self.salt}\n{digest}".encode()).hexdigest()
        return self.root / key[:2] / key

    def get(self, digest: str, stem: str, reports_dir: Path) -> Hit | None:
        """Copy the cached outputs to ``reports_dir/<stem>.*`` and return them, or None."""
        entry = self._dir(digest)
        try:
            meta = json.loads((entry / "meta.json").read_text())
            if meta.get("digest") != digest or meta.get("salt") != self.salt:
                return None
            for suffix in SUFFIXES:
                if file_sha256(entry / f"x{suffix}") != meta["sha256"][suffix]:
                    return None
            for suffix in SUFFIXES:
                shutil.copyfile(entry / f"x{suffix}", reports_dir / f"{stem}{suffix}")
            report = json.loads((reports_dir / f"{stem}.trivy.json").read_text())
            sbom = json.loads((reports_dir / f"{stem}.spdx.json").read_text())
        except (OSError, KeyError, TypeError, ValueError):
            return None
        if not isinstance(report, dict) or not isinstance(sbom, dict):
            return None
        return Hit(report, sbom, str(meta.get("platform", "")))

    def put(self, digest: str, stem: str, reports_dir: Path, platform: str) -> None:
        """Keep ``reports_dir/<stem>.*`` for ``digest``; a cache that cannot be written is
        only a slower next gate."""
        entry = self._dir(digest)
        tmp: Path | None = None
        try:
            entry.parent.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=".put-", dir=entry.parent))
            sums = {}
            for suffix in SUFFIXES:
                shutil.copyfile(reports_dir / f"{stem}{suffix}", tmp / f"x{suffix}")
                sums[suffix] = file_sha256(tmp / f"x{suffix}")
            meta = {"digest": digest, "salt": self.salt, "platform": platform, "sha256": sums}
            (tmp / "meta.json").write_text(json.dumps(meta))
            shutil.rmtree(entry, ignore_errors=True)
            os.replace(tmp, entry)
        except OSError:
            if tmp is not None:
                shutil.rmtree(tmp, ignore_errors=True)
