"""Adopt without forking: dcforge's wheel in a fresh virtualenv, ``dcforge init`` in a new
git repository, and that repository's main job (``nox``: build, gate, publish, verify) end
to end, with dcforge coming from the wheel — not from this checkout. Needs the local stack
(engine, registry, base images) and PyPI (nox, dcforge's dependencies)."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests.integration.conftest import ROOT, base_env, engine_to_itself, git_commit
from tests.integration.test_wheel import _wheel

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(1800)]


def run(argv: list[str | Path], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in argv],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=1500,
        check=False,
    )


def test_a_scaffolded_repository_runs_its_main_job_from_the_wheel(
    namespace: str, tmp_path: Path
) -> None:
    subprocess.run(
        [str(ROOT / "scripts/base-images"), "debian"], check=True, env=base_env(), timeout=900
    )
    wheel = _wheel(tmp_path)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    env = {k: v for k, v in base_env().items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    env["PATH"] = os.pathsep.join((str(venv / "bin"), env["PATH"]))
    env["PIP_FIND_LINKS"] = str(wheel.parent)  # requirements.txt's dcforge==… is this wheel
    env["DCFORGE_REGISTRY"] = f"{namespace}/adopt-{uuid.uuid4().hex[:8]}"
    repo = tmp_path / "images"
    repo.mkdir()
    subprocess.run(["git", "init", "-q", "-b", "main", str(repo)], check=True)
    made = run([venv / "bin/pip", "install", "-q", wheel], repo, env)
    assert made.returncode == 0, made.stderr
    init = run([venv / "bin/dcforge", "init"], repo, env)
    assert init.returncode == 0, init.stderr
    git_commit(repo, "scaffold")
    installed = run([venv / "bin/pip", "install", "-q", "-r", "requirements.txt"], repo, env)
    assert installed.returncode == 0, installed.stderr

    with engine_to_itself():  # its main job builds and smoke-runs on the shared engine
        main = run([venv / "bin/nox"], repo, env)
    assert main.returncode == 0, main.stderr[-4000:] + main.stdout[-2000:]
    log = main.stdout + main.stderr
    for step in ("dcforge build", "dcforge gate", "dcforge publish", "dcforge verify"):
        assert f"python -m {step}" in log, log[-3000:]
    assert "verified release" in log
    # dcforge ran from the wheel's install in the session's virtualenv, not this checkout.
    where = run(
        [repo / ".nox/main/bin/python", "-c", "import dcforge; print(dcforge.__file__)"], repo, env
    )
    assert "site-packages" in where.stdout and str(ROOT) not in where.stdout, where.stdout
