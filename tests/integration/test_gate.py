"""The gate against real Trivy, syft and a DB served by the local registry."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from pathlib import Path

import pytest

from dcforge.core import trivydb
from dcforge.infra.runner import Runner
from tests.integration import oras_oracle as registry
from tests.integration.conftest import (
    ROOT,
    Shipped,
    TrivyDb,
    gate,
    git_commit,
    push_db,
    run_dcforge,
    verdicts,
)

pytestmark = pytest.mark.integration


def test_planted_critical_blocks_and_names_everything(
    gated_project: Path, trivy_db: TrivyDb, tmp_path: Path
) -> None:
    step_summary = tmp_path / "summary.md"
    result = gate(gated_project, trivy_db, env={"GITHUB_STEP_SUMMARY": str(step_summary)})
    assert result.returncode == 6, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    for needle in ("vuln", "CVE-2099-0001", "zlib1g", "1:1.2.13.dfsg-1", "1:1.3.0-1"):
        assert needle in last
    v = verdicts(gated_project)
    assert v["vuln"]["passed"] is False
    assert v["tiny-one"]["passed"] is True
    assert v["tiny-two"]["passed"] is True
    summary = (gated_project / "dist/reports/summary.md").read_text()
    assert "| CVE-2099-0001 | CRITICAL | zlib1g | 1:1.2.13.dfsg-1 | 1:1.3.0-1 |" in summary
    assert step_summary.read_text() == summary
    reports = gated_project / "dist/reports"
    for name in ("vuln.trivy.json", "vuln.spdx.json", "vuln.cdx.json", "gate.sarif"):
        assert (reports / name).stat().st_size > 0
    sarif = json.loads((reports / "gate.sarif").read_text())
    assert sarif["runs"][0]["results"][0]["ruleId"] == "CVE-2099-0001"


def test_waiver_passes_and_is_reported_expired_waiver_blocks(
    gated_project: Path, trivy_db: TrivyDb
) -> None:
    today = dt.date.today()
    future = (today + dt.timedelta(days=30)).isoformat()
    (gated_project / "waivers.yaml").write_text(
        f"waivers:\n  - id: CVE-2099-0001\n    reason: planted for the test, accepted\n"
        f"    created: {today}\n    expires: {future}\n    permutations: [vuln]\n"
    )
    result = gate(gated_project, trivy_db)
    assert result.returncode == 0, result.stderr
    summary = (gated_project / "dist/reports/summary.md").read_text()
    assert "## Waived findings" in summary
    assert f"| vuln | CVE-2099-0001 | zlib1g 1:1.2.13.dfsg-1 | {future} |" in summary
    assert verdicts(gated_project)["vuln"]["waived"]

    past = (today - dt.timedelta(days=1)).isoformat()
    (gated_project / "waivers.yaml").write_text(
        f"waivers:\n  - id: CVE-2099-0001\n    reason: planted for the test, accepted\n"
        f"    created: {today - dt.timedelta(days=10)}\n    expires: {past}\n    scope: all\n"
    )
    result = gate(gated_project, trivy_db)
    assert result.returncode == 6
    assert f"its waiver expired on {past}" in result.stderr


def _nothing_passed(root: Path) -> None:
    doc = json.loads((root / "dist/gate.json").read_text())
    assert doc["passed"] is False
    summary = (root / "dist/reports/summary.md").read_text()
    assert "**BLOCKED**" in summary
    assert "PASSED" not in summary


@pytest.mark.reliability(scenario="corrupt tarball", checks="gate blocks; nothing reads as passed")
def test_truncated_tarball_blocks(gated_project: Path, trivy_db: TrivyDb) -> None:
    tar = gated_project / "dist/tiny-one.tar"
    tar.write_bytes(tar.read_bytes()[: tar.stat().st_size // 2])
    result = gate(gated_project, trivy_db)
    assert result.returncode == 6
    assert "tiny-one: tarball checksum mismatch" in result.stderr
    assert verdicts(gated_project)["tiny-one"]["passed"] is False
    _nothing_passed(gated_project)


def test_unreadable_tarball_blocks_scan_and_sbom(gated_project: Path, trivy_db: TrivyDb) -> None:
    tar = gated_project / "dist/tiny-two.tar"
    tar.write_bytes(b"\0" * 4096)
    manifest_path = gated_project / "dist/manifest.json"
    doc = json.loads(manifest_path.read_text())
    for e in doc["permutations"]:
        if e["name"] == "tiny-two":
            e["tarball_sha256"] = hashlib.sha256(tar.read_bytes()).hexdigest()
    manifest_path.write_text(json.dumps(doc))
    result = gate(gated_project, trivy_db)
    assert result.returncode == 6
    reasons = str(verdicts(gated_project)["tiny-two"]["reasons"])
    assert "vulnerability scan failed" in reasons
    assert "SBOM generation failed" in reasons
    _nothing_passed(gated_project)


@pytest.mark.reliability(
    scenario="Trivy DB unreachable",
    checks="every permutation blocked with the reason, said once with advice for the cause",
)
def test_db_that_cannot_be_downloaded_blocks(gated_project: Path, namespace: str) -> None:
    result = gate(gated_project, f"{namespace}/no-such-db:2")
    assert result.returncode == 6
    assert result.stderr.count("could not be downloaded") == 1, result.stderr
    assert "no-such-db" in result.stderr
    assert "check the repository and tag name" in result.stderr
    assert "is the registry up" not in result.stderr
    assert all(v["passed"] is False for v in verdicts(gated_project).values())
    _nothing_passed(gated_project)


def test_stale_db_blocks(
    gated_project: Path, namespace: str, runner: Runner, tmp_path: Path
) -> None:
    old = dt.datetime.now(dt.UTC) - dt.timedelta(days=30)
    repo = push_db(runner, tmp_path, f"{namespace}/stale-db:2", [], updated_at=old)
    result = gate(gated_project, repo)
    assert result.returncode == 6
    assert "older than the allowed 168 h" in result.stderr


def test_verdict_follows_the_tarball(gated_project: Path, trivy_db: TrivyDb) -> None:
    today = dt.date.today()
    (gated_project / "waivers.yaml").write_text(
        "waivers:\n  - id: CVE-2099-0001\n    reason: accepted for this test\n"
        f"    created: {today}\n    expires: {today + dt.timedelta(days=60)}\n    scope: all\n"
    )
    assert gate(gated_project, trivy_db).returncode == 0
    before = verdicts(gated_project)["tiny-one"]["tarball_sha256"]
    (gated_project / "images/tiny/greeting.txt").write_text("changed\n")
    git_commit(gated_project, "change")
    assert run_dcforge("build", "--no-prune", cwd=gated_project).returncode == 0
    assert gate(gated_project, trivy_db).returncode == 0
    after = verdicts(gated_project)["tiny-one"]["tarball_sha256"]
    assert after != before


def test_self_test_passes_with_sample_db_and_fails_on_a_blind_db(
    project: Path, trivy_db: TrivyDb
) -> None:
    ok = run_dcforge("gate", "--self-test", cwd=project)
    assert ok.returncode == 0, ok.stderr
    assert "the canary was blocked (DCFORGE-CANARY-0001) [SAMPLE DB]" in ok.stderr
    assert "NOT a real vulnerability scan" in ok.stderr
    # The session's test DB knows nothing about the canary's packages: the chain is "blind".
    blind = gate(project, trivy_db, "--self-test")
    assert blind.returncode == 6
    assert "gate self-test FAILED" in blind.stderr


def test_sample_db_is_never_used_for_a_remote_registry(gated_project: Path) -> None:
    result = run_dcforge("gate", cwd=gated_project, env={"DCFORGE_REGISTRY": "ghcr.io/example/x"})
    assert result.returncode == 6
    assert "could not be downloaded from Trivy's default repositories" in result.stderr
    assert "SAMPLE" not in result.stderr


def test_trivy_db_mirror_copies_the_db(
    trivy_db: TrivyDb, namespace: str, runner: Runner, tmp_path: Path
) -> None:
    target = f"{namespace}/mirror/trivy-db"
    result = run_dcforge(
        "trivy-db-mirror", "--from", trivy_db.repository, "--to", target, cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert registry.resolve(runner, f"{target}:2", plain_http=True) == registry.resolve(
        runner, trivy_db.repository, plain_http=True
    )


@pytest.mark.slow
def test_shipped_permutation_with_a_planted_critical_blocks_alone(
    shipped: Shipped, namespace: str, runner: Runner, tmp_path: Path
) -> None:
    advisory = trivydb.Advisory("CVE-2099-3110", "python3.11", "3.11.99-1", "CRITICAL")
    repo = push_db(runner, tmp_path, f"{namespace}/shipped-db:2", [advisory])
    result = run_dcforge(
        "gate", cwd=ROOT, env={**shipped.env, "DCFORGE_TRIVY_DB_REPOSITORY": repo}, timeout=1800
    )
    assert result.returncode == 6, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert "1 of 4 permutation(s) blocked" in last
    assert "python-3.11-bookworm" in last and "CVE-2099-3110" in last and "3.11.99-1" in last
    assert "python3.11" in last
    doc = json.loads((shipped.dist / "gate.json").read_text())
    passed = {v["name"]: v["passed"] for v in doc["permutations"]}
    assert passed == {
        "base-bookworm": True,
        "debian-features-bookworm": True,
        "node-18-bookworm": True,
        "python-3.11-bookworm": False,
    }
