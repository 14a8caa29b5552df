"""The scan caches (Trivy reports; SBOMs): a key per image digest and everything that
decides the scanner's outputs; anything missing or altered is a miss."""

from __future__ import annotations

import json
from pathlib import Path

from dcforge.core.scan_cache import REPORT_SUFFIXES, SBOM_SUFFIXES, ScanCache, salt

DIGEST = "sha256:" + "a" * 64


def _reports(directory: Path, stem: str = "img") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{stem}.trivy.json").write_text(json.dumps({"SchemaVersion": 2, "Results": []}))
    (directory / f"{stem}.spdx.json").write_text(json.dumps({"spdxVersion": "SPDX-2.3"}))
    (directory / f"{stem}.cdx.json").write_text(json.dumps({"bomFormat": "CycloneDX"}))
    return directory


def test_put_then_get_copies_the_report_back(tmp_path: Path) -> None:
    cache = ScanCache(tmp_path / "c", salt({"db": "sha256:1", "policy": {"blocking": ["HIGH"]}}))
    cache.put(DIGEST, "img", _reports(tmp_path / "r1"), "linux/amd64")
    out = tmp_path / "r2"
    out.mkdir()
    hit = cache.report(DIGEST, "other", out)
    assert hit is not None and hit.platform == "linux/amd64"
    assert hit.report["SchemaVersion"] == 2 and hit.sbom == {}  # the SBOMs: the SBOM cache
    assert sorted(p.name for p in out.iterdir()) == sorted(f"other{s}" for s in REPORT_SUFFIXES)


def test_another_db_policy_or_image_is_a_miss(tmp_path: Path) -> None:
    parts = {"db": "sha256:1", "policy": {"blocking": ["HIGH"]}, "tools": {"trivy": ["0.1", "x"]}}
    ScanCache(tmp_path / "c", salt(parts)).put(DIGEST, "img", _reports(tmp_path / "r"), "p")
    for changed in (
        {**parts, "db": "sha256:2"},
        {**parts, "policy": {"blocking": ["CRITICAL"]}},
        {**parts, "tools": {"trivy": ["0.2", "x"]}},
    ):
        changed_cache = ScanCache(tmp_path / "c", salt(changed))
        assert changed_cache.report(DIGEST, "img", tmp_path / "r") is None
    same = ScanCache(tmp_path / "c", salt(parts))
    assert same.report("sha256:" + "b" * 64, "img", tmp_path / "r") is None
    assert same.report(DIGEST, "img", tmp_path / "r") is not None


def test_an_altered_or_missing_file_is_a_miss(tmp_path: Path) -> None:
    cache = ScanCache(tmp_path / "c", salt({"db": "x"}))
    cache.put(DIGEST, "img", _reports(tmp_path / "r"), "p")
    (report,) = (tmp_path / "c").rglob("x.trivy.json")
    report.write_text(json.dumps({"SchemaVersion": 2, "Results": [], "edited": True}))
    assert cache.report(DIGEST, "img", tmp_path / "r") is None
    cache.put(DIGEST, "img", _reports(tmp_path / "r"), "p")
    (report,) = (tmp_path / "c").rglob("x.trivy.json")
    report.unlink()
    assert cache.report(DIGEST, "img", tmp_path / "r") is None
    cache.put(DIGEST, "img", _reports(tmp_path / "r"), "p")
    (meta,) = (tmp_path / "c").rglob("meta.json")
    meta.write_text(meta.read_text().replace(DIGEST, "sha256:" + "b" * 64))
    assert cache.report(DIGEST, "img", tmp_path / "r") is None


def test_an_unwritable_cache_is_only_slower(tmp_path: Path) -> None:
    blocked = tmp_path / "file"
    blocked.write_text("not a directory")
    cache = ScanCache(blocked / "c", salt({}))
    cache.put(DIGEST, "img", _reports(tmp_path / "r"), "p")  # no exception
    assert cache.report(DIGEST, "img", tmp_path / "r") is None


def test_the_sbom_cache_keeps_sboms_across_a_new_db_and_refuses_an_altered_one(
    tmp_path: Path,
) -> None:
    """SBOMs are keyed by the image and syft alone: a gate after a DB update (the CVE
    clock's case) runs Trivy again, not syft. An altered SBOM, another syft or another
    image is a miss."""
    syft = salt({"sbom": ["1.18.1", "sha256:s"]})
    cache = ScanCache(tmp_path / "sboms", syft, SBOM_SUFFIXES)
    reports = _reports(tmp_path / "r")
    (reports / "img.trivy.json").unlink()  # a Trivy report is not part of it
    cache.put(DIGEST, "img", reports, "linux/amd64")
    out = tmp_path / "out"
    out.mkdir()
    assert cache.sbom(DIGEST, "img", out) == {"spdxVersion": "SPDX-2.3"}
    assert sorted(p.name for p in out.iterdir()) == ["img.cdx.json", "img.spdx.json"]
    other_syft = ScanCache(tmp_path / "sboms", salt({"sbom": ["1.19.0", "sha256:t"]}))
    assert other_syft.sbom(DIGEST, "img", out) is None
    assert cache.sbom("sha256:" + "b" * 64, "img", out) is None
    (spdx,) = (tmp_path / "sboms").rglob("x.spdx.json")
    spdx.write_text(json.dumps({"spdxVersion": "SPDX-2.3", "packages": ["planted"]}))
    assert cache.sbom(DIGEST, "img", out) is None
