"""dcforge.cli.nox_sessions: the sessions an images repository's noxfile registers, named
and run as dcforge's own noxfile names and runs them — with nox handed in, never imported."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from dcforge.cli import nox_sessions
from tests.unit.test_tasks import SESSIONS as DCFORGE_SESSION_COMMANDS
from tests.unit.test_workflows import nox_sessions as dcforge_sessions

SRC = Path(__file__).resolve().parents[2] / "src" / "dcforge"


class FakeNox:
    """What ``register`` uses of the nox module: ``options`` and ``session``."""

    def __init__(self) -> None:
        self.options = SimpleNamespace()
        self.registered: dict[str, Callable[[Any], None]] = {}

    def session(self, *, python: object, name: str) -> Callable[[Any], Any]:
        assert python is None  # the interpreter nox runs on, as dcforge's noxfile does

        def add(fn: Callable[[Any], None]) -> Callable[[Any], None]:
            self.registered[name] = fn
            return fn

        return add


class FakeSession:
    def __init__(self, posargs: list[str]) -> None:
        self.posargs = posargs
        self.calls: list[tuple[str, ...]] = []

    def install(self, *args: str) -> None:
        self.calls.append(("install", *args))

    def run(self, *args: str) -> None:
        self.calls.append(args)


def registered() -> FakeNox:
    nox = FakeNox()
    nox_sessions.register(nox, requirements="reqs.txt")
    return nox


def test_bare_nox_is_the_main_job() -> None:
    assert registered().options.sessions == ["main"]


def test_the_sessions_are_named_as_dcforges_own() -> None:
    names = set(registered().registered)
    assert names <= dcforge_sessions(), names - dcforge_sessions()
    assert {"main", "plan", "build", "gate", "publish", "verify", "rollback"} <= names


def test_every_session_has_a_one_line_docstring() -> None:
    for name, fn in registered().registered.items():
        assert fn.__name__ == name
        assert fn.__doc__ and "\n" not in fn.__doc__.strip(), name


def test_a_session_installs_dcforge_then_runs_the_same_command_as_dcforges() -> None:
    for name, fn in registered().registered.items():
        session = FakeSession(["--x"])
        fn(session)
        assert session.calls[0] == ("install", "-q", "-r", "reqs.txt"), name
        runs = session.calls[1:]
        assert all(run[:3] == ("python", "-m", "dcforge") for run in runs), name
        if name in DCFORGE_SESSION_COMMANDS:
            assert runs == [("python", "-m", "dcforge", DCFORGE_SESSION_COMMANDS[name], "--x")]


def test_the_main_job_builds_with_the_arguments_then_gates_publishes_and_verifies() -> None:
    session = FakeSession(["--permutation", "a"])
    registered().registered["main"](session)
    assert [run[3:] for run in session.calls[1:]] == [
        ("build", "--permutation", "a"),
        ("gate", "--self-test"),
        ("gate",),
        ("publish",),
        ("verify",),
    ]


def test_nox_is_handed_in_never_imported() -> None:
    text = (SRC / "cli" / "nox_sessions.py").read_text()
    assert "import nox" not in text and "from nox" not in text
