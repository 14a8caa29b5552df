"""Rollback, pin and releases against a real registry with two published releases."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from dcforge.infra.runner import Runner
from tests.integration import oras_oracle as registry
from tests.integration.conftest import (
    ROOT,
    KeyPair,
    PrivateRegistry,
    TwoReleases,
    base_env,
    run_dcforge,
    tags_point_at,
)

pytestmark = pytest.mark.integration


def test_rollback_to_a_moves_only_tags(
    two_releases: TwoReleases, private_registry: PrivateRegistry, runner: Runner
) -> None:
    r = two_releases
    assert tags_point_at(runner, r.b)
    blobs = private_registry.blobs()
    dry = run_dcforge("rollback", "--dry-run", "--sha", r.a.git_sha[:8], cwd=r.root, env=r.env)
    assert dry.returncode == 0, dry.stderr
    assert "would move" in dry.stderr
    assert tags_point_at(runner, r.b)

    done = run_dcforge("rollback", "--sha", r.a.git_sha[:8], cwd=r.root, env=r.env)
    assert done.returncode == 0, done.stderr
    assert tags_point_at(runner, r.a)
    new = {d: size for d, size in private_registry.blobs().items() if d not in blobs}
    # Only the audit record (its JSON and its manifest) was written; no image data moved.
    assert len(new) == 2
    assert sum(new.values()) < 8192
    verified = run_dcforge("verify", "--sha", r.a.git_sha, cwd=r.root, env=r.env)
    assert verified.returncode == 0, verified.stderr
    audit_tags = [
        t for t in registry.tags(runner, r.releases, plain_http=True) if t.startswith("rollback-")
    ]
    assert len(audit_tags) == 1
    again = run_dcforge("rollback", "--sha", r.a.git_sha, cwd=r.root, env=r.env)
    assert again.returncode == 0
    assert "nothing to do" in again.stderr

    listing = run_dcforge("releases", "--json", cwd=r.root, env=r.env)
    assert listing.returncode == 0, listing.stderr
    rows = json.loads(listing.stdout)
    assert [row["git_sha"] for row in rows] == [r.b.git_sha, r.a.git_sha]
    assert [row["current"] for row in rows] == [False, True]
    assert [row["pinned"] for row in rows] == [True, False]

    pinned = run_dcforge("pin", "--sha", r.a.git_sha[:10], cwd=r.root, env=r.env)
    assert pinned.returncode == 0, pinned.stderr
    back = run_dcforge("rollback", "--sha", r.b.git_sha, cwd=r.root, env=r.env)
    assert back.returncode == 0
    assert tags_point_at(runner, r.b)
    # The same through invoke, as users and the rollback workflow call it.
    lkg = subprocess.run(
        [sys.executable, "-m", "invoke", "-r", str(ROOT), "rollback", "--last-known-good"],
        cwd=r.root,
        env={**base_env(), **r.env},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert lkg.returncode == 0, lkg.stderr
    assert tags_point_at(runner, r.a)


def _refused(r: TwoReleases, runner: Runner, target: str, expected: str) -> None:
    result = run_dcforge("rollback", "--sha", target, cwd=r.root, env=r.env)
    assert result.returncode == 10, result.stderr
    assert expected in result.stderr
    assert len(result.stderr.strip().splitlines()[-1]) > 0
    assert tags_point_at(runner, r.b)  # nothing moved


@pytest.mark.reliability(
    scenario="release record signed by another key; unknown/ambiguous SHA; deleted image",
    checks="rollback refused with the reason; no tag moved",
)
def test_refusals_move_nothing(
    two_releases: TwoReleases,
    runner: Runner,
    other_keys: KeyPair,
    private_registry: PrivateRegistry,
    tmp_path: Path,
) -> None:
    r = two_releases
    _refused(r, runner, "0123abcd", "no published release for git SHA 0123abcd")
    # Not a SHA at all: a usage error from the parser (exit 2), before any registry.
    malformed = run_dcforge("rollback", "--sha", "zz", cwd=r.root, env=r.env)
    assert malformed.returncode == 2, malformed.stderr
    assert "'zz' names no release" in malformed.stderr
    assert tags_point_at(runner, r.b)
    # A twin tag sharing A's first 12 digits makes a 12-digit prefix ambiguous.
    twin = r.a.git_sha[:12] + ("0" if r.a.git_sha[12] != "0" else "1") + r.a.git_sha[13:]
    registry.tag(runner, f"{r.releases}:{r.a.git_sha}", [twin], plain_http=True)
    _refused(r, runner, r.a.git_sha[:12], "is ambiguous")

    # A well-formed record (A's, re-labelled) signed by another key.
    forged_sha = "f" * 40
    registry.fetch_artifact(runner, f"{r.releases}:{r.a.git_sha}", tmp_path / "a", plain_http=True)
    record = json.loads((tmp_path / "a/release.json").read_text())
    record["gate"]["trivy_version"] = "forged"
    (tmp_path / "release.json").write_text(json.dumps(record))
    registry.push_artifact(
        runner,
        f"{r.releases}:{forged_sha}",
        tmp_path,
        "release.json",
        artifact_type="application/vnd.dcforge.release.v1+json",
        annotations={},
        plain_http=True,
    )
    digest = registry.resolve(runner, f"{r.releases}:{forged_sha}", plain_http=True)
    runner.run(
        [
            "cosign",
            "sign",
            "--yes",
            "--key",
            other_keys.key,
            "--tlog-upload=false",
            "--allow-http-registry",
            f"{r.releases}@{digest}",
        ],
        env={"COSIGN_PASSWORD": other_keys.password},
    )
    _refused(r, runner, forged_sha, "is not signed by the configured key")

    # A release one of whose images was deleted from the registry.
    gone = r.a.permutations[0]
    name = gone.repository.split("/", 1)[1]
    req = urllib.request.Request(
        f"http://127.0.0.1:{private_registry.port}/v2/{name}/manifests/{gone.image_digest}",
        method="DELETE",
    )
    urllib.request.urlopen(req, timeout=10).close()
    _refused(r, runner, r.a.git_sha, "no longer exists in the registry")


def test_a_rollback_trusts_only_the_manifests_its_signed_record_binds(
    two_releases: TwoReleases, runner: Runner
) -> None:
    """The record names each signature and attestation manifest publish wrote (and
    verified): a rollback finding exactly those runs no cosign for them; one pointing
    elsewhere is checked by cosign again — here another image's attestations: refused."""
    r = two_releases
    done = run_dcforge("rollback", "--sha", r.a.git_sha, cwd=r.root, env=r.env)
    assert done.returncode == 0, done.stderr
    assert done.stderr.count("the manifests its signed record names") == len(r.a.permutations)
    back = run_dcforge("rollback", "--sha", r.b.git_sha, cwd=r.root, env=r.env)
    assert back.returncode == 0, back.stderr
    a, b = r.a.permutations[0], r.b.entry(r.a.permutations[0].name)
    b_att = registry.resolve(
        runner, f"{b.repository}:sha256-{b.image_digest[7:]}.att", plain_http=True
    )
    registry.tag(
        runner, f"{a.repository}@{b_att}", [f"sha256-{a.image_digest[7:]}.att"], plain_http=True
    )
    refused = run_dcforge("rollback", "--sha", r.a.git_sha, cwd=r.root, env=r.env)
    assert refused.returncode != 0
    assert f"image {a.name} does not verify" in refused.stderr
    assert "attestation" in refused.stderr
    assert tags_point_at(runner, r.b)


