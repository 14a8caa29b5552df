"""`python -m dcforge init` as a user runs it: a new repository dcforge then plans, and
whose workflow actionlint accepts."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.conftest import run_dcforge
from tests.unit.test_scaffold import EXPECTED

pytestmark = pytest.mark.integration


def test_init_then_plan_in_a_new_repository(tmp_path: Path) -> None:
    repo = tmp_path / "images"
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    made = run_dcforge("init", cwd=repo)
    assert made.returncode == 0, made.stderr
    written = {str(p.relative_to(repo)) for p in repo.rglob("*") if p.is_file()}
    assert written >= EXPECTED
    plan = run_dcforge("plan", "--json", cwd=repo)
    assert plan.returncode == 0, plan.stderr
    names = sorted(job["permutation"] for job in json.loads(plan.stdout)["include"])
    assert names == ["base-bookworm", "features-bookworm"]
    again = run_dcforge("init", cwd=repo)
    assert again.returncode == 2
    assert again.stderr.strip().count("\n") == 0 and "--force" in again.stderr


def test_the_scaffolds_workflow_passes_actionlint(tmp_path: Path) -> None:
    assert run_dcforge("init", str(tmp_path), cwd=tmp_path).returncode == 0
    actionlint = Path(sys.executable).parent / "actionlint"
    lint = subprocess.run(
        [str(actionlint), str(tmp_path / ".github/workflows/images.yml")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert lint.returncode == 0, lint.stdout + lint.stderr
