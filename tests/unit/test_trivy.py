"""The Trivy command line the gate runs (a dry run: unit tests start no process)."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from dcforge.infra.runner import Runner
from dcforge.infra.tools import trivy


def scan_argv(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], vex: Path | None = None
) -> list[str]:
    scan = trivy.ScanOptions(tmp_path / "cache", vex=vex)
    assert trivy.scan(Runner(dry_run=True), tmp_path / "layout", tmp_path / "r.json", scan) == {}
    (line,) = [x for x in capsys.readouterr().err.splitlines() if x.startswith("+ trivy ")]
    return shlex.split(line.removeprefix("+ ").removesuffix("  (dry run: not run)"))


def test_what_trivy_hides_stays_in_the_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = scan_argv(tmp_path, capsys)
    assert "--show-suppressed" in argv
    assert "--vex" not in argv


def test_the_waivers_vex_is_passed_when_there_is_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = scan_argv(tmp_path, capsys, vex=tmp_path / "x.trivy-vex.json")
    assert argv[argv.index("--vex") + 1] == str(tmp_path / "x.trivy-vex.json")
    assert argv[-2:] == ["--input", str(tmp_path / "layout")]
