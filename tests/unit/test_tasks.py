"""invoke tasks are named after the nox sessions they match: `invoke X` runs the dcforge
command `nox -s X` runs, with the same options; the earlier task names still work."""

from __future__ import annotations

import ast
import itertools
import re
from pathlib import Path

import pytest
from invoke import Program  # type: ignore[attr-defined]

from dcforge.cli import parser
from dcforge.cli import tasks as dcforge_tasks
from dcforge.cli.tasks import namespace
from tests.readme import code_spans, sections, table_rows

ROOT = Path(__file__).resolve().parents[2]
# What a session may run besides its one dcforge command: bringing the local stack up.
STACK_STEPS = {"scripts/bootstrap", "scripts/base-images"}


def _literal_args(call: ast.Call) -> list[str | None]:
    return [
        a.value if isinstance(a, ast.Constant) and isinstance(a.value, str) else None
        for a in call.args
    ]


def session_commands() -> dict[str, str]:
    """Each nox session that runs one `python -m dcforge COMMAND` (and at most the stack)."""
    found = {}
    for fn in ast.parse((ROOT / "noxfile.py").read_text()).body:
        if not isinstance(fn, ast.FunctionDef) or not any(
            "session" in ast.unparse(d) for d in fn.decorator_list
        ):
            continue
        commands, other = [], []
        for node in ast.walk(fn):
            if not (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "run"
            ):
                continue
            args = _literal_args(node)
            if args[:3] == ["python", "-m", "dcforge"] and len(args) > 3:
                commands.append(args[3])
            elif args[:1] and args[0] not in STACK_STEPS:
                other.append(args[0])
        if len(commands) == 1 and commands[0] and not other:
            found[fn.name] = commands[0]
    return found


SESSIONS = session_commands()

# One or more command lines per task named like a session; together they use every option.
SAMPLES: dict[str, list[list[str]]] = {
    "plan": [[], ["--json", "--github-output", "--permutation", "a", "--permutation", "b"]],
    "build": [
        [],
        ["--permutation", "a", "--permutation", "b", "--jobs", "2", "--prune", "--no-smoke"],
        ["--platform", "linux/arm64", "--refresh", "a", "--since", "last-known-good"],
        ["--no-prune", "--dry-run"],
        ["--check-reproducible"],
    ],
    "reproduce": [[], ["--permutation", "a", "--permutation", "b"]],
    "gate": [[], ["--self-test", "--no-scan-cache"]],
    "rescan": [
        [],
        ["--github-output", "--dispatch-refresh", "build-publish.yml", "--no-scan-cache"],
    ],
    "publish": [[], ["--allow-dirty"]],
    "verify": [[], ["--sha", "abc1234"]],
    "rollback": [["--sha", "abc1234"], ["--last-known-good", "--dry-run"]],
    "merge": [["--part", "dist-a"], ["--part", "dist-a", "--part", "dist-b"]],
    "prune": [
        ["--runner"],
        ["--registry", "--artifacts", "--yes", "--now", "2024-01-01T00:00:00Z"],
        ["--registry", "--yes-on-default-branch"],
    ],
}
# invoke options that dcforge takes as positional arguments, not as options.
POSITIONAL = {("merge", "--part")}


