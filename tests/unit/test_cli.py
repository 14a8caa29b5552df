"""The command line says what it does: help everywhere, --version, exit codes; the Commands and
Exit codes tables (README.md or docs/) and every command the documentation names agree with
the code, and the CLI modules stay small."""

from __future__ import annotations

import argparse
import ast
import datetime
import json
import os
import re
import sys
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest

from dcforge.cli import main as cli
from dcforge.cli import parser as cli_parser
from dcforge.core import errors
from dcforge.core.errors import ConfigError, DcforgeError
from dcforge.core.settings import Settings
from dcforge.infra.runner import Runner
from tests.projects import TINY_FAMILY, write_project
from tests.readme import code_spans, sections, table_rows
from tests.unit.test_workflows import invoke_tasks, nox_sessions

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "src" / "dcforge"
MAX_FUNCTION_LINES = 50


def _subcommands(parser: argparse.ArgumentParser) -> argparse._SubParsersAction:  # type: ignore[type-arg]
    found = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    assert len(found) == 1
    return found[0]


SUBPARSERS = _subcommands(cli_parser.parser())
COMMANDS: dict[str, argparse.ArgumentParser] = dict(SUBPARSERS.choices)


# --- help -------------------------------------------------------------------------------------


def _options(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    return [
        a
        for a in parser._actions
        if not isinstance(a, argparse._HelpAction | argparse._SubParsersAction)
    ]


@pytest.mark.parametrize(
    "name", ["(top)", *COMMANDS], ids=lambda n: n if n != "(top)" else "dcforge"
)
def test_every_option_has_help(name: str) -> None:
    parser = cli_parser.parser() if name == "(top)" else COMMANDS[name]
    missing = [
        a.option_strings or [a.dest]
        for a in _options(parser)
        if not a.help or a.help == argparse.SUPPRESS or not a.help.strip()
    ]
    assert not missing, f"{name}: options without help: {missing}"


def test_every_command_has_a_summary_and_a_description() -> None:
    summaries = {a.dest: a.help for a in SUBPARSERS._choices_actions}
    assert set(summaries) == set(COMMANDS)
    for name, parser in COMMANDS.items():
        assert (summaries[name] or "").strip(), f"{name}: no help= in the command list"
        assert (parser.description or "").strip(), f"{name}: no description atop its --help"


def test_help_opens_with_what_dcforge_does() -> None:
    text = cli_parser.parser().format_help()
    after_usage = text.split("\n\n", 1)[1]
    assert " ".join(after_usage.split()).startswith("dcforge builds devcontainer images")
    assert "``" not in text, "an internal docstring leaked into --help"


def test_version_prints_the_installed_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stopped:
        cli_parser.parser().parse_args(["--version"])
    assert stopped.value.code == 0
    assert capsys.readouterr().out == f"dcforge {metadata.version('dcforge')}\n"


# --- wiring -----------------------------------------------------------------------------------


def _record(calls: list[dict[str, Any]]) -> Any:
    def recorder(*args: Any, **kwargs: Any) -> None:
        calls.append({"args": args, **kwargs})

    return recorder


@pytest.mark.parametrize(
    ("argv", "dry_run"),
    [
        (["build"], False),
        (["--dry-run", "build"], True),
        (["build", "--dry-run"], True),
        (["build", "--dry-run", "--no-prune", "--jobs", "2"], True),
    ],
)
def test_build_dry_run_reaches_the_runner(
    argv: list[str], dry_run: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dcforge.stages import build

    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(build, "run", _record(calls))
    assert cli.run(["--root", str(tmp_path), *argv], {}) == 0
    (call,) = calls
    ctx, _options = call["args"]
    assert isinstance(ctx.settings, Settings)
    assert isinstance(ctx.runner, Runner)
    assert ctx.runner.dry_run is dry_run


# --- build options: checked before any process or registry lookup ------------------------------

# Where a registry lookup would go if one were made: an address nothing answers on (TEST-NET-1,
# RFC 5737), so a check that came after it would cost the retries. Any lookup would also
# trip the tripwire on subprocess.Popen (tests/unit/conftest.py) first.
UNREACHABLE = {"DCFORGE_REGISTRY": "192.0.2.1:443/dc", "DCFORGE_BASE_REGISTRY": "192.0.2.1:443/b"}


def _usage_error(root: Path, argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """``dcforge build ARGV`` in a project, refused by argparse: exit status 2 before any
    process runs; returns its error line."""
    project = write_project(root)
    with pytest.raises(SystemExit) as stopped:
        cli.run(["--root", str(project), "build", *argv], UNREACHABLE)
    assert stopped.value.code == 2
    return capsys.readouterr().err.strip().splitlines()[-1]


@pytest.mark.parametrize("jobs", ["-1", "two", "1.5"])
def test_build_jobs_must_be_a_whole_number_of_zero_or_more(
    jobs: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    line = _usage_error(tmp_path, ["--jobs", jobs], capsys)
    assert line == (
        f"dcforge build: error: argument --jobs: '{jobs}' is not a number of bake sessions "
        "(0 or more; 0: the 'jobs' setting)"
    )
    for ok in (0, 3):
        assert cli_parser.parser().parse_args(["build", "--jobs", str(ok)]).jobs == ok


@pytest.mark.parametrize("since", ["zzzz", "abc", "HEAD", "LAST-KNOWN-GOOD", "sha256:abc"])
def test_build_since_must_name_a_release(
    since: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    line = _usage_error(tmp_path, ["--since", since], capsys)
    assert line == (
        f"dcforge build: error: argument --since: '{since}' names no release: give "
        "last-known-good, a git SHA (4 to 40 hex digits) or a sha256: record digest"
    )


@pytest.mark.parametrize("since", ["", "last-known-good", "abcd", "0" * 40, "sha256:" + "a" * 64])
def test_build_since_takes_every_way_of_naming_a_release(since: str) -> None:
    assert cli_parser.parser().parse_args(["build", "--since", since]).since == since


def test_build_platform_must_be_one_a_permutation_can_declare(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    line = _usage_error(tmp_path, ["--platform", "linux/amd65"], capsys)
    assert line.startswith(
        "dcforge build: error: argument --platform: 'linux/amd65' is not a platform a "
        "permutation can build (linux/amd64, linux/arm64, "
    )
    for ok in ("", "linux/arm/v7"):  # CI passes --platform "" to a job that builds it all
        assert cli_parser.parser().parse_args(["build", "--platform", ok]).platform == ok


@pytest.mark.parametrize(
    ("selection", "expected"),
    [
        ([], r"^no selected permutation builds linux/s390x$"),
        (["--permutation", "tiny-one"], r": 'tiny-one' does not build linux/s390x \(its platf"),
    ],
)
def test_build_platform_no_permutation_builds_is_refused_before_any_process(
    selection: list[str], expected: str, tmp_path: Path
) -> None:
    """The permutation files alone say it: no git, no prune, no registry login first."""
    root = write_project(tmp_path / "p")
    argv = ["--root", str(root), "build", "--prune", "--platform", "linux/s390x", *selection]
    with pytest.raises(ConfigError, match=expected) as err:
        cli.run(argv, {**UNREACHABLE, "CI": "true"})
    assert err.value.exit_code == 2


@pytest.mark.parametrize(
    ("env", "flags", "yes"),
    [
        ({}, ["--yes"], True),
        ({}, [], False),
        ({"GITHUB_REF": "refs/heads/main"}, ["--yes-on-default-branch"], True),
        ({"GITHUB_REF": "refs/heads/feature"}, ["--yes-on-default-branch"], False),
    ],
)
def test_prune_deletes_only_when_told(
    env: Mapping[str, str],
    flags: list[str],
    yes: bool,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from dcforge.stages import retention

    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(retention, "run", _record(calls))
    argv = ["--root", str(tmp_path), "prune", "--registry", *flags]
    assert cli.run(argv, env) == 0
    assert [c["yes"] for c in calls] == [yes]


def test_prune_needs_a_target(tmp_path: Path) -> None:
    with pytest.raises(DcforgeError, match="say what to prune"):
        cli.run(["--root", str(tmp_path), "prune", "--yes"], {})


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("", None),
        ("2024-01-02T03:04:05Z", datetime.datetime(2024, 1, 2, 3, 4, 5, tzinfo=datetime.UTC)),
        ("2024-01-02", datetime.datetime(2024, 1, 2, tzinfo=datetime.UTC)),
        (
            "2024-01-02T03:04:05+02:00",
            datetime.datetime(2024, 1, 2, 1, 4, 5, tzinfo=datetime.UTC),
        ),
    ],
)
def test_parse_now(raw: str, expected: datetime.datetime | None) -> None:
    assert cli.parse_now(raw) == expected


def test_parse_now_refuses_a_non_date() -> None:
    with pytest.raises(DcforgeError, match="not an ISO date/time") as err:
        cli.parse_now("yesterday")
    assert err.value.exit_code == 1


def test_main_turns_errors_into_exit_codes(monkeypatch: pytest.MonkeyPatch) -> None:
    def config_error(argv: Any, env: Any) -> int:
        raise ConfigError("bad")

    def interrupted(argv: Any, env: Any) -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "run", config_error)
    assert cli.main(["plan"]) == ConfigError.exit_code
    monkeypatch.setattr(cli, "run", interrupted)
    assert cli.main(["plan"]) == errors.INTERRUPTED_EXIT_CODE == 130


# --- exit codes: errors.py, the stages and the documentation agree ----------------------------


def _defined_exit_codes() -> dict[int, tuple[str, str]]:
    """Every ``exit_code = N`` class attribute in src/dcforge: code → (class, kind)."""
    found: dict[int, tuple[str, str]] = {}
    for path in sorted(SRC.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not isinstance(node, ast.ClassDef):
                continue
            values = {
                target.id: stmt.value.value
                for stmt in node.body
                if isinstance(stmt, ast.Assign) and isinstance(stmt.value, ast.Constant)
                for target in stmt.targets
                if isinstance(target, ast.Name)
            }
            if "exit_code" in values:
                code = values["exit_code"]
                assert isinstance(code, int)
                assert code not in found, f"exit code {code}: {found.get(code)} and {node.name}"
                found[code] = (node.name, str(values.get("kind", "")))
    return found


def _all_exit_codes() -> set[int]:
    return {0, errors.INTERRUPTED_EXIT_CODE, *_defined_exit_codes()}


def _exit_code_tables() -> list[list[list[str]]]:
    """The table of every "Exit codes" section in README.md and docs/."""
    return [rows for rows in map(table_rows, sections("Exit codes")) if rows]


def test_documented_exit_codes_match_the_code() -> None:
    tables = _exit_code_tables()
    assert tables, "README.md or docs/ should hold an 'Exit codes' table"
    for table in tables:
        rows = {int(r[0]): r for r in table}
        assert set(rows) == _all_exit_codes()
        for code, (name, kind) in _defined_exit_codes().items():
            assert f"`{kind}`" == rows[code][1], f"{code}: meaning should be the printed `{kind}`"
            assert f"`{name}`" in rows[code][2], f"{code}: 'raised when' should name {name}"


def test_errors_docstring_table_matches_the_code() -> None:
    doc = errors.__doc__ or ""
    rows = {int(m[1]): m[2] for m in re.finditer(r"^(\d+) +(.+)$", doc, re.MULTILINE)}
    assert set(rows) == _all_exit_codes()
    for code, (name, kind) in _defined_exit_codes().items():
        assert rows[code].startswith(f"{kind}  "), f"{code}: meaning should be {kind!r}"
        assert name in rows[code], f"{code}: 'raised when' should name {name}"


# --- documented commands: the Commands table and every command a page names ------------------

# How people reach each command: a nox session, an invoke task, or python -m dcforge itself.
REACHED_AS = {
    "plan": "nox -s plan",
    "build": "nox -s build",
    "gate": "nox -s gate",
    "rescan": "nox -s rescan",
    "publish": "nox -s publish",
    "verify": "nox -s verify",
    "rollback": "nox -s rollback",
    "pin": "invoke pin",
    "releases": "invoke releases",
    "prune": "nox -s prune",
    "merge-manifests": "nox -s merge",
    "lint-workflows": "python -m dcforge lint-workflows",
    "trivy": "invoke trivy ",
    "syft": "invoke syft",
    "cosign": "invoke cosign",
    "trivy-db-mirror": "invoke trivy-db-mirror",
    "host-plan": "python -m dcforge host-plan",
    "verify-image": "python -m dcforge verify-image",
    "init": "python -m dcforge init",
    "signing-identity": "python -m dcforge signing-identity",
}
NOX_SESSION_COMMAND = {
    spelling.removeprefix("nox -s "): command
    for command, spelling in REACHED_AS.items()
    if spelling.startswith("nox -s ")
}


def _first_cells() -> list[str]:
    """The first cell of each row of every "Commands" table in README.md and docs/."""
    return [row[0] for section in sections("Commands") for row in table_rows(section)]


def test_documented_commands_cover_every_command() -> None:
    assert set(REACHED_AS) == set(COMMANDS), "say how people reach a new command"
    cells = " ".join(_first_cells())
    missing = [name for name, spelling in REACHED_AS.items() if spelling not in cells]
    assert not missing, f"no Commands table (README.md or docs/) mentions: {missing}"


def _spellings() -> list[tuple[str, str]]:
    """Where a command is spelt out: (where, text) for each Commands table cell and for each
    code span or code line of README.md and docs/ (its parts split at " / ")."""
    found = [("Commands", cell) for cell in _first_cells()]
    found += [(f"{page}: `{span}`", span) for page, span in code_spans()]
    return [(where, part) for where, text in found for part in text.split(" / ")]


# ``python -m dcforge X`` anywhere, or ``dcforge X`` at the start (elsewhere it is prose).
DCFORGE_COMMAND = re.compile(r"(?:python -m |^)dcforge((?: --[a-z-]+)*) ([a-z][\w-]*)")


def test_documented_commands_exist() -> None:
    sessions, tasks = nox_sessions(), invoke_tasks()
    for where, text in _spellings():
        for session in re.findall(r"nox -s ([\w-]+)", text):
            assert session in sessions, f"{where}: no nox session {session!r}"
        if where == "Commands":  # code spans may name an earlier task name (test_tasks_names)
            for task in re.findall(r"invoke ([a-z][\w-]*)", text):
                assert task in tasks, f"{where}: no invoke task {task!r}"
        for _, command in DCFORGE_COMMAND.findall(text):
            assert command in COMMANDS, f"{where}: no command {command!r}"


def _unknown_flags(command: str, flags: str) -> list[str]:
    known = {s for a in COMMANDS[command]._actions for s in a.option_strings}
    return [f for f in re.findall(r"(?<![\w-])--[a-z][a-z-]*", flags) if f not in known]


def test_documented_nox_options_exist() -> None:
    """``nox -s X -- --flag`` passes --flag to ``python -m dcforge X``: it must take it."""
    for where, text in _spellings():
        found = re.search(r"nox -s ([\w-]+)", text)
        if found and found[1] in NOX_SESSION_COMMAND:
            unknown = _unknown_flags(NOX_SESSION_COMMAND[found[1]], text[found.end() :])
            assert not unknown, f"{where}: {found[1]} takes no {unknown}"


def test_documented_dcforge_options_exist() -> None:
    """``python -m dcforge [--debug …] X --flag`` (or ``dcforge X --flag``): X takes --flag,
    and the options before X are the global ones."""
    top = {s for a in cli_parser.parser()._actions for s in a.option_strings}
    for where, text in _spellings():
        for found in DCFORGE_COMMAND.finditer(text):
            if found[2] not in COMMANDS:
                continue  # test_documented_commands_exist says so
            wrong = [f for f in found[1].split() if f not in top]
            assert not wrong, f"{where}: dcforge takes no global {wrong}"
            unknown = _unknown_flags(found[2], text[found.end() :])
            assert not unknown, f"{where}: dcforge {found[2]} takes no {unknown}"


# --- small functions --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["__main__.py", "cli/main.py", "cli/tool_commands.py", "cli/parser.py"]
)
def test_cli_functions_are_small(name: str) -> None:
    path = SRC / name
    long = [
        f"{node.name} ({(node.end_lineno or node.lineno) - node.lineno + 1} lines)"
        for node in ast.walk(ast.parse(path.read_text(), str(path)))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and (node.end_lineno or node.lineno) - node.lineno + 1 > MAX_FUNCTION_LINES
    ]
    assert not long, f"{name}: split these: {long}"


def test_the_two_ways_to_confirm_a_prune_exclude_each_other() -> None:
    with pytest.raises(SystemExit) as err:
        cli_parser.parser().parse_args(["prune", "--registry", "--yes", "--yes-on-default-branch"])
    assert err.value.code == 2


# --- rough edges: each a clear line and the right exit code ------------------------------


def _lines(capsys: pytest.CaptureFixture[str]) -> list[str]:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return [line for line in err.splitlines() if line.strip()]


def test_a_folder_named_like_a_permutation_file_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = write_project(tmp_path / "p")
    (root / "permutations/odd.yaml").mkdir()
    assert cli.main(["--root", str(root), "plan"]) == ConfigError.exit_code
    (line,) = _lines(capsys)
    assert line == f"error: config error: {root}/permutations/odd.yaml: not a file — a " + (
        "permutation file is one YAML file"
    )


@pytest.mark.parametrize(
    "argv",
    [
        ["rollback", "--sha", "zzzz"],
        ["pin", "--sha", ";rm"],
        ["verify", "--sha", "abc"],
        ["rollback", "--sha", "sha256:1234"],
    ],
)
def test_a_malformed_sha_is_a_usage_error_before_any_registry(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """Refused by the parser (exit 2, the usage line), not as "rollback refused" (10)
    after a registry round trip."""
    with pytest.raises(SystemExit) as stop:
        cli_parser.parser().parse_args(argv)
    assert stop.value.code == 2
    assert "names no release: give last-known-good, a git SHA (4 to 40 hex digits) or a " + (
        "sha256: record digest"
    ) in " ".join(capsys.readouterr().err.split())


@pytest.mark.parametrize("sha", ["ABCDEF12", "abcd", "a" * 40, "sha256:" + "0" * 64])
def test_a_well_formed_sha_passes_the_parser(sha: str) -> None:
    args = cli_parser.parser().parse_args(["rollback", "--sha", sha])
    assert args.sha == sha.lower()


def test_prune_without_what_to_prune_says_error_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = write_project(tmp_path / "p")
    assert cli.main(["--root", str(root), "prune"]) == 1
    (line,) = _lines(capsys)
    assert line.startswith("error: prune: say what to prune: --runner, --registry")


def test_plan_json_prints_what_its_help_says(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = write_project(tmp_path / "p")
    assert cli.main(["--root", str(root), "plan", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    help_text = COMMANDS["plan"].format_help()
    (key,) = printed
    assert f'{{"{key}": [...]}}' in " ".join(help_text.split())


def test_every_schema_problem_is_a_line_of_its_own(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    family = TINY_FAMILY.replace("context: ../images/tiny", "context: 7") + "platfroms: [x]\n"
    root = write_project(tmp_path / "p", families={"tiny.yaml": family})
    assert cli.main(["--root", str(root), "plan"]) == ConfigError.exit_code
    lines = _lines(capsys)
    assert len(lines) == 2, lines
    assert all(
        line.startswith(f"error: config error: {root}/permutations/tiny.yaml: ") for line in lines
    )
    assert "unknown key 'platfroms' in (top level) — did you mean platforms?" in lines[0]
    assert lines[1].endswith("field 'context': 7 is not of type 'string'")


def test_merge_of_a_missing_folder_names_what_merge_wants(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = write_project(tmp_path / "p")
    missing = tmp_path / "parts" / "amd64"
    assert cli.main(["--root", str(root), "merge-manifests", str(missing)]) == 5
    (line,) = _lines(capsys)
    assert f"{missing}: is not a directory — pass the dist/ folders the build jobs" in line
    assert "nox -s build" not in line


def test_a_reader_that_stops_early_gets_no_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``dcforge plan | head -c1``: the closed pipe ends the command quietly, exit 1."""
    root = write_project(tmp_path / "p")
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before dcforge prints a line
    with open(write_end, "w", encoding="utf-8") as closed:
        monkeypatch.setattr(sys, "stdout", closed)
        assert cli.main(["--root", str(root), "plan"]) == 1
        monkeypatch.undo()
    assert _lines(capsys) == []