def test_verify_names_an_image_whose_signature_tag_was_swapped(
    two_releases: TwoReleases, runner: Runner
) -> None:
    """The signatures of the images a record no longer binds are verified by one cosign
    run; when that fails, each image is checked on its own and the one whose ``.sig`` tag
    now points at another image's signature (valid, by the right key, for another digest)
    is named."""
    r = two_releases
    if not tags_point_at(runner, r.b):
        moved = run_dcforge("rollback", "--sha", r.b.git_sha, cwd=r.root, env=r.env)
        assert moved.returncode == 0, moved.stderr
    b = r.b.permutations[-1]
    a = r.a.entry(b.name)
    assert a.image_digest != b.image_digest
    sig = f"sha256-{b.image_digest[7:]}.sig"
    own = registry.resolve(runner, f"{b.repository}:{sig}", plain_http=True)
    a_sig = registry.resolve(
        runner, f"{a.repository}:sha256-{a.image_digest[7:]}.sig", plain_http=True
    )
    registry.tag(runner, f"{b.repository}@{a_sig}", [sig], plain_http=True)
    try:
        failed = run_dcforge("verify", "--sha", r.b.git_sha, cwd=r.root, env=r.env)
        assert failed.returncode != 0
        assert f"{b.repository}@{b.image_digest}: signature does not verify" in failed.stderr
    finally:
        registry.tag(runner, f"{b.repository}@{own}", [sig], plain_http=True)
    verified = run_dcforge("verify", "--sha", r.b.git_sha, cwd=r.root, env=r.env)
    assert verified.returncode == 0, verified.stderr
