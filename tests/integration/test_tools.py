"""Each tool wrapper against the real binary."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from dcforge.core.attestations import (
    PREDICATE_TYPES,
    PROVENANCE_TYPE,
    SBOM_TYPE,
    _statement,
    one_each,
)
from dcforge.core.errors import ToolError
from dcforge.infra.runner import Runner
from dcforge.infra.tools import cosign, registry, syft, trivy
from tests.integration import oras_oracle
from tests.integration.conftest import ROOT, KeyPair, TrivyDb, base_env, run_dcforge

pytestmark = pytest.mark.integration


def findings(report: dict[str, object]) -> list[tuple[str, str, str, str, str]]:
    out = []
    for result in report.get("Results") or []:  # type: ignore[attr-defined]
        for v in result.get("Vulnerabilities") or []:
            out.append(
                (
                    v["VulnerabilityID"],
                    v["PkgName"],
                    v["InstalledVersion"],
                    v.get("FixedVersion", ""),
                    v["Severity"],
                )
            )
    return out


def scan(runner: Runner, tar: Path, db: TrivyDb, tmp_path: Path) -> dict[str, object]:
    layout = trivy.unpack_oci_archive(tar, tmp_path / "layout")
    options = trivy.ScanOptions(cache_dir=db.cache_dir, db_repository=db.repository, insecure=True)
    return trivy.scan(runner, layout, tmp_path / "report.json", options)


def test_trivy_reports_the_planted_critical(
    runner: Runner, vulnerable_tar: Path, trivy_db: TrivyDb, tmp_path: Path
) -> None:
    report = scan(runner, vulnerable_tar, trivy_db, tmp_path)
    assert findings(report) == [
        ("CVE-2099-0001", "zlib1g", "1:1.2.13.dfsg-1", "1:1.3.0-1", "CRITICAL")
    ]
    meta = trivy.db_metadata(trivy_db.cache_dir)
    assert meta is not None
    assert meta["Version"] == 2


def test_trivy_reports_nothing_without_the_package(
    runner: Runner, clean_tar: Path, trivy_db: TrivyDb, tmp_path: Path
) -> None:
    report = scan(runner, clean_tar, trivy_db, tmp_path)
    assert report["Metadata"]["OS"]["Family"] == "debian"  # type: ignore[index]
    assert findings(report) == []


def test_trivy_fails_closed_when_the_db_cannot_be_downloaded(
    runner: Runner, clean_tar: Path, namespace: str, tmp_path: Path
) -> None:
    layout = trivy.unpack_oci_archive(clean_tar, tmp_path / "layout")
    options = trivy.ScanOptions(
        cache_dir=tmp_path / "empty-cache", db_repository=f"{namespace}/no-such-db:2", insecure=True
    )
    with pytest.raises(ToolError, match="trivy exited 1"):
        trivy.scan(runner, layout, tmp_path / "r.json", options)


def test_syft_sbom_lists_the_package(runner: Runner, vulnerable_tar: Path, tmp_path: Path) -> None:
    doc = syft.sbom(runner, vulnerable_tar, tmp_path / "sbom.spdx.json", tmp_path / "sbom.cdx.json")
    assert "zlib1g" in syft.package_names(doc)
    assert (tmp_path / "sbom.cdx.json").stat().st_size > 0


def test_cosign_signs_by_digest_and_rejects_another_key(
    runner: Runner, vulnerable_tar: Path, namespace: str, cosign_keys: KeyPair, other_keys: KeyPair
) -> None:
    repo = f"{namespace}/signed"
    registry.push_oci_archive(runner, vulnerable_tar, f"{repo}:v1", plain_http=True)
    digest = oras_oracle.resolve(runner, f"{repo}:v1", plain_http=True)
    ref = f"{repo}@{digest}"
    signer = cosign.Signer(key=str(cosign_keys.key), public_key=str(cosign_keys.pub))
    cosign.sign(runner, signer, ref, plain_http=True, env={"COSIGN_PASSWORD": cosign_keys.password})
    assert '"critical"' in cosign.verify(runner, signer, ref, plain_http=True)
    stranger = cosign.Signer(key=str(other_keys.key), public_key=str(other_keys.pub))
    with pytest.raises(ToolError, match="cosign exited"):
        cosign.verify(runner, stranger, ref, plain_http=True)
    with pytest.raises(ToolError, match="sign by digest"):
        cosign.sign(runner, signer, f"{repo}:v1", plain_http=True)


def test_cosign_signs_several_images_in_one_run_and_verifies_them_together(
    runner: Runner,
    vulnerable_tar: Path,
    clean_tar: Path,
    namespace: str,
    cosign_keys: KeyPair,
    other_keys: KeyPair,
    tmp_path: Path,
) -> None:
    """Publish signs a release's images (with a key file: here, each attached by cosign)
    and verifies their signatures in one cosign run: every image gets its own signature,
    and one image that does not verify (unsigned, wherever it stands in the list, or under
    another key) fails the whole check."""
    reg = registry.Registry(runner, frozenset({"localhost", "127.0.0.1"}))
    refs = []
    for name, tar in (("one", vulnerable_tar), ("two", clean_tar), ("unsigned", clean_tar)):
        registry.push_oci_archive(runner, tar, f"{namespace}/{name}:v1", plain_http=True)
        digest = oras_oracle.resolve(runner, f"{namespace}/{name}:v1", plain_http=True)
        refs.append(f"{namespace}/{name}@{digest}")
    signer = cosign.Signer(key=str(cosign_keys.key), public_key=str(cosign_keys.pub))
    ours = cosign.Cosign(runner, signer, reg, {"COSIGN_PASSWORD": cosign_keys.password})
    ours.sign_all(refs[:2])
    for ref in refs[:2]:
        assert '"critical"' in cosign.verify(runner, signer, ref, plain_http=True)
    assert ours.verify_all(refs[:2])
    assert not ours.verified(refs[2])
    assert not ours.verify_all(refs)
    assert not ours.verify_all([refs[2], *refs[:2]])
    stranger = cosign.Signer(key=str(other_keys.key), public_key=str(other_keys.pub))
    assert not cosign.Cosign(runner, stranger, reg, {}).verify_all(refs[:2])
    with pytest.raises(ToolError, match="sign by digest"):
        ours.sign_all([refs[0], f"{namespace}/one:v1"])
    # Attestations of several images verified in one run: one line per image, in order.
    predicate = tmp_path / "provenance.json"
    predicate.write_text('{"buildDefinition": {}}')
    for ref in refs[:2]:
        ours.attest(ref, predicate, PROVENANCE_TYPE)
    digests = [ref.rsplit("@", 1)[1] for ref in refs[:2]]
    out = ours.verify_attestations(refs[:2], PROVENANCE_TYPE)
    assert one_each(out, digests, PROVENANCE_TYPE)
    assert not one_each(out, digests[::-1], PROVENANCE_TYPE)
    backwards = ours.verify_attestations(refs[1::-1], PROVENANCE_TYPE)
    assert one_each(backwards, digests[::-1], PROVENANCE_TYPE)
    with pytest.raises(ToolError, match="cosign exited"):
        ours.verify_attestations(refs, PROVENANCE_TYPE)  # the third has none


def _statements(out: str) -> list[dict[str, object]]:
    return [_statement(line) for line in out.splitlines() if line.strip()]


def test_attestations_signed_in_process_are_cosigns_and_verify_with_cosign(
    runner: Runner,
    clean_tar: Path,
    vulnerable_tar: Path,
    namespace: str,
    cosign_keys: KeyPair,
    other_keys: KeyPair,
    tmp_path: Path,
) -> None:
    """With a key file, publish signs the statements itself (the key decrypted once) and
    attaches them with ``cosign attach attestation``: the real cosign verifies them under
    the public key (not another), and they are the statements ``cosign attest`` makes."""
    reg = registry.Registry(runner, frozenset({"localhost", "127.0.0.1"}))
    refs = []
    for name, tar in (("inproc", clean_tar), ("bycosign", vulnerable_tar)):
        registry.push_oci_archive(runner, tar, f"{namespace}/{name}:v1", plain_http=True)
        digest = oras_oracle.resolve(runner, f"{namespace}/{name}:v1", plain_http=True)
        refs.append(f"{namespace}/{name}@{digest}")
    sbom, prov = tmp_path / "sbom.spdx.json", tmp_path / "provenance.json"
    sbom.write_text('{"spdxVersion": "SPDX-2.3", "name": "x", "packages": [{"n": 1e3}]}')
    prov.write_text('{"buildDefinition": {"buildType": "t"}, "runDetails": {}}')
    signer = cosign.Signer(key=str(cosign_keys.key), public_key=str(cosign_keys.pub))
    ours = cosign.Cosign(runner, signer, reg, {"COSIGN_PASSWORD": cosign_keys.password})
    assert ours.signs_in_process()
    ours.attest_all(refs[0], [(sbom, SBOM_TYPE), (prov, PROVENANCE_TYPE)])
    ours.sign_all(refs[:1])
    for predicate, ptype in ((sbom, SBOM_TYPE), (prov, PROVENANCE_TYPE)):
        ours.attest(refs[1], predicate, ptype)  # cosign attest, for comparison
    cosign.sign(runner, signer, refs[1], plain_http=True, env=ours.env)  # and cosign sign
    mine, theirs = (json.loads(ours.verify(ref)) for ref in refs)
    assert len(mine) == len(theirs) == 1
    for payload, ref in ((mine[0], refs[0]), (theirs[0], refs[1])):
        name, digest = ref.split("@")
        assert payload["critical"].pop("identity") == {"docker-reference": name}
        assert payload["critical"]["image"].pop("docker-manifest-digest") == digest
    assert mine == theirs
    stranger = cosign.Signer(key=str(other_keys.key), public_key=str(other_keys.pub))
    for ptype, uri in PREDICATE_TYPES.items():
        mine, theirs = (_statements(ours.verify_attestation(ref, ptype)) for ref in refs)
        assert one_each(ours.verify_attestation(refs[0], ptype), [refs[0].split("@")[1]], uri)
        assert len(mine) == len(theirs) == 1
        for statement, ref in ((mine[0], refs[0]), (theirs[0], refs[1])):
            name, digest = ref.split("@")
            assert statement["subject"] == [{"name": name, "digest": {"sha256": digest[7:]}}]
            del statement["subject"]
        assert mine == theirs
        with pytest.raises(ToolError, match="cosign exited"):
            cosign.verify_attestation(runner, stranger, refs[0], ptype, plain_http=True)
    with pytest.raises(ToolError, match="attest by digest"):
        ours.attest_all(f"{namespace}/inproc:v1", [(sbom, SBOM_TYPE)])


def test_a_key_not_signed_in_process_is_left_to_cosign_attest(
    runner: Runner, clean_tar: Path, namespace: str, cosign_keys: KeyPair, tmp_path: Path
) -> None:
    """An Ed25519 key (``cosign import-key-pair``) is signed by ``cosign attest`` and
    ``cosign sign``; a wrong password is named before anything is attested."""
    reg = registry.Registry(runner, frozenset({"localhost", "127.0.0.1"}))
    registry.push_oci_archive(runner, clean_tar, f"{namespace}/ed:v1", plain_http=True)
    ref = f"{namespace}/ed@{oras_oracle.resolve(runner, f'{namespace}/ed:v1', plain_http=True)}"
    keys = ROOT / "tests/unit/keys"
    signer = cosign.Signer(key=str(keys / "ed25519.key"), public_key=str(keys / "ed25519.pub"))
    ed = cosign.Cosign(runner, signer, reg, {"COSIGN_PASSWORD": "unit-test-only"})
    prov = tmp_path / "provenance.json"
    prov.write_text('{"buildDefinition": {}}')
    ed.attest_all(ref, [(prov, PROVENANCE_TYPE)])
    out = ed.verify_attestation(ref, PROVENANCE_TYPE)
    assert one_each(out, [ref.split("@")[1]], PROVENANCE_TYPE)
    assert not ed.verified(ref)
    ed.sign_all([ref])
    assert ed.verified(ref)
    wrong = cosign.Signer(key=str(cosign_keys.key), public_key=str(cosign_keys.pub))
    with pytest.raises(ToolError, match="COSIGN_PASSWORD does not decrypt"):
        cosign.Cosign(runner, wrong, reg, {"COSIGN_PASSWORD": "nope"}).check_key()


def test_a_failing_tool_is_one_clear_line(tmp_path: Path) -> None:
    broken = tmp_path / "broken.tar"
    broken.write_bytes(b"this is not a tarball")
    result = run_dcforge("trivy", str(broken), cwd=tmp_path)
    assert result.returncode == 3
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "broken.tar" in lines[0]
    assert "Traceback" not in result.stderr
    missing = run_dcforge(
        "cosign",
        "verify",
        "localhost:5000/nope/nope@sha256:" + "0" * 64,
        cwd=tmp_path,
        env={"COSIGN_KEY": str(tmp_path / "none.key")},
    )
    assert missing.returncode == 3
    assert len(missing.stderr.strip().splitlines()) == 1, missing.stderr
    assert missing.stderr.startswith("error: tool failed: cosign exited")


def test_invoke_trivy_and_syft_tasks(
    vulnerable_tar: Path, trivy_db: TrivyDb, tmp_path: Path
) -> None:
    """The thin invoke wrappers, as a user calls them."""
    env = {**base_env(), "DCFORGE_TRIVY_DB_REPOSITORY": trivy_db.repository}
    for task, expected in (("trivy", "CRITICAL 1"), ("syft", "packages (SBOM:")):
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "invoke",
                "-r",
                str(ROOT),
                task,
                "--tarball",
                str(vulnerable_tar),
            ],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        assert expected in result.stderr


def test_a_tool_check_asks_a_binary_once_until_the_file_changes(tmp_path: Path) -> None:
    """The real Trivy behind a counting wrapper: the version is asked once, remembered for
    that very file, and asked again once the file changes."""
    from dcforge.infra import toolchain
    from tests.integration import faults

    wrapped = faults.wrapper(tmp_path / "w", "trivy", "--version", 99, "true")
    runner = Runner(env={**base_env(), "PATH": f"{wrapped}:{base_env()['PATH']}"})
    seen = tmp_path / "state" / toolchain.SEEN
    asked = wrapped / "trivy.count"
    first = toolchain.check(runner, "trivy", seen=seen)
    assert asked.read_text().strip() == "1"
    assert toolchain.check(runner, "trivy", seen=seen) == first
    assert asked.read_text().strip() == "1"
    (wrapped / "trivy").write_text((wrapped / "trivy").read_text() + "\n")
    changed = toolchain.check(runner, "trivy", seen=seen)
    assert asked.read_text().strip() == "2"
    assert changed.version == first.version and changed.sha256 != first.sha256
