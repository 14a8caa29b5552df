"""The files publish attests for one permutation: each platform image's SBOM (the gate's),
SLSA provenance and OpenVEX document, and for a multi-platform index its own SBOM (naming
the platforms' SBOMs, :mod:`dcforge.core.index_sbom`) and provenance."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from dcforge.core import index_sbom, provenance
from dcforge.core import manifest as mf
from dcforge.core.attestations import PROVENANCE_TYPE, SBOM_TYPE, VEX_TYPE
from dcforge.core.errors import PublishRefused
from dcforge.core.files import atomic_write_json
from dcforge.core.settings import Settings


def sbom(settings: Settings, entry: mf.Entry, platform: str) -> Path:
    """The gate's SBOM of one platform's image (checked before anything is pushed)."""
    path = settings.dist_dir / "reports" / f"{entry.report_stem(platform)}.spdx.json"
    if not path.is_file():
        raise PublishRefused(f"{entry.name}: no {platform} SBOM at {path} — re-run the gate")
    return path


@dataclass(frozen=True)
class Attesting:
    """What every permutation's attestations share in one publish."""

    settings: Settings
    manifest: mf.Manifest
    env: Mapping[str, str]
    repo_url: str
    invocation_id: str
    allow_dirty: bool
    work: Path  # a temporary folder for the predicates
    vex: Mapping[str, Path]  # image digest → its OpenVEX document (the gate's)

    def platform_files(self, entry: mf.Entry, platform: str, digest: str) -> dict[str, Path]:
        """predicate type → file, for one platform's image (``platform`` "" for a single
        image)."""
        pred = self.work / f"{entry.report_stem(platform)}.provenance.json"
        body = provenance.predicate(
            self.manifest,
            entry,
            self.env,
            self.repo_url,
            invocation_id=self.invocation_id,
            allow_dirty=self.allow_dirty,
            platform=platform if entry.multi_platform else "",
        )
        atomic_write_json(pred, body)
        files = {SBOM_TYPE: sbom(self.settings, entry, platform), PROVENANCE_TYPE: pred}
        return files | ({VEX_TYPE: self.vex[digest]} if digest in self.vex else {})

    def index_files(self, entry: mf.Entry) -> dict[str, Path]:
        """predicate type → file, for a multi-platform permutation's index."""
        children = []
        for platform, digest in entry.platform_images().items():
            path = sbom(self.settings, entry, platform)
            document = json.loads(path.read_text())
            namespace = document.get("documentNamespace") if isinstance(document, dict) else None
            if not isinstance(namespace, str) or not namespace:
                raise PublishRefused(f"{path}: an SPDX document without a documentNamespace")
            children.append(
                index_sbom.PlatformSbom(platform, digest, namespace, index_sbom.checksum(document))
            )
        epoch = self.manifest.source_date_epoch
        created = (
            dt.datetime.fromtimestamp(epoch, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            if epoch is not None
            else self.manifest.created_at
        )
        doc = index_sbom.document(entry.repository, entry.image_digest, children, created)
        spdx = self.work / f"{entry.name}@index.spdx.json"
        atomic_write_json(spdx, doc)
        pred = self.work / f"{entry.name}@index.provenance.json"
        body = provenance.index_predicate(
            self.manifest,
            entry,
            self.env,
            self.repo_url,
            invocation_id=self.invocation_id,
            allow_dirty=self.allow_dirty,
        )
        atomic_write_json(pred, body)
        return {SBOM_TYPE: spdx, PROVENANCE_TYPE: pred}
