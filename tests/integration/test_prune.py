"""Runner hygiene: it empties Docker's images and build cache, so it runs last."""

from __future__ import annotations

from pathlib import Path

import pytest

from dcforge.infra.runner import Runner
from tests.integration import oras_oracle as registry
from tests.integration.conftest import run_dcforge

pytestmark = [pytest.mark.integration, pytest.mark.alone(2)]


def test_prune_runner_reports_and_spares_the_registry(
    stack: str, runner: Runner, busybox_digest: str, tmp_path: Path
) -> None:
    result = run_dcforge("prune", "--runner", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "system prune: reclaimed" in result.stderr
    assert "buildx prune: reclaimed" in result.stderr
    assert runner.run(["docker", "images", "-q"]).stdout.strip() == ""
    # The registry runs outside Docker and keeps its data.
    assert (
        registry.resolve(runner, f"{stack}/library/busybox:latest", plain_http=True)
        == busybox_digest
    )


def test_prune_needs_a_target(tmp_path: Path) -> None:
    result = run_dcforge("prune", cwd=tmp_path)
    assert result.returncode == 1
    assert "--runner" in result.stderr