@pytest.fixture
def dcforge_argv(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """What each task passed to `python -m dcforge` (which is not run)."""
    calls: list[list[str]] = []

    def fake_main(argv: list[str]) -> int:
        calls.append(list(argv))
        return 0

    monkeypatch.setattr(dcforge_tasks, "dcforge_main", fake_main)
    return calls


def run_invoke(calls: list[list[str]], *argv: str) -> list[str]:
    """``invoke ARGV`` in this process; the one dcforge command line it made."""
    before = len(calls)
    Program(namespace=namespace, name="invoke", binary="invoke").run(["invoke", *argv])
    assert len(calls) == before + 1, f"invoke {' '.join(argv)} ran dcforge {calls[before:]}"
    return calls[-1]


def test_the_session_list_is_read_from_the_noxfile() -> None:
    expected = {"plan", "build", "gate", "publish", "verify", "rollback", "merge", "prune"}
    assert expected <= set(SESSIONS), SESSIONS
    assert SESSIONS["merge"] == "merge-manifests"
    assert "main" not in SESSIONS, "main runs several commands"
    assert "lint" not in SESSIONS, "lint runs more than dcforge"


@pytest.mark.parametrize("session", sorted(SESSIONS))
def test_every_dcforge_session_has_an_invoke_task_of_its_name(session: str) -> None:
    assert session in namespace.task_names, f"nox -s {session} has no `invoke {session}`"
    assert session in SAMPLES, f"say how to call invoke {session} in SAMPLES"


@pytest.mark.parametrize(
    ("task", "argv"),
    [(task, argv) for task, samples in SAMPLES.items() for argv in samples],
    ids=lambda x: " ".join(x) if isinstance(x, list) else x,
)
def test_the_task_runs_the_sessions_command_with_the_same_options(
    dcforge_argv: list[list[str]], task: str, argv: list[str]
) -> None:
    made = run_invoke(dcforge_argv, task, *argv)
    parsed = parser.parser().parse_args(made)  # dcforge takes it, as from nox -s TASK -- …
    assert parsed.command == SESSIONS[task], made
    passed = {a.split("=", 1)[0] for a in made}
    for option in (a for a in argv if a.startswith("--")):
        if (task, option) in POSITIONAL:
            continue
        assert option in passed, f"invoke {task} {option} did not pass {option} on: {made}"
    for value in (v for o, v in itertools.pairwise(argv) if (task, o) in POSITIONAL):
        assert value in made


@pytest.mark.parametrize("task", sorted(SAMPLES))
def test_the_samples_use_every_option_of_the_task(task: str) -> None:
    used = {a for argv in SAMPLES[task] for a in argv if a.startswith("--")}
    options = {f"--{arg.names[0]}" for arg in namespace[task].get_arguments()}
    assert options - used == set(), f"add a sample of invoke {task} using {options - used}"


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (["buildx", "--permutation", "a", "--jobs", "2"], ["build", "-p", "a", "--jobs", "2"]),
        (
            ["merge-manifests", "--part", "a", "--part", "b"],
            ["merge", "--part", "a", "--part", "b"],
        ),
        (["retention"], ["prune", "--registry"]),
        (
            ["retention", "--yes", "--now", "2024-01-01"],
            ["prune", "--registry", "--yes", "--now", "2024-01-01"],
        ),
        (["retention", "--artifacts", "--yes"], ["prune", "--artifacts", "--yes"]),
    ],
    ids=" ".join,
)
def test_the_earlier_task_names_still_work(
    dcforge_argv: list[list[str]], old: list[str], new: list[str]
) -> None:
    assert run_invoke(dcforge_argv, *old) == run_invoke(dcforge_argv, *new)


def test_the_earlier_names_are_aliases_or_tasks() -> None:
    assert namespace.task_names["build"] == ["buildx"]
    assert namespace.task_names["merge"] == ["merge-manifests"]
    assert "retention" in namespace.task_names


def test_contradicting_options_exit_2(dcforge_argv: list[list[str]]) -> None:
    with pytest.raises(SystemExit) as err:
        run_invoke(dcforge_argv, "build", "--prune", "--no-prune")
    assert err.value.code == 2
    assert dcforge_argv == []


def _invoke_spellings() -> list[str]:
    """Each "Commands" table cell (README.md or docs/) and each code span or code line of
    README.md and docs/, split at " / "."""
    cells = [row[0] for section in sections("Commands") for row in table_rows(section)]
    texts = cells + [span for _, span in code_spans()]
    return [part for text in texts for part in text.split(" / ")]


def test_documented_invoke_tasks_and_options_exist() -> None:
    """Each `invoke X --flag` the documentation names is a task X (or an earlier name of
    one) that takes --flag."""
    for part in _invoke_spellings():
        found = re.search(r"invoke ([a-z][\w-]*)", part)
        if not found:
            continue
        assert found[1] in namespace.task_names or any(
            found[1] in aliases for aliases in namespace.task_names.values()
        ), f"{part}: no invoke task {found[1]!r}"
        task = namespace[found[1]]
        known = {f"--{arg.names[0]}" for arg in task.get_arguments()}
        flags = re.findall(r"(?<![\w-])--[a-z][a-z-]*", part[found.end() :])
        unknown = [f for f in flags if f not in known]
        assert not unknown, f"{part}: invoke {found[1]} takes no {unknown}"
