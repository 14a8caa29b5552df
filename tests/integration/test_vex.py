"""Waivers as OpenVEX through the real Trivy: the gate's own report, and a consumer's
``trivy image --vex`` on the image as published, hide exactly the not_affected waived
findings and nothing else."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from dcforge.core import manifest as mf
from dcforge.core import trivydb
from dcforge.core.attestations import VEX_TYPE
from dcforge.infra.runner import Runner
from dcforge.infra.tools import registry, trivy
from tests.integration import attestation_edits
from tests.integration.conftest import gate, git_commit, push_db, run_dcforge

pytestmark = pytest.mark.integration

# The vuln image's zlib1g 1:1.2.13.dfsg-1 (source zlib) is affected by all three.
NOT_AFFECTED = "CVE-2099-0101"  # waived not_affected: hidden
AFFECTED = "CVE-2099-0102"  # waived affected (accepted for now): shown
UNWAIVED = "CVE-2099-0103"  # LOW, not blocking, no waiver: shown
ADVISORIES = [
    trivydb.Advisory(NOT_AFFECTED, "zlib", "1:1.3.0-1", "CRITICAL"),
    trivydb.Advisory(AFFECTED, "zlib", "", "HIGH"),
    trivydb.Advisory(UNWAIVED, "zlib", "1:1.3.0-1", "LOW"),
]


@pytest.fixture(scope="module")
def vex_db(namespace: str, runner: Runner, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A DB with three advisories for the vuln image's zlib1g, served by the local registry."""
    return push_db(runner, tmp_path_factory.mktemp("vex-db"), f"{namespace}/vex-db:2", ADVISORIES)


def waivers_yaml(today: dt.date) -> str:
    dates = f"    created: {today}\n    expires: {today + dt.timedelta(days=30)}\n"
    return (
        f"waivers:\n  - id: {NOT_AFFECTED}\n    reason: zlib is present but nothing loads it\n"
        f"{dates}    permutations: [vuln]\n    status: not_affected\n"
        "    justification: vulnerable_code_not_in_execute_path\n"
        f"  - id: {AFFECTED}\n    reason: no fix in Debian yet, accepted for a month\n"
        f"{dates}    packages: [zlib1g]\n"
    )


def verdict(root: Path, name: str) -> dict[str, Any]:
    doc = json.loads((root / "dist/gate.json").read_text())
    found: dict[str, Any] = next(v for v in doc["permutations"] if v["name"] == name)
    return found


def shown_and_hidden(report: dict[str, Any]) -> tuple[set[str], set[str]]:
    results = report.get("Results") or []
    shown = {v["VulnerabilityID"] for r in results for v in r.get("Vulnerabilities") or []}
    hidden = {
        m["Finding"]["VulnerabilityID"]
        for r in results
        for m in r.get("ExperimentalModifiedFindings") or []
    }
    return shown, hidden


def consumer_scan(
    runner: Runner, work: Path, db: str, target: list[str | Path], vex: Path | None = None
) -> set[str]:
    """What ``trivy image [--vex DOC] TARGET`` shows, as someone who pulls the image runs
    it: plain Trivy, no dcforge options, the DB from the local registry."""
    out = work / f"consumer-{hashlib.sha256(str([target, vex]).encode()).hexdigest()[:12]}.json"
    argv: list[str | Path] = ["trivy", "image", "--quiet", "--format", "json", "--output", out]
    argv += ["--cache-dir", work / "consumer-cache", "--db-repository", db, "--insecure"]
    argv += ["--vex", vex] if vex is not None else []
    runner.run([*argv, *target], cwd=work, timeout=600)  # cwd: no trivy.yaml of the repo's
    shown, _ = shown_and_hidden(json.loads(out.read_text()))
    return shown


def test_waivers_reach_trivy_as_openvex_and_hide_exactly_the_not_affected(
    gated_project: Path, vex_db: str, runner: Runner, namespace: str, tmp_path: Path
) -> None:
    (gated_project / "waivers.yaml").write_text(waivers_yaml(dt.date.today()))
    result = gate(gated_project, vex_db)
    assert result.returncode == 0, result.stderr
    reports = gated_project / "dist/reports"

    # The gate's own report agrees with the verdict: the not_affected finding is hidden
    # (listed as suppressed), the verdict still names both waived findings.
    own = json.loads((reports / "vuln.trivy.json").read_text())
    assert shown_and_hidden(own) == ({AFFECTED, UNWAIVED}, {NOT_AFFECTED})
    vuln = verdict(gated_project, "vuln")
    assert {w["id"]: w["waiver"]["status"] for w in vuln["waived"]} == {
        NOT_AFFECTED: "not_affected",
        AFFECTED: "affected",
    }

    # gate.json records the image's document by its sha256, for publish to attest.
    (platform,) = vuln["platforms"]
    doc_path = reports / platform["vex"]["file"]
    assert platform["vex"]["sha256"] == hashlib.sha256(doc_path.read_bytes()).hexdigest()
    assert verdict(gated_project, "tiny-one")["vex"] is None  # nothing waived, no document
    doc = json.loads(doc_path.read_text())
    assert {s["vulnerability"]["name"]: s["status"] for s in doc["statements"]} == {
        NOT_AFFECTED: "not_affected",
        AFFECTED: "affected",
    }

    # A consumer's Trivy on the image as published (pushed byte for byte to the repository
    # the manifest names): the document hides the not_affected finding and nothing else.
    entry = mf.load(gated_project / "dist/manifest.json").entry("vuln")
    tar = gated_project / "dist" / entry.tarball
    registry.push_oci_archive(runner, tar, f"{entry.repository}:vex-consumer", plain_http=True)
    everything = {NOT_AFFECTED, AFFECTED, UNWAIVED}
    for ref in (f"{entry.repository}:vex-consumer", f"{entry.repository}@{entry.image_digest}"):
        by_ref: list[str | Path] = ["--image-src", "remote", ref]
        assert consumer_scan(runner, tmp_path, vex_db, by_ref) == everything
        assert consumer_scan(runner, tmp_path, vex_db, by_ref, doc_path) == everything - {
            NOT_AFFECTED
        }

    # ...and only about that image: the same image in another repository is another product.
    elsewhere = f"{namespace}/elsewhere/vuln:vex-consumer"
    registry.push_oci_archive(runner, tar, elsewhere, plain_http=True)
    other: list[str | Path] = ["--image-src", "remote", elsewhere]
    assert consumer_scan(runner, tmp_path, vex_db, other, doc_path) == everything

    # Trivy names no image in an archive read with --input, so there the image's document
    # matches nothing (dcforge.core.vex; the gate's own scan keys it by package instead).
    # Should this start hiding, Trivy learned archives' purls: the by-package document of
    # the gate's scan could then go.
    layout = trivy.unpack_oci_archive(tar, tmp_path / "layout")
    archive: list[str | Path] = ["--input", layout]
    assert consumer_scan(runner, tmp_path, vex_db, archive, doc_path) == everything


