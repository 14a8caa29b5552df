"""The shipped permutations build FROM the debootstrap base and pass their smoke commands."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path
from typing import Any

import pytest

from dcforge.core import manifest as mf
from dcforge.core.hashing import file_sha256
from dcforge.infra.runner import Runner
from tests.integration import oras_oracle as registry
from tests.integration.conftest import Shipped

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_shipped_permutations_build(shipped: Shipped, runner: Runner) -> None:
    m = mf.load(shipped.dist / "manifest.json")
    names = {e.name for e in m.permutations}
    assert {
        "base-bookworm", "python-3.11-bookworm", "node-18-bookworm", "debian-features-bookworm"
    } <= names  # fmt: skip
    debian = registry.resolve(runner, "localhost:5000/library/debian:bookworm", plain_http=True)
    for e in m.permutations:
        assert e.base_image.digest == debian
        assert file_sha256(shipped.dist / e.tarball) == e.tarball_sha256
        for digest in e.platform_images().values():
            config = _config(shipped.dist / e.tarball, digest)["config"]
            label = json.loads(config["Labels"]["devcontainer.metadata"])
            assert label[-1]["remoteUser"] == "vscode"
            assert not any("id" in item for item in label) or e.family == "features"
            if e.family != "features":  # a Dockerfile permutation: one entry, as declared
                assert config["User"] == "vscode" and len(label) == 1


def test_the_shipped_devcontainer_permutation_has_its_feature_and_passed_its_image_test(
    shipped: Shipped,
) -> None:
    e = mf.load(shipped.dist / "manifest.json").entry("debian-features-bookworm")
    config = _config(shipped.dist / e.tarball, e.image_digest)["config"]
    label = json.loads(config["Labels"]["devcontainer.metadata"])
    assert label[0]["id"] == "./dev-user"  # written by the Dev Containers CLI
    assert "DEV_USER_FEATURE=1.0.0" in config["Env"]
    report = json.loads(
        (shipped.dist / "reports/debian-features-bookworm.image-test.json").read_text()
    )
    (result,) = report["platforms"]
    assert result["user"] == "vscode" and result["exit_code"] == 0
    assert [c["name"] for c in result["checks"] if c["passed"]] == [
        "remote user", "home directory", "login message", "feature command", "feature environment"
    ]  # fmt: skip


def _config(tarball: Path, digest: str) -> dict[str, Any]:
    """The image config of one image in an OCI archive (the smoke leaves no image behind
    in the engine, so the archive is where to look)."""
    with tarfile.open(tarball) as tar:

        def blob(d: str) -> Any:
            member = tar.extractfile(f"blobs/sha256/{d[7:]}")
            assert member is not None
            return json.load(member)

        return dict(blob(blob(digest)["config"]["digest"]))
