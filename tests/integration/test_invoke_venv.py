"""After the quick start `invoke` works: the virtualenv the main job (`nox`) makes runs the
tasks from the repository root. Needs PyPI (or pip's cache), not the local stack."""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]

# alone: it removes src/dcforge/**/__pycache__, which workers side by side import from.
pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.alone(0)]


def _noxfile() -> ModuleType:
    """The noxfile as a module: the main session's own helper makes the venv here."""
    spec = importlib.util.spec_from_file_location("dcforge_noxfile", ROOT / "noxfile.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _user_env() -> dict[str, str]:
    """A shell with no virtualenv active and this interpreter's bin dir off PATH."""
    ours = str(Path(sys.executable).parent)
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME") and not k.startswith("NOX")
    }
    path = [p for p in env.get("PATH", os.defpath).split(os.pathsep) if p != ours]
    env["PATH"] = os.pathsep.join(path)
    return env


def _compiled_at_start(venv: Path) -> list[str]:
    """dcforge's modules a command start compiles from source (not read from bytecode),
    where nothing may be written (PYTHONDONTWRITEBYTECODE, as many containers set)."""
    env = {**_user_env(), "PYTHONDONTWRITEBYTECODE": "1"}
    started = subprocess.run(
        [str(venv / "bin" / "python"), "-v", "-c", "import dcforge.cli.main"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    src = str(ROOT / "src" / "dcforge")
    return re.findall(rf"^# code object from ({re.escape(src)}\S+)$", started.stderr, re.M)


@pytest.mark.timeout(1800)
def test_the_main_jobs_venv_runs_invoke_from_the_checkout(tmp_path: Path) -> None:
    noxfile = _noxfile()
    venv = tmp_path / "venv"
    ran: list[list[str]] = []

    def run(argv: Sequence[str]) -> None:
        ran.append(list(argv))
        subprocess.run(list(argv), cwd=ROOT, env=_user_env(), check=True, timeout=1500)

    for cached in list((ROOT / "src" / "dcforge").rglob("__pycache__")):
        shutil.rmtree(cached)  # (what another session compiled does not count)
    assert noxfile.project_venv(ROOT, run, venv=venv) is True
    assert any("--require-hashes" in argv for argv in ran), ran  # from the lock, by hash
    assert _compiled_at_start(venv) == [], "a command compiles dcforge's modules each start"

    listed = subprocess.run(
        [str(venv / "bin" / "invoke"), "--list"],
        cwd=ROOT,
        env=_user_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert listed.returncode == 0, listed.stderr
    tasks = set(re.findall(r"^  ([a-z][\w-]*)", listed.stdout, re.MULTILINE))
    assert {"rollback", "build", "gate", "publish", "verify", "merge", "prune"} <= tasks, (
        listed.stdout
    )

    # `. .venv/bin/activate` puts invoke and dcforge on PATH.
    activated = subprocess.run(
        [
            "bash",
            "-c",
            f'. "{venv}/bin/activate" && command -v invoke && command -v dcforge'
            " && dcforge --version && invoke --help rollback",
        ],
        cwd=ROOT,
        env=_user_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert activated.returncode == 0, activated.stderr
    lines = activated.stdout.splitlines()
    assert lines[:2] == [str(venv / "bin" / "invoke"), str(venv / "bin" / "dcforge")], lines
    assert lines[2].startswith("dcforge "), lines
    assert "--last-known-good" in activated.stdout

    # A second run installs nothing; a changed lock or pyproject.toml (the stamp) reinstalls.
    ran.clear()
    assert noxfile.project_venv(ROOT, run, venv=venv) is False
    assert ran == []
    (venv / noxfile.VENV_STAMP).write_text("an older lock")
    assert noxfile.project_venv(ROOT, run, venv=venv) is True
    assert not any("venv" in argv[1:3] for argv in ran), "the venv was kept, not made anew"
    assert noxfile.project_venv(ROOT, run, venv=venv) is False
