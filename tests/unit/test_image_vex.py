"""The gate's VEX step: the document written and recorded, Trivy's scan with it checked.

Trivy is faked here (unit tests run no process): ``rescan`` stands for Trivy scanning the
image again with the options it is given; tests/integration/test_vex.py runs the real one.
"""

from __future__ import annotations

import copy
import datetime as dt
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from dcforge.core import manifest as mf
from dcforge.core import policy, vex
from dcforge.core.errors import ToolError
from dcforge.core.waivers import Waiver
from dcforge.infra import image_vex
from dcforge.infra.scan_setup import GateContext
from dcforge.infra.tools.trivy import ScanOptions
from dcforge.infra.vulndb import TrivyDb

NOW = dt.datetime(2026, 11, 28, 9, tzinfo=dt.UTC)
DIGEST = "sha256:" + "c" * 64
ZLIB = "pkg:deb/debian/zlib1g@1.2.13.dfsg-1?arch=amd64&distro=debian-12.5&epoch=1"
CURL = "pkg:deb/debian/curl@7.88.1-10?arch=amd64&distro=debian-12.5"
ENTRY = mf.Entry(
    name="vuln",
    tarball="vuln.tar",
    tarball_sha256="b" * 64,
    image_digest=DIGEST,
    tags=["localhost:5000/dcforge/vuln:latest"],
    base_image=mf.BaseImage("localhost:5000/library/busybox:latest", "sha256:" + "d" * 64),
    input_hash="sha256:" + "e" * 64,
    platforms=["linux/amd64"],
    repository="localhost:5000/dcforge/vuln",
)
FINDINGS = [
    ("CVE-2099-0001", "zlib1g", "1:1.2.13.dfsg-1", "1:1.3.0-1", "CRITICAL", ZLIB),
    ("CVE-2099-0002", "zlib1g", "1:1.2.13.dfsg-1", "", "HIGH", ZLIB),
    ("CVE-2099-0003", "curl", "7.88.1-10", "7.88.1-11", "LOW", CURL),
]


def waiver(vuln: str, status: str = "affected", justification: str = "") -> Waiver:
    return Waiver(
        vuln,
        "accepted for this test",
        dt.date(2026, 12, 31),
        permutations=("vuln",),
        created=dt.date(2026, 11, 1),
        status=status,
        justification=justification,
    )


NOT_AFFECTED = waiver("CVE-2099-0001", "not_affected", "vulnerable_code_not_present")
AFFECTED = waiver("CVE-2099-0002")


def vuln(row: tuple[str, ...]) -> dict[str, Any]:
    i, p, v, f, s, purl = row
    return {
        "VulnerabilityID": i,
        "PkgName": p,
        "InstalledVersion": v,
        "FixedVersion": f,
        "Severity": s,
        "PkgIdentifier": {"PURL": purl},
    }


def trivy_report(hidden: tuple[str, ...] = ()) -> dict[str, Any]:
    """What Trivy writes for the image; ``hidden`` ids as a VEX made it hide them."""
    shown = [vuln(r) for r in FINDINGS if r[0] not in hidden]
    suppressed = [
        {"Type": "vulnerability", "Status": "not_affected", "Finding": vuln(r)}
        for r in FINDINGS
        if r[0] in hidden
    ]
    result = {"Class": "os-pkgs", "Type": "debian", "Vulnerabilities": shown}
    if suppressed:
        result["ExperimentalModifiedFindings"] = suppressed
    return {"SchemaVersion": 2, "Metadata": {"OS": {"Family": "debian"}}, "Results": [result]}


class FakeTrivy:
    """Scans again with the options it is given, answering ``answer``."""

    def __init__(self, answer: dict[str, Any] | Exception) -> None:
        self.answer = answer
        self.options: list[ScanOptions] = []

    def __call__(self, options: ScanOptions) -> dict[str, Any]:
        self.options.append(options)
        if isinstance(self.answer, Exception):
            raise self.answer
        return copy.deepcopy(self.answer)


def context(tmp_path: Path, *waivers: Waiver) -> GateContext:
    db = TrivyDb(ScanOptions(tmp_path / "cache"), "db", "sha256:" + "f" * 64, "", False, "")
    reports = tmp_path / "reports"
    reports.mkdir(exist_ok=True)
    return GateContext(
        db,
        policy.Policy(),
        waivers,
        reports,
        NOW.date(),
        now=NOW,
        publisher="localhost:5000/dcforge",
    )


def apply(
    gctx: GateContext, rescan: FakeTrivy | None, entry: mf.Entry = ENTRY
) -> tuple[image_vex.Vexed, list[str]]:
    problems: list[str] = []
    platform = entry.platforms[0]
    digest = entry.platform_images()[platform]
    done = image_vex.apply(entry, platform, digest, trivy_report(), rescan, gctx, problems)
    return done, problems


