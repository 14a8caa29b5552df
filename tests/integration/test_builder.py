"""The ``builder`` setting: every build (bake, the builder check, the gate's canary) goes to
the buildx builder it names. Here: the docker driver of a docker context of its own (as
another engine's would be; buildx reaches those only through ``docker --context``), and a
builder that does not exist. The archives and digests come back the same way."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from dcforge.core import manifest as mf
from dcforge.core import oci_archive
from tests.integration.conftest import TrivyDb, run_dcforge
from tests.integration.engines import docker_context

pytestmark = pytest.mark.integration


@pytest.fixture
def context() -> Iterator[str]:
    """A docker context for the stack's engine socket, under a name of its own."""
    with docker_context() as name:
        yield name


def test_every_build_runs_on_the_builder_the_setting_names(
    project: Path, trivy_db: TrivyDb, context: str
) -> None:
    env = {"DCFORGE_BUILDER": context, "DCFORGE_TRIVY_DB_REPOSITORY": trivy_db.repository}
    built = run_dcforge("--verbose", "build", "--no-prune", cwd=project, env=env)
    assert built.returncode == 0, built.stderr
    assert f"docker --context {context} buildx inspect" in built.stderr
    assert f"docker --context {context} buildx bake" in built.stderr
    assert "+ docker buildx bake" not in built.stderr
    for entry in mf.load(project / "dist/manifest.json").permutations:
        assert oci_archive.oci_archive(project / "dist" / entry.tarball)[0] == entry.image_digest
    gated = run_dcforge("gate", cwd=project, env=env)
    assert gated.returncode == 0, gated.stderr
    # The canary's planted advisories are in the sample DB (loopback registry, no DB set).
    canary = run_dcforge(
        "--verbose", "gate", "--self-test", cwd=project, env={"DCFORGE_BUILDER": context}
    )
    assert canary.returncode == 0, canary.stderr
    assert f"docker --context {context} buildx build" in canary.stderr


def test_a_builder_that_does_not_exist_is_one_line_and_builds_nothing(project: Path) -> None:
    result = run_dcforge("build", "--no-prune", cwd=project, env={"DCFORGE_BUILDER": "no-such"})
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "no-such" in result.stderr
    assert "docker buildx --builder no-such" in result.stderr or "no-such" in result.stderr
    assert not (project / "dist/manifest.json").exists()
