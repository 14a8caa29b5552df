"""Runner engines dcforge does not configure, and builders off this machine: a second
dockerd of the test's own — on Docker's classic image store (what many runners still
have) for the smoke test, on the containerd store as the engine a ``builder`` names."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import docker as docker_sdk
import pytest

from dcforge.core import manifest as mf
from dcforge.core import oci_archive
from dcforge.infra.runner import Runner
from dcforge.infra.tools import docker as engine_tools
from tests.integration.conftest import base_env, git_commit, run_dcforge
from tests.integration.engines import SecondEngine, docker_context, second_engine
from tests.projects import TINY_FAMILY, write_project

pytestmark = pytest.mark.integration

TWO_PLATFORMS = (
    TINY_FAMILY.replace("family: tiny", "family: both")
    .replace(
        'name: "tiny-{flavor}"', 'name: "both-{flavor}"\nplatforms: [linux/amd64, linux/arm64]'
    )
    .replace("[one, two]", "[one]")
)
FAILING = (
    TINY_FAMILY.replace("family: tiny", "family: bad")
    .replace('name: "tiny-{flavor}"', 'name: "bad-{flavor}"')
    .replace("[one, two]", "[one]")
    .replace('grep -q "hello {flavor}" /etc/built-greeting', "test -e /etc/not-there")
)


@pytest.fixture(scope="module")
def classic() -> Iterator[SecondEngine]:
    with second_engine("classic", network="none") as engine:
        yield engine


@pytest.fixture
def main_context() -> Iterator[str]:
    """A docker context for the stack's own engine (the builder when the local engine is
    the classic one, as a runner with a docker-container or remote builder has it)."""
    with docker_context() as name:
        yield name


def _project(root: Path, namespace: str, families: dict[str, str]) -> Path:
    root = write_project(root, registry=f"{namespace}/e{uuid.uuid4().hex[:8]}", families=families)
    (root / ".gitignore").write_text(".dcforge/\ndist/\n")
    git_commit(root)
    return root


def test_the_classic_image_store_engine_smoke_tests_every_platform(
    classic: SecondEngine, main_context: str, namespace: str, tmp_path: Path
) -> None:
    """Builds go to the stack's engine (the builder); the local engine — DOCKER_HOST — is
    a classic-store dockerd: it loads each platform's image and runs the smoke there."""
    root = _project(
        tmp_path / "p", namespace, {"tiny.yaml": TINY_FAMILY, "both.yaml": TWO_PLATFORMS}
    )
    env = {"DOCKER_HOST": classic.host, "DCFORGE_BUILDER": main_context}
    built = run_dcforge("--verbose", "build", "--no-prune", cwd=root, env=env)
    assert built.returncode == 0, built.stderr
    m = mf.load(root / "dist/manifest.json")
    assert {e.name for e in m.permutations} == {"tiny-one", "tiny-two", "both-one"}
    for entry in m.permutations:
        assert f"{entry.name} smoke ok" in built.stderr
        assert oci_archive.oci_archive(root / "dist" / entry.tarball)[0] == entry.image_digest
    assert built.stderr.count("classic image store") == 3
    assert "on linux/amd64, linux/arm64, classic image store" in built.stderr
    # The smoke images are gone again from the engine that ran them.
    with closing(docker_sdk.DockerClient(base_url=classic.host)) as client:
        assert client.images.list() == []


def test_a_failing_smoke_command_on_the_classic_store_names_it(
    classic: SecondEngine, main_context: str, namespace: str, tmp_path: Path
) -> None:
    root = _project(tmp_path / "p", namespace, {"bad.yaml": FAILING})
    env = {"DOCKER_HOST": classic.host, "DCFORGE_BUILDER": main_context}
    built = run_dcforge("build", "--no-prune", cwd=root, env=env)
    assert built.returncode != 0 and "Traceback" not in built.stderr
    assert "bad-one: smoke command 'test -e /etc/not-there' failed on linux/amd64" in built.stderr
    assert not (root / "dist/manifest.json").exists()


def test_the_engine_layer_tells_the_stores_apart(classic: SecondEngine) -> None:
    env = base_env()
    with engine_tools.Engine(Runner(env=env)) as local:
        assert local.image_store() == "containerd"
    with engine_tools.Engine(Runner(env={**env, "DOCKER_HOST": classic.host})) as other:
        assert other.image_store() == "classic"


def test_an_unreachable_engine_is_one_line(tmp_path: Path, namespace: str) -> None:
    root = _project(tmp_path / "p", namespace, {"tiny.yaml": TINY_FAMILY})
    env = {"DOCKER_HOST": f"unix://{tmp_path}/none.sock"}
    built = run_dcforge("prune", "--runner", cwd=root, env=env)
    assert built.returncode != 0 and "Traceback" not in built.stderr
    assert f"cannot reach the Docker engine at unix://{tmp_path}/none.sock" in built.stderr


@pytest.fixture(scope="module")
def build_engine() -> Iterator[SecondEngine]:
    with second_engine("containerd", network="bridge") as engine:
        yield engine


def test_a_builder_on_another_engine_builds_every_permutation(
    build_engine: SecondEngine, namespace: str, tmp_path: Path
) -> None:
    """``builder`` names a docker context for another engine's socket: bake runs there
    (its build cache fills, the stack's engine builds nothing), the archives come back here
    with the digests buildx reported, and they gate as any other."""
    root = _project(tmp_path / "p", namespace, {"tiny.yaml": TINY_FAMILY})
    with closing(docker_sdk.DockerClient(base_url=build_engine.host)) as other:
        assert other.df()["BuildCache"] in ([], None)
    with docker_context(build_engine.host) as context:
        built = run_dcforge(
            "--verbose", "build", "--no-prune", cwd=root, env={"DCFORGE_BUILDER": context}
        )
        assert built.returncode == 0, built.stderr
        assert f"docker --context {context} buildx bake" in built.stderr
    with closing(docker_sdk.DockerClient(base_url=build_engine.host)) as other:
        assert other.df()["BuildCache"], "the other engine built nothing"
    for entry in mf.load(root / "dist/manifest.json").permutations:
        assert oci_archive.oci_archive(root / "dist" / entry.tarball)[0] == entry.image_digest
