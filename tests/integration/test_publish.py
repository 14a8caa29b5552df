"""Publish and verify against a real registry, cosign and the gate's artifacts."""

from __future__ import annotations

import json
import os
import stat
import subprocess
from pathlib import Path

import pytest

from dcforge.core import manifest as mf
from dcforge.infra.runner import Runner
from tests.integration import oras_oracle as registry
from tests.integration.conftest import (
    KeyPair,
    PrivateRegistry,
    TrivyDb,
    TwoReleases,
    build_and_gate,
    env_for,
    pinned_record,
    run_dcforge,
)

pytestmark = pytest.mark.integration


def tag_state(runner: Runner, m: mf.Manifest) -> dict[str, str]:
    """Every tag (signatures and attestations included) in the manifest's repositories."""
    state = {}
    for repo in sorted({e.repository for e in m.permutations}):
        for tag in registry.tags(runner, repo, plain_http=True):
            state[f"{repo}:{tag}"] = registry.resolve(runner, f"{repo}:{tag}", plain_http=True)
    return state


def test_publish_signs_attests_records_and_is_idempotent(
    project: Path,
    private_registry: PrivateRegistry,
    trivy_db: TrivyDb,
    runner: Runner,
    other_keys: KeyPair,
    tmp_path: Path,
) -> None:
    env = env_for(private_registry, trivy_db)
    m = build_and_gate(project, env)
    first = run_dcforge("publish", cwd=project, env=env)
    assert first.returncode == 0, first.stderr
    assert "making a LOCAL key pair" in first.stderr

    # By hand, outside dcforge: cosign accepts every digest's signature and attestations.
    pub = project / ".dcforge/cosign/cosign.pub"
    for e in m.permutations:
        ref = f"{e.repository}@{e.image_digest}"
        runner.run(
            [
                "cosign",
                "verify",
                "--key",
                pub,
                "--insecure-ignore-tlog",
                "--allow-http-registry",
                ref,
            ]
        )
        for ptype in ("spdxjson", "https://slsa.dev/provenance/v1"):
            runner.run(
                [
                    "cosign",
                    "verify-attestation",
                    "--type",
                    ptype,
                    "--key",
                    pub,
                    "--insecure-ignore-tlog",
                    "--allow-http-registry",
                    ref,
                ]
            )
        for tag in e.floating_tags:
            assert (
                registry.resolve(runner, f"{e.repository}:{tag}", plain_http=True) == e.image_digest
            )
    # The release record is addressable by the git SHA and holds the manifest.
    releases = f"{private_registry.host}/dc/dcforge-releases"
    runner.run(["oras", "pull", "--plain-http", "-o", tmp_path / "rec", f"{releases}:{m.git_sha}"])
    record = json.loads((tmp_path / "rec/release.json").read_text())
    assert (
        record["manifest"]["permutations"]
        == json.loads((project / "dist/manifest.json").read_text())["permutations"]
    )
    assert pinned_record(runner, releases, tmp_path) == registry.resolve(
        runner, f"{releases}:{m.git_sha}", plain_http=True
    )

    verified = run_dcforge("verify", cwd=project, env=env)
    assert verified.returncode == 0, verified.stderr
    stranger = run_dcforge("verify", cwd=project, env={**env, "COSIGN_KEY": str(other_keys.key)})
    assert stranger.returncode == 9
    assert "not signed by the configured key" in stranger.stderr

    # Second publish: nothing uploaded, no new signature, nothing even re-checked that the
    # pinned record binds (the release verified as pulled, by digest).
    blobs, tags = private_registry.blob_count(), tag_state(runner, m)
    assert any(t.endswith(".sig") for t in tags) and any(t.endswith(".att") for t in tags)
    second = run_dcforge("publish", cwd=project, env=env)
    assert second.returncode == 0, second.stderr
    assert private_registry.blob_count() == blobs
    assert tag_state(runner, m) == tags
    assert "already published:" in second.stderr
    # An attestation manifest gone: the release no longer verifies as pulled, so the publish
    # does its work again — and puts back only what is missing.
    e = m.permutations[0]
    att = registry.resolve(
        runner, f"{e.repository}:sha256-{e.image_digest[7:]}.att", plain_http=True
    )
    registry.delete(runner, f"{e.repository}@{att}", plain_http=True)
    third = run_dcforge("publish", cwd=project, env=env)
    assert third.returncode == 0, third.stderr
    assert "push already" in third.stderr
    assert "floating tags already point at this release" in third.stderr
    assert run_dcforge("verify", cwd=project, env=env).returncode == 0


