"""Console output: progress for people, ``::group::``/``::error::`` for GitHub Actions."""

from __future__ import annotations

import contextlib
import sys
import threading
from collections.abc import Iterator

from rich.console import Console
from rich.markup import escape
from rich.table import Table

_lock = threading.Lock()
console = Console(stderr=True, highlight=False, soft_wrap=True)


_actions = {"on": False}  # set once by the entry point (configure); nothing here reads env


def configure(*, github_actions: bool) -> None:
    """In GitHub Actions: ``::group::``, ``::warning::`` and ``::error::`` lines."""
    _actions["on"] = github_actions


def _on_actions() -> bool:
    return _actions["on"]


def info(message: str) -> None:
    """One progress line on stderr."""
    with _lock:
        console.print(message, markup=False)


def step(name: str, message: str) -> None:
    """A progress line for one permutation, prefixed with its name."""
    with _lock:
        console.print(f"[bold]{name}[/bold] {_escape(message)}")


def warn(message: str) -> None:
    with _lock:
        if _on_actions():
            sys.stderr.write(f"::warning::{message}\n")
        else:
            console.print(f"[yellow]warning:[/yellow] {_escape(message)}")


def error(message: str) -> None:
    with _lock:
        if _on_actions():
            sys.stderr.write(f"::error::{message}\n")
        else:
            console.print(f"[red bold]error:[/red bold] {_escape(message)}")


def table(renderable: Table) -> None:
    """A table, wide enough to read in CI logs (which are not terminals)."""
    with _lock:
        wide = console if console.is_terminal else Console(stderr=True, width=160)
        wide.print(renderable)


@contextlib.contextmanager
def group(title: str) -> Iterator[None]:
    """A collapsible group in GitHub Actions logs, a heading elsewhere."""
    if _on_actions():
        sys.stderr.write(f"::group::{title}\n")
        sys.stderr.flush()
        try:
            yield
        finally:
            sys.stderr.write("::endgroup::\n")
            sys.stderr.flush()
    else:
        with _lock:
            console.rule(title, align="left")
        yield


def _escape(text: str) -> str:
    return escape(text)
