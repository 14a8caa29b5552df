"""What a release record binds was verified by cosign, even when publish verified it
earlier in the run: an image's signature and attestation manifests verified in phase 1
are not verified again only when the record binds exactly those manifests. Real registry,
real cosign, in process (the attack lands between phase 1 and the record)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from dcforge.core import manifest as mf
from dcforge.core import settings as st
from dcforge.core.errors import PublishRefused
from dcforge.infra.context import Context
from dcforge.infra.release_checks import ReleaseChecks
from dcforge.infra.runner import Runner
from tests.integration import oras_oracle as registry
from tests.integration.conftest import (
    KeyPair,
    PrivateRegistry,
    TrivyDb,
    base_env,
    build_and_gate,
    env_for,
    run_dcforge,
)

pytestmark = pytest.mark.integration


def _checks(project: Path, env: dict[str, str], cosign_log: Path) -> ReleaseChecks:
    """The publish's release checks, every cosign run counted (a wrapper on PATH)."""
    shims = cosign_log.parent / "shims"
    shims.mkdir(exist_ok=True)
    real = shutil.which("cosign", path=base_env()["PATH"])
    (shims / "cosign").write_text(f'#!/bin/sh\necho "$1" >> "{cosign_log}"\nexec "{real}" "$@"\n')
    (shims / "cosign").chmod(0o755)
    tool_env = {**base_env(), **env}
    tool_env["PATH"] = f"{shims}:{tool_env['PATH']}"
    settings = st.load(project, {k: v for k, v in env.items() if k.startswith("DCFORGE_")})
    return Context(settings, Runner(env=tool_env), tool_env).releases.checks


def test_a_record_binds_without_cosign_only_what_cosign_verified_in_the_run(
    project: Path,
    private_registry: PrivateRegistry,
    trivy_db: TrivyDb,
    runner: Runner,
    other_keys: KeyPair,
    tmp_path: Path,
) -> None:
    env = env_for(private_registry, trivy_db)
    manifest = build_and_gate(project, env)
    published = run_dcforge("publish", cwd=project, env=env)
    assert published.returncode == 0, published.stderr
    gate_doc = json.loads((project / "dist/gate.json").read_text())
    refs = [f"{e.repository}@{e.image_digest}" for e in manifest.permutations]

    # Phase 1 of a publish that reuses every image: their signatures and attestations
    # verified in batches. The record then binds them with no cosign run of its own.
    calls = tmp_path / "cosign-calls"
    checks = _checks(project, env, calls)
    assert checks.verify_signatures(refs)
    checks.prefetch_attested(refs)
    assert len(checks.signed_as) == len(refs) and len(checks.attested_as) == 2 * len(refs)
    calls.unlink()
    bindings = checks.verified_bindings(manifest, gate_doc)
    assert not calls.exists(), calls.read_text()
    assert set(bindings) == {e.name for e in manifest.permutations}

    # Between phase 1 and the record, someone replaces an image's SBOM attestation with
    # one signed by another key. What the record would bind is no longer what cosign
    # verified: cosign runs again, and the record is refused.
    victim = manifest.permutations[0]
    predicate = tmp_path / "planted.spdx.json"
    predicate.write_text(json.dumps({"spdxVersion": "SPDX-2.3", "packages": []}))
    runner.run(
        ["cosign", "attest", "--yes", "--tlog-upload=false", "--allow-http-registry",
         "--replace", "--key", other_keys.key, "--type", "spdxjson", "--predicate", predicate,
         f"{victim.repository}@{victim.image_digest}"],
        env={"COSIGN_PASSWORD": other_keys.password},
    )  # fmt: skip
    with pytest.raises(PublishRefused, match="does not verify"):
        checks.verified_bindings(manifest, gate_doc)
    assert "verify-attestation" in calls.read_text()


def test_a_manifest_that_changed_during_its_verification_is_not_remembered(
    project: Path,
    private_registry: PrivateRegistry,
    trivy_db: TrivyDb,
    tmp_path: Path,
) -> None:
    """The attestation manifest read before the batch is not the one read after (the
    batch verified something else, or a swap): nothing about it is remembered."""
    env = env_for(private_registry, trivy_db)
    manifest: mf.Manifest = build_and_gate(project, env)
    assert run_dcforge("publish", cwd=project, env=env).returncode == 0
    checks = _checks(project, env, tmp_path / "cosign-calls")
    refs = [f"{e.repository}@{e.image_digest}" for e in manifest.permutations]
    reads: dict[str, int] = {}
    real = checks.registry.digest_or_none

    def moving(reference: str) -> str | None:  # the second read of each .att tag differs
        found = real(reference)
        reads[reference] = reads.get(reference, 0) + 1
        if reference.endswith(".att") and reads[reference] == 2 and found:
            return "sha256:" + "0" * 64
        return found

    object.__setattr__(checks.registry, "digest_or_none", moving)
    checks.prefetch_attested(refs)
    assert checks.attested_as == {}


def test_a_record_signed_again_with_another_key_does_not_vouch_for_its_images(
    project: Path,
    private_registry: PrivateRegistry,
    trivy_db: TrivyDb,
    runner: Runner,
    other_keys: KeyPair,
) -> None:
    """A record's bindings were verified under the policy of its publish. Sign the record
    (and the pin) again with a new key — a key rotation, or someone holding only the new
    key — and verify under that key: the images were never signed with it, and the
    bindings must not say otherwise."""
    env = env_for(private_registry, trivy_db)
    manifest = build_and_gate(project, env)
    assert run_dcforge("publish", cwd=project, env=env).returncode == 0
    sha = manifest.git_sha
    same = run_dcforge("--verbose", "verify", "--sha", sha, cwd=project, env=env)
    assert same.returncode == 0, same.stderr
    assert "the manifests its signed record names" in same.stderr  # the bindings stand

    releases = f"{private_registry.host}/dc/dcforge-releases"
    for tag in (sha, "last-known-good"):
        at = f"{releases}@{registry.resolve(runner, f'{releases}:{tag}', plain_http=True)}"
        runner.run(
            ["cosign", "sign", "--yes", "--tlog-upload=false", "--allow-http-registry",
             "--key", str(other_keys.key), at],
            env={"COSIGN_PASSWORD": other_keys.password},
        )  # fmt: skip
    rotated = {
        **env,
        "COSIGN_KEY": str(other_keys.key),
        "COSIGN_PUBLIC_KEY": str(other_keys.pub),
        "COSIGN_PASSWORD": other_keys.password,
    }
    found = run_dcforge("--verbose", "verify", "--sha", sha, cwd=project, env=rotated)
    assert found.returncode == 9, found.stderr
    assert "verified under another key/identity or policy" in found.stderr
    assert "signature does not verify" in found.stderr
