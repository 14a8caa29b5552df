"""An installed wheel reads its own tool pins: dcforge built into a wheel from a copy of this
checkout's sources, installed into a bare directory, and imported from an empty directory
with nothing else on its path (no checkout, no virtualenv: only the stdlib and
``packaging``). The pins it prints are the checkout's. Needs PyPI (or pip's cache) for the
build backend, not the local stack; a few seconds."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import packaging
import pytest

from dcforge.core import toolpins

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

PROBE = """
import json
from importlib import metadata

import dcforge
from dcforge.core import toolpins

print(json.dumps({
    "module": dcforge.__file__,
    "metadata": str(metadata.distribution("dcforge").locate_file("")),
    "pins": toolpins.pins(),
    "toolchain": toolpins.toolchain(),
    "upstream": toolpins.upstream_pins(),
    "npm": toolpins.npm_pins(),
}))
"""


def _wheel(tmp_path: Path) -> Path:
    """dcforge's wheel, built from a copy of the sources (the build writes nothing here)."""
    source = tmp_path / "source"
    shutil.copytree(
        ROOT / "src", source / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info")
    )
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, source / name)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--disable-pip-version-check",
         "-w", str(tmp_path / "dist"), str(source)],
        check=True, timeout=240,
    )  # fmt: skip
    (wheel,) = (tmp_path / "dist").glob("dcforge-*.whl")
    return wheel


def test_an_installed_wheel_reads_its_own_pins(tmp_path: Path) -> None:
    wheel = _wheel(tmp_path)
    with zipfile.ZipFile(wheel) as zf:
        assert "dcforge/resources/toolchain.toml" in zf.namelist()
    site, deps, elsewhere = tmp_path / "site", tmp_path / "deps", tmp_path / "elsewhere"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index",
         "--disable-pip-version-check", "--target", str(site), str(wheel)],
        check=True, timeout=120,
    )  # fmt: skip
    shutil.copytree(Path(packaging.__file__).parent, deps / "packaging")
    elsewhere.mkdir()

    ran = subprocess.run(
        [sys.executable, "-S", "-c", PROBE],
        cwd=elsewhere,
        env={"PATH": os.defpath, "PYTHONPATH": os.pathsep.join((str(site), str(deps)))},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert ran.returncode == 0, ran.stderr
    found = json.loads(ran.stdout)

    assert Path(found["module"]).is_relative_to(site)  # the wheel's code and metadata
    assert Path(found["metadata"]).is_relative_to(site)
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    checkout = tomllib.loads((ROOT / "src/dcforge/resources/toolchain.toml").read_text())
    assert found["pins"] == toolpins.pins(pyproject["project"]["dependencies"], checkout)
    assert found["toolchain"] == checkout
    assert found["upstream"] == {k: list(v) for k, v in toolpins.upstream_pins(checkout).items()}
    assert found["npm"] == toolpins.npm_pins(checkout)