def attested_vex(runner: Runner, pub: Path, ref: str, out: Path) -> Path:
    """What a consumer downloads: the OpenVEX predicate of the image's verified attestation
    (plain cosign, the publisher's public key)."""
    argv: list[str | Path] = ["cosign", "verify-attestation", "--type", VEX_TYPE, "--key", pub]
    result = runner.run([*argv, "--insecure-ignore-tlog", "--allow-http-registry", ref])
    (line,) = [ln for ln in result.stdout.splitlines() if ln.strip()]
    statement = json.loads(base64.b64decode(json.loads(line)["payload"]))
    assert statement["predicateType"] == VEX_TYPE
    out.write_text(json.dumps(statement["predicate"]))
    return out


def test_publish_attests_the_vex_a_consumer_applies_and_verify_requires_it(
    gated_project: Path, vex_db: str, runner: Runner, tmp_path: Path
) -> None:
    (gated_project / "waivers.yaml").write_text(waivers_yaml(dt.date.today()))
    git_commit(gated_project, "waivers")
    env = {"DCFORGE_TRIVY_DB_REPOSITORY": vex_db}
    for step in (["build", "--no-prune"], ["gate"], ["publish"]):
        result = run_dcforge(*step, cwd=gated_project, env=env)
        assert result.returncode == 0, result.stderr
    first = mf.load(gated_project / "dist/manifest.json")
    entry, first_sha = first.entry("vuln"), first.git_sha
    ref = f"{entry.repository}@{entry.image_digest}"

    # The attested document is the gate's, byte for byte in content, and the record says so.
    pub = gated_project / ".dcforge/cosign/cosign.pub"
    downloaded = attested_vex(runner, pub, ref, tmp_path / "downloaded.vex.json")
    gated = gated_project / "dist/reports/vuln.vex.json"
    assert json.loads(downloaded.read_text()) == json.loads(gated.read_text())

    # A consumer's Trivy with the downloaded document hides the not_affected finding only.
    by_tag: list[str | Path] = ["--image-src", "remote", f"{entry.repository}:latest"]
    everything = {NOT_AFFECTED, AFFECTED, UNWAIVED}
    assert consumer_scan(runner, tmp_path, vex_db, by_tag, downloaded) == everything - {
        NOT_AFFECTED
    }

    # verify-image hands a consumer the document the release names.
    consumer = tmp_path / "consumer"
    consumer.mkdir()
    first_doc = consumer / "first.vex.json"
    args = ["verify-image", f"{entry.repository}:latest", "--key", str(pub)]
    checked = run_dcforge(*args, "--vex-out", str(first_doc), cwd=consumer)
    assert checked.returncode == 0, checked.stderr
    assert first_doc.read_bytes() == gated.read_bytes()

    # A waiver's wording changes, the image is reused by the next release: its new VEX is
    # attested beside the old one, and each release names (and verifies) its own.
    (gated_project / "waivers.yaml").write_text(
        waivers_yaml(dt.date.today()).replace("nothing loads it", "no code path loads it")
    )
    git_commit(gated_project, "reword a waiver")
    for step in (["build", "--no-prune", "--since", "last-known-good"], ["gate"], ["publish"]):
        result = run_dcforge(*step, cwd=gated_project, env=env)
        assert result.returncode == 0, result.stderr
    reused = mf.load(gated_project / "dist/manifest.json").entry("vuln")
    assert reused.reused and reused.image_digest == entry.image_digest
    second_doc = consumer / "second.vex.json"
    checked = run_dcforge(*args, "--vex-out", str(second_doc), cwd=consumer)
    assert checked.returncode == 0, checked.stderr
    assert second_doc.read_bytes() == gated.read_bytes() != first_doc.read_bytes()
    assert "no code path loads it" in second_doc.read_text()
    verified = run_dcforge("verify", cwd=gated_project, env=env)
    assert verified.returncode == 0, verified.stderr
    previous = run_dcforge("verify", "--sha", first_sha, cwd=gated_project, env=env)
    assert previous.returncode == 0, previous.stderr

    # Without its VEX the release no longer verifies: the record says the image has one.
    attestation_edits.drop_all(entry.repository, entry.image_digest, VEX_TYPE)
    stripped = run_dcforge("verify", cwd=gated_project, env=env)
    assert stripped.returncode == 9, stripped.stderr
    assert f"{VEX_TYPE} attestation" in stripped.stderr, stripped.stderr