def test_trivy_scans_again_with_the_vex_and_hides_exactly_the_not_affected(
    tmp_path: Path,
) -> None:
    gctx = context(tmp_path, NOT_AFFECTED, AFFECTED)
    trivy = FakeTrivy(trivy_report(hidden=("CVE-2099-0001",)))
    done, problems = apply(gctx, trivy)
    assert problems == []
    written = gctx.reports_dir / "vuln.vex.json"
    assert done.document == {
        "file": "vuln.vex.json",
        "sha256": hashlib.sha256(written.read_bytes()).hexdigest(),
    }
    doc = json.loads(written.read_text())
    assert doc["author"] == "localhost:5000/dcforge"
    assert doc["timestamp"] == "2026-11-28T09:00:00Z"
    statuses = {s["vulnerability"]["name"]: s["status"] for s in doc["statements"]}
    assert statuses == {"CVE-2099-0001": "not_affected", "CVE-2099-0002": "affected"}
    (options,) = trivy.options
    assert options.vex == gctx.reports_dir / "vuln.trivy-vex.json"
    assert options.cache_dir == gctx.db.options.cache_dir  # the same scan, plus the VEX
    assert json.loads(options.vex.read_text()) == vex.by_package(doc)
    assert done.report == trivy_report(hidden=("CVE-2099-0001",))
    verdict = policy.decide(
        "vuln",
        report=done.report,
        sbom_packages=3,
        sbom_os_packages=None,
        policy=gctx.rules,
        waivers=gctx.waivers,
        today=gctx.today,
    )
    assert verdict.passed, verdict.reasons
    assert {f.id for f, _ in verdict.waived} == {"CVE-2099-0001", "CVE-2099-0002"}


def test_only_affected_waivers_write_the_document_and_scan_nothing_again(
    tmp_path: Path,
) -> None:
    trivy = FakeTrivy(RuntimeError("not called"))
    done, problems = apply(context(tmp_path, AFFECTED), trivy)
    assert (problems, trivy.options) == ([], [])
    assert done.document is not None
    assert done.report == trivy_report()
    assert not image_vex.hides(trivy_report(), ENTRY, context(tmp_path, AFFECTED))


def test_no_waiver_no_document_and_no_older_one_left_behind(tmp_path: Path) -> None:
    gctx = context(tmp_path)
    stale = [gctx.reports_dir / "vuln.vex.json", gctx.reports_dir / "vuln.trivy-vex.json"]
    for path in stale:
        path.write_text("{}")
    done, problems = apply(gctx, FakeTrivy(RuntimeError("not called")))
    assert (done.document, problems) == (None, [])
    assert not any(path.exists() for path in stale)


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        (trivy_report(), "Trivy did not hide CVE-2099-0001 in pkg:deb/debian/zlib1g@"),
        (
            {**trivy_report(hidden=("CVE-2099-0001",)), "Results": []},
            "lists other findings than without it",
        ),
        (ToolError("trivy exited 1"), "the vulnerability scan with the waivers' VEX failed"),
    ],
)
def test_a_scan_with_the_vex_that_does_not_add_up_is_a_problem(
    tmp_path: Path, answer: dict[str, Any] | Exception, expected: str
) -> None:
    done, problems = apply(context(tmp_path, NOT_AFFECTED), FakeTrivy(answer))
    assert any(expected in p for p in problems), problems
    assert done.document is not None  # written: the verdict blocks on the problem


def test_a_reused_report_that_needs_the_vex_without_a_way_to_scan_is_a_problem(
    tmp_path: Path,
) -> None:
    gctx = context(tmp_path, NOT_AFFECTED)
    assert image_vex.hides(trivy_report(), ENTRY, gctx)
    _, problems = apply(gctx, None)
    assert problems == ["vuln: its VEX hides findings, but the image was not scanned again"]


def test_a_platform_of_a_multi_platform_image_names_its_index_too(tmp_path: Path) -> None:
    arm = "sha256:" + "1" * 64
    entry = mf.Entry(
        **{
            **ENTRY.__dict__,
            "platforms": ["linux/amd64", "linux/arm64"],
            "platform_digests": {"linux/amd64": "sha256:" + "0" * 64, "linux/arm64": arm},
        }
    )
    gctx = context(tmp_path, AFFECTED)
    problems: list[str] = []
    done = image_vex.apply(entry, "linux/arm64", arm, trivy_report(), None, gctx, problems)
    assert done.document is not None and done.document["file"] == "vuln@linux-arm64.vex.json"
    doc = json.loads((gctx.reports_dir / "vuln@linux-arm64.vex.json").read_text())
    products = [p["@id"] for p in doc["statements"][0]["products"]]
    assert products == [
        f"pkg:oci/vuln@{arm}?repository_url=localhost:5000%2Fdcforge%2Fvuln",
        f"pkg:oci/vuln@{DIGEST}?arch=arm64&repository_url=localhost:5000%2Fdcforge%2Fvuln",
    ]
