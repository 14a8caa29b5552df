"""Incremental builds: --since reuses unchanged permutations by digest; drift rebuilds."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from dcforge.core import manifest as mf
from dcforge.infra.runner import Runner
from tests.integration import oras_oracle as registry
from tests.integration.conftest import PrivateRegistry, TrivyDb, env_for, git_commit, run_dcforge
from tests.projects import write_debian_identity

pytestmark = pytest.mark.integration

OTHER = (
    "ARG BASE_IMAGE\nFROM ${{BASE_IMAGE}}\nCOPY os-release /etc/os-release\n"
    "COPY status /var/lib/dpkg/status\nRUN echo 12.5 > /etc/debian_version && echo {} > /o\n"
)


def step(root: Path, env: dict[str, str], *args: str) -> str:
    result = run_dcforge(*args, cwd=root, env=env)
    assert result.returncode == 0, result.stderr
    return result.stderr


def test_since_reuses_unchanged_rebuilds_changed_and_follows_base_drift(
    project: Path,
    private_registry: PrivateRegistry,
    trivy_db: TrivyDb,
    runner: Runner,
    namespace: str,
    tmp_path: Path,
) -> None:
    bases = f"{namespace}/bases-{uuid.uuid4().hex[:6]}"
    runner.run(
        [
            "oras",
            "cp",
            "--from-plain-http",
            "--to-plain-http",
            "localhost:5000/library/busybox:latest",
            f"{bases}/busybox:latest",
        ]
    )
    env = {**env_for(private_registry, trivy_db), "DCFORGE_BASE_REGISTRY": bases}
    other = project / "images/other"
    other.mkdir()
    write_debian_identity(other)
    (other / "Dockerfile").write_text(OTHER.format("one"))
    (project / "permutations/other.yaml").write_text(
        "family: other\nname: other\ncontext: ../images/other\n"
        'base: "{base_registry}/busybox:latest"\ntags: [latest]\n'
    )
    git_commit(project, "A")
    step(
        project, env, "build", "--no-prune", "--since", "last-known-good"
    )  # nothing yet: builds all
    step(project, env, "gate")
    step(project, env, "publish")
    a = mf.load(project / "dist/manifest.json")

    (other / "Dockerfile").write_text(OTHER.format("two"))
    git_commit(project, "B: only 'other' changes")
    log = step(project, env, "build", "--no-prune", "--since", "last-known-good")
    b = mf.load(project / "dist/manifest.json")
    assert "2 reused, 1 to build" in log
    for name in ("tiny-one", "tiny-two"):
        entry = b.entry(name)
        assert entry.reused_from is not None
        assert entry.reused_from["git_sha"] == a.git_sha
        assert entry.image_digest == a.entry(name).image_digest
        assert entry.tarball == ""
    assert b.entry("other").reused_from is None
    assert b.entry("other").image_digest != a.entry("other").image_digest

    gate_log = step(project, env, "gate")
    # Scanned with this DB at A's gate: the outputs are reused (scan_cache), not re-made.
    assert "tiny-one scan reused" in gate_log
    blobs = private_registry.blobs()
    publish_log = step(project, env, "publish")
    assert "tiny-one push reused" in publish_log
    new = {d: s for d, s in private_registry.blobs().items() if d not in blobs}
    # Only 'other' (its layer, config, manifest), signatures, attestations, the record.
    assert sum(new.values()) < 3_000_000
    for e in b.permutations:
        assert (
            registry.resolve(runner, f"{e.repository}:{e.immutable_tag}", plain_http=True)
            == e.image_digest
        )
    step(project, env, "verify")

    # The base moves (same tag, new digest): every permutation is rebuilt.
    moved = tmp_path / "moved"
    moved.mkdir()
    (moved / "Dockerfile").write_text(
        "FROM localhost:5000/library/busybox:latest\nRUN echo drift > /drift\n"
    )
    runner.run(
        [
            "docker",
            "buildx",
            "build",
            "-q",
            "--provenance=false",
            "--output",
            f"type=image,name={bases}/busybox:latest,push=true",
            moved,
        ]
    )
    git_commit(project, "C: no file changes, base drifted")
    log = step(project, env, "build", "--no-prune", "--since", "last-known-good")
    c = mf.load(project / "dist/manifest.json")
    assert "0 reused, 3 to build" in log
    assert all(e.reused_from is None for e in c.permutations)
    assert {e.base_image.digest for e in c.permutations} != {
        e.base_image.digest for e in b.permutations
    }


def test_since_an_unknown_release_is_refused(
    project: Path, private_registry: PrivateRegistry, trivy_db: TrivyDb
) -> None:
    result = run_dcforge(
        "build",
        "--no-prune",
        "--since",
        "abcdef12",
        cwd=project,
        env=env_for(private_registry, trivy_db),
    )
    assert result.returncode == 2
    assert "--since abcdef12: no published release" in result.stderr
