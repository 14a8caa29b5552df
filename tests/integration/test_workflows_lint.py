"""`nox -s lint`'s workflow part with the real actionlint and zizmor binaries."""

from __future__ import annotations

import json
import shutil
import tomllib
from pathlib import Path

import pytest

from tests.integration.conftest import ROOT, run_dcforge

pytestmark = pytest.mark.integration


def copy(tmp_path: Path) -> Path:
    """.github/ in a checkout of its own, of dcforge's version (images.yml pins it)."""
    shutil.copytree(ROOT / ".github", tmp_path / ".github")
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    (tmp_path / "pyproject.toml").write_text(f"[project]\nname = 'x'\nversion = '{version}'\n")
    return tmp_path / ".github/workflows"


def test_shipped_workflows_are_clean(tmp_path: Path) -> None:
    """... and so is the scaffold's, filled in as an adopter fills it in (`nox -s lint`)."""
    result = run_dcforge("lint-workflows", "--scaffold", cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert "and the scaffold" in result.stderr + result.stdout


def test_the_plan_matrix_equals_the_shipped_permutations(tmp_path: Path) -> None:
    out = tmp_path / "github_output"
    result = run_dcforge(
        "plan", "--json", "--github-output", cwd=ROOT, env={"GITHUB_OUTPUT": str(out)}
    )
    assert result.returncode == 0, result.stderr
    matrix = json.loads(result.stdout)
    assert sorted(job["permutation"] for job in matrix["include"]) == [
        "base-bookworm",
        "debian-features-bookworm",
        "node-18-bookworm",
        "python-3.11-bookworm",
    ]
    assert out.read_text() == f"matrix={result.stdout.strip()}\n"


def test_an_unpinned_action_fails(tmp_path: Path) -> None:
    wf = copy(tmp_path) / "rollback.yml"
    wf.write_text(
        wf.read_text().replace(
            "actions/checkout@11bd71901bbe5b1630ceea73d27597364c9af683 # v4.2.2",
            "actions/checkout@v4",
        )
    )
    result = run_dcforge("lint-workflows", cwd=tmp_path)
    assert result.returncode == 1
    assert "zizmor" in result.stderr and "unpinned" in result.stderr
    assert "actions/checkout@v4 is not pinned" in result.stderr


def test_an_injected_expression_fails(tmp_path: Path) -> None:
    wf = copy(tmp_path) / "build-publish.yml"
    wf.write_text(
        wf.read_text().replace(
            '"${RUNNER_TEMP}/nox/bin/nox" -s gate\n',
            '"${RUNNER_TEMP}/nox/bin/nox" -s gate -- "${{ github.event.pull_request.title }}"\n',
        )
    )
    result = run_dcforge("lint-workflows", cwd=tmp_path)
    assert result.returncode == 1
    assert "template-injection" in result.stderr
    assert "expression expanded inside run" in result.stderr
