"""The shipped permutations build FROM the debootstrap base and pass their smoke commands."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path
from typing import Any

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
        for digest in e.platform_images().values():
            config = _config(shipped.dist / e.tarball, digest)["config"]
            assert json.loads(config["Labels"]["devcontainer.metadata"])[0]["remoteUser"] == (
                "vscode"
            )
            assert config["User"] == "vscode"


def _config(tarball: Path, digest: str) -> dict[str, Any]:
    """The image config of one image in an OCI archive (the smoke leaves no image behind
    in the engine, so the archive is where to look)."""
    with tarfile.open(tarball) as tar:

        def blob(d: str) -> Any:
            member = tar.extractfile(f"blobs/sha256/{d[7:]}")
            assert member is not None
            return json.load(member)

        return dict(blob(blob(digest)["config"]["digest"]))
