"""Scan reuse: a re-gate of unchanged images runs no scanner, and reuses nothing when the
DB, the policy or the cached files changed — the verdict is always decided afresh."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dcforge.core import trivydb
from dcforge.infra.runner import Runner
from tests.integration.conftest import (
    TrivyDb,
    gate,
    push_db,
    verdicts,
)

pytestmark = pytest.mark.integration


def _reused(stderr: str) -> set[str]:
    return {line.split()[0] for line in stderr.splitlines() if " scan reused " in line}


def _scanned(stderr: str) -> set[str]:
    return {line.split()[0] for line in stderr.splitlines() if line.endswith(" scanned")}


ALL = {"tiny-one", "tiny-two", "vuln"}


def test_a_regate_reuses_every_scan_and_decides_the_same(
    gated_project: Path, trivy_db: TrivyDb
) -> None:
    first = gate(gated_project, trivy_db)
    assert first.returncode == 6 and _scanned(first.stderr) == ALL
    before = verdicts(gated_project)
    reports = {p.name: p.read_bytes() for p in (gated_project / "dist/reports").glob("*.json")}
    again = gate(gated_project, trivy_db)
    assert again.returncode == 6, again.stderr
    assert _reused(again.stderr) == ALL and not _scanned(again.stderr)
    assert verdicts(gated_project) == before  # vuln still blocked by CVE-2099-0001
    for name, data in reports.items():
        if name.endswith((".trivy.json", ".spdx.json", ".cdx.json")):
            assert (gated_project / "dist/reports" / name).read_bytes() == data
    forced = gate(gated_project, trivy_db, "--no-scan-cache")
    assert _scanned(forced.stderr) == ALL


def test_a_new_db_scans_again(
    gated_project: Path, trivy_db: TrivyDb, namespace: str, runner: Runner, tmp_path: Path
) -> None:
    assert gate(gated_project, trivy_db).returncode == 6
    fixed = push_db(
        runner,
        tmp_path / "db",
        f"{namespace}/trivy-db-cache-test:1",
        [trivydb.Advisory("CVE-2099-0002", "busybox", "1:1.36.0-1", "HIGH")],
    )
    result = gate(gated_project, fixed)
    assert _scanned(result.stderr) == ALL and not _reused(result.stderr)
    # ... with Trivy: the SBOMs of the same images by the same syft are reused.
    sboms = [line for line in result.stderr.splitlines() if " SBOM reused " in line]
    assert len(sboms) == len(ALL), result.stderr
    v = verdicts(gated_project)
    assert v["vuln"]["passed"] is True  # the new DB has no zlib advisory
    assert v["tiny-one"]["passed"] is False  # … but one for busybox


def test_a_changed_policy_scans_again(gated_project: Path, trivy_db: TrivyDb) -> None:
    assert gate(gated_project, trivy_db).returncode == 6
    result = gate(gated_project, trivy_db, env={"DCFORGE_BLOCKING_SEVERITIES": "CRITICAL"})
    assert _scanned(result.stderr) == ALL and not _reused(result.stderr)


def test_a_tampered_cache_entry_is_a_miss_never_a_pass(
    gated_project: Path, trivy_db: TrivyDb
) -> None:
    """Someone edits the cached Trivy report to drop the finding: the file no longer
    matches the sha256 kept with it, so the image is scanned again and still blocks."""
    assert gate(gated_project, trivy_db).returncode == 6
    edited = 0
    for report in (gated_project / ".dcforge/scan-cache").rglob("x.trivy.json"):
        doc = json.loads(report.read_text())
        for result in doc.get("Results") or []:
            if result.get("Vulnerabilities"):
                result["Vulnerabilities"] = []
                edited += 1
        report.write_text(json.dumps(doc))
    assert edited
    again = gate(gated_project, trivy_db)
    assert again.returncode == 6
    assert "vuln" in _scanned(again.stderr)
    assert verdicts(gated_project)["vuln"]["passed"] is False
