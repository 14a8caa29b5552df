"""The README's commands are the ones CI runs: .ci/run is the README's "## Tests" block (with
``nox -s lint`` before the tests), and the quick start is what the clean-room test runs."""

from __future__ import annotations

from pathlib import Path

from tests.readme import README, commands

ROOT = Path(__file__).resolve().parents[2]


def _script_lines(path: Path) -> list[str]:
    return [
        line
        for line in path.read_text().splitlines()
        if line.strip() and not line.startswith(("#", "set ", "cd "))
    ]


def test_ci_runs_the_readmes_test_command_verbatim() -> None:
    tests = commands("Tests")
    assert tests[-1] == "nox -s tests"
    assert _script_lines(ROOT / ".ci/run") == [*tests[:-1], "nox -s lint", tests[-1]]


def test_the_quick_start_installs_nox_as_the_tests_do_and_runs_the_main_job() -> None:
    quick, tests = commands("Quick start"), commands("Tests")
    assert quick[-1] == "nox" and quick[:-1] == tests[:-1]


def test_a_command_block_is_read_without_its_comments(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text("# x\n\n## Quick start\n\ntext\n\n    a b  # say\n    c\n\nmore\n\n    d\n")
    assert commands("Quick start", readme) == ["a b", "c"]
    assert README.is_file()