@pytest.mark.reliability(
    scenario="tampered manifest / missing SBOM / swapped tarball",
    checks="publish refused, registry untouched (empty catalog)",
)
def test_publish_refuses_what_was_not_gated_as_it_is(
    project: Path, private_registry: PrivateRegistry, trivy_db: TrivyDb
) -> None:
    env = env_for(private_registry, trivy_db)
    no_gate = run_dcforge("build", "--no-prune", cwd=project, env=env)
    assert no_gate.returncode == 0
    refused = run_dcforge("publish", cwd=project, env=env)
    assert refused.returncode == 7
    assert "no readable gate verdict" in refused.stderr
    build_and_gate(project, env)
    manifest_path = project / "dist/manifest.json"
    original = manifest_path.read_text()
    edited = json.loads(original)
    edited["permutations"][0]["tags"].append(f"{private_registry.host}/dc/tiny:sneaky")
    manifest_path.write_text(json.dumps(edited))
    refused = run_dcforge("publish", cwd=project, env=env)
    assert refused.returncode == 7
    assert "manifest.json changed after it was gated" in refused.stderr
    manifest_path.write_text(original)
    # The last permutation's SBOM is gone: refused before anything is pushed or signed
    # (not after the others were signed in one cosign run).
    sboms = sorted((project / "dist/reports").glob("*.spdx.json"))
    hidden = sboms[-1].with_suffix(".hidden")
    sboms[-1].rename(hidden)
    refused = run_dcforge("publish", cwd=project, env=env)
    assert refused.returncode == 7, refused.stderr
    assert f"SBOM at {sboms[-1]}" in refused.stderr
    assert private_registry.catalog() == []
    hidden.rename(sboms[-1])
    one, two = project / "dist/tiny-one.tar", project / "dist/tiny-two.tar"
    one.write_bytes(two.read_bytes())
    refused = run_dcforge("publish", cwd=project, env=env)
    assert refused.returncode == 5
    assert "tiny-one" in refused.stderr and "changed after the build" in refused.stderr
    assert private_registry.catalog() == []


def _fault_cosign(directory: Path, pid_file: Path) -> Path:
    """A cosign that kills the registry the first time it is asked to sign or attest
    (``sign``/``attest``, or ``attach`` of what dcforge signed with a key file), then runs
    cosign."""
    directory.mkdir()
    real = "/usr/bin/cosign"
    script = directory / "cosign"
    # It answers `version` as the Debian package it wraps (publish checks cosign's pin).
    packaged = subprocess.run(
        ["dpkg-query", "-W", "-f", "${Version}", "cosign"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    script.write_text(
        "#!/bin/sh\n"
        f'if [ "$1" = version ]; then echo \'{{"gitVersion": "{packaged}"}}\'; exit 0; fi\n'
        f'if {{ [ "$1" = sign ] || [ "$1" = attest ] || [ "$1" = attach ]; }} '
        f'&& [ ! -e "{directory}/fired" ]; then\n'
        f'  touch "{directory}/fired"; kill -9 "$(cat {pid_file})"\n'
        "fi\n"
        f'exec {real} "$@"\n'
    )
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return directory


@pytest.mark.reliability(
    scenario="registry killed during signing",
    checks="tags + last-known-good still the previous release; re-run completes",
)
def test_registry_killed_mid_publish_leaves_previous_release_then_rerun_completes(
    release_and_next: TwoReleases,
    private_registry: PrivateRegistry,
    runner: Runner,
    tmp_path: Path,
) -> None:
    r = release_and_next
    project, env, a, b, releases = r.root, r.env, r.a, r.b, r.releases
    a_record = registry.resolve(runner, f"{releases}:last-known-good", plain_http=True)
    faults = _fault_cosign(tmp_path / "faults", private_registry.pid_file)
    broken = run_dcforge(
        "publish", cwd=project, env={**env, "PATH": f"{faults}{os.pathsep}{os.environ['PATH']}"}
    )
    assert broken.returncode != 0
    assert (faults / "fired").exists()
    assert "Traceback" not in broken.stderr
    private_registry.stop()
    private_registry.start()
    for e in a.permutations:
        for tag in e.floating_tags:
            assert (
                registry.resolve(runner, f"{e.repository}:{tag}", plain_http=True) == e.image_digest
            )
    assert registry.resolve(runner, f"{releases}:last-known-good", plain_http=True) == a_record

    rerun = run_dcforge("publish", cwd=project, env=env)
    assert rerun.returncode == 0, rerun.stderr
    for e in b.permutations:
        for tag in e.floating_tags:
            assert (
                registry.resolve(runner, f"{e.repository}:{tag}", plain_http=True) == e.image_digest
            )
    assert run_dcforge("verify", cwd=project, env=env).returncode == 0
