"""The shipped permutations build FROM the debootstrap base and pass their smoke commands."""

from __future__ import annotations

import json

import pytest

from dcforge import manifest as mf
from dcforge.hashing import file_sha256
from dcforge.runner import Runner
from dcforge.tools import registry
from tests.integration.conftest import Shipped

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_shipped_permutations_build(shipped: Shipped, runner: Runner) -> None:
    m = mf.load(shipped.dist / "manifest.json")
    names = {e.name for e in m.permutations}
    assert {"base-bookworm", "python-3.11-bookworm", "node-18-bookworm"} <= names
    debian = registry.resolve(runner, "localhost:5000/library/debian:bookworm", plain_http=True)
    for e in m.permutations:
        assert e.base_image.digest == debian
        assert file_sha256(shipped.dist / e.tarball) == e.tarball_sha256
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
        user = runner.run(
            ["docker", "image", "inspect", "--format", "{{.Config.User}}", e.image_digest[7:]]
        )
        assert user.stdout.strip() == "vscode"
