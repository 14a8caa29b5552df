"""The shipped permutations build FROM the debootstrap base and pass their smoke commands."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from dcforge import manifest as mf
from dcforge.hashing import file_sha256
from dcforge.runner import Runner
from dcforge.tools import registry
from tests.integration.conftest import ROOT, base_env, run_dcforge

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def debian_base() -> None:
    subprocess.run(
        [str(ROOT / "scripts/base-images"), "debian"], check=True, env=base_env(), timeout=900
    )


def test_shipped_permutations_build(
    debian_base: None, namespace: str, runner: Runner, tmp_path: Path
) -> None:
    dist = tmp_path / "dist"
    env = {"DCFORGE_DIST": str(dist), "DCFORGE_REGISTRY": f"{namespace}/shipped"}
    result = run_dcforge("build", "--no-prune", cwd=ROOT, env=env, timeout=1800)
    assert result.returncode == 0, result.stderr
    m = mf.load(dist / "manifest.json")
    names = {e.name for e in m.permutations}
    assert {"base-bookworm", "python-3.11-bookworm", "node-18-bookworm"} <= names
    debian = registry.resolve(runner, "localhost:5000/library/debian:bookworm", plain_http=True)
    for e in m.permutations:
        assert e.base_image.digest == debian
        assert file_sha256(dist / e.tarball) == e.tarball_sha256
        assert result.stderr.count(f"{e.name} smoke ok") == 1
        label = runner.run(
            [
                "docker",
                "image",
                "inspect",
                "--format",
                '{{index .Config.Labels "devcontainer.metadata"}}',
                e.image_digest[7:],
            ]
        )
        assert json.loads(label.stdout)[0]["remoteUser"] == "vscode"
