"""Reproducible builds: two cold builds of the same inputs give the same digests, and a
planted nondeterminism is named by layer and file (the real BuildKit, the real archives)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from dcforge.core import manifest as mf
from dcforge.infra.runner import Runner
from tests.integration import oras_oracle as registry
from tests.integration.conftest import (
    ROOT,
    PrivateRegistry,
    TrivyDb,
    base_env,
    env_for,
    git_commit,
    pinned_record,
    run_dcforge,
    tags_point_at,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_two_cold_builds_match_and_a_planted_date_is_named_by_its_file(project: Path) -> None:
    done = run_dcforge("build", "--check-reproducible", "--no-prune", cwd=project)
    assert done.returncode == 0, done.stderr
    report = json.loads((project / "dist/reports/reproduce.json").read_text())
    assert (report["identical"], report["images"], report["share_identical"]) == (2, 2, 1.0)
    assert set(report["seconds"]) == {"first build", "second build", "compare"}
    assert (project / "dist/manifest.json").is_file()  # the first build is the build
    assert not (project / "dist/reproduce").exists()

    dockerfile = project / "images/tiny/Dockerfile"
    dockerfile.write_text(dockerfile.read_text() + "RUN date +%s%N > /built\n")
    git_commit(project, "plant a date")
    differs = run_dcforge("build", "--check-reproducible", "--no-prune", cwd=project)
    assert differs.returncode == 4, differs.stderr
    assert "not reproducible: 2 of 2 image(s) differ" in differs.stderr
    assert "/built content" in differs.stderr, differs.stderr
    report = json.loads((project / "dist/reports/reproduce.json").read_text())
    assert report["share_identical"] == 0.0
    lines = report["differences"]["tiny-one"]
    assert any(line.startswith(("linux/amd64 layer", "layer")) for line in lines), lines
    assert any("/built content" in line for line in lines), lines
    # Only the planted file: the other layers are the same, and the config differs only in
    # the layer's diff_id (its uncompressed digest).
    assert not [line for line in lines if "/etc/" in line], lines
    configs = [line.split(" config ")[1].split()[0] for line in lines if " config " in line]
    assert configs == ["rootfs.diff_ids"], lines


def test_a_rebuild_identical_to_the_release_publishes_nothing_and_moves_nothing(
    project: Path, private_registry: PrivateRegistry, trivy_db: TrivyDb, runner: Runner
) -> None:
    env = env_for(private_registry, trivy_db)
    # Both builds cold: a layer from the build cache keeps the file times of the build that
    # made it (BuildKit clamps only times later than SOURCE_DATE_EPOCH), so only a cold
    # build is the same as another cold build (docs/building.md).
    cold = ["build", "--no-prune", "--refresh", "tiny-one", "--refresh", "tiny-two"]
    for step in (cold, ["gate"], ["publish"]):
        result = run_dcforge(*step, cwd=project, env=env)
        assert result.returncode == 0, result.stderr
    m = mf.load(project / "dist/manifest.json")
    releases = f"{private_registry.host}/dc/dcforge-releases"
    pinned = pinned_record(runner, releases, project)
    tags = {
        tag for e in m.permutations for tag in registry.tags(runner, e.repository, plain_http=True)
    }

    # The same commit built again from scratch: the same images, another manifest.
    for step in (cold, ["gate"]):
        result = run_dcforge(*step, cwd=project, env=env)
        assert result.returncode == 0, result.stderr
    again = mf.load(project / "dist/manifest.json")
    assert [e.image_digest for e in again.permutations] == [e.image_digest for e in m.permutations]
    assert again.to_json() != m.to_json()  # (another build: its own times and tarballs)
    blobs = private_registry.blob_count()
    published = run_dcforge("publish", cwd=project, env=env)
    assert published.returncode == 0, published.stderr
    assert "reproduced: this build of" in published.stderr
    # Nothing pushed to the image repositories, no tag moved, no new publish, same pin.
    after = {
        tag for e in m.permutations for tag in registry.tags(runner, e.repository, plain_http=True)
    }
    assert after == tags
    assert f"{m.git_sha}.2" not in registry.tags(runner, releases, plain_http=True)
    assert pinned_record(runner, releases, project) == pinned
    assert tags_point_at(runner, m)
    # …but a signed statement beside the records says the release was reproduced.
    (statement,) = [
        t for t in registry.tags(runner, releases, plain_http=True) if t.startswith("reproduced-")
    ]
    assert private_registry.blob_count() > blobs
    out = project / "statement"
    registry.fetch_artifact(runner, f"{releases}:{statement}", out, plain_http=True)
    doc = json.loads((out / "reproduced.json").read_text())
    assert (doc["git_sha"], doc["record_digest"], doc["publish"]) == (m.git_sha, pinned, 1)
    digest = registry.resolve(runner, f"{releases}:{statement}", plain_http=True)
    pub = project / ".dcforge/cosign/cosign.pub"
    runner.run(
        ["cosign", "verify", "--key", pub, "--insecure-ignore-tlog", "--allow-http-registry",
         f"{releases}@{digest}"]
    )  # fmt: skip
    verified = run_dcforge("verify", cwd=project, env=env)
    assert verified.returncode == 0, verified.stderr


def test_the_shipped_permutations_build_the_same_twice(namespace: str, tmp_path: Path) -> None:
    """Every shipped permutation's amd64 image, built twice from scratch: the same digest
    (the arm64 builds are emulated and slow: ``nox -s reproduce`` and the benchmark's
    ``--full`` run cover them)."""
    subprocess.run(
        [str(ROOT / "scripts/base-images"), "debian"], check=True, env=base_env(), timeout=900
    )
    dist = tmp_path / "dist"
    env = {"DCFORGE_DIST": str(dist), "DCFORGE_REGISTRY": f"{namespace}/reproduce"}
    args = ["build", "--check-reproducible", "--no-prune", "--platform", "linux/amd64"]
    result = run_dcforge(*args, cwd=ROOT, env=env, timeout=2400)
    report = json.loads((dist / "reports/reproduce.json").read_text())
    assert result.returncode == 0, json.dumps(report["differences"], indent=1)[:4000]
    names = {p.stem for p in (ROOT / "permutations").glob("*.yaml")}
    assert report["images"] >= len(names) and report["share_identical"] == 1.0
