"""Console output: progress for people, ``::group::``/``::error::`` for GitHub Actions.

What a running tool shows (streamed lines, heartbeats, the terminal's live table, one
``::group::`` per permutation in GitHub Actions) is :mod:`dcforge.infra.progress`; this module is
its front: the one console, the one lock every line is printed under, and the functions the
stages call.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator, Sequence

from rich.console import Console, RenderableType
from rich.live import Live
from rich.markup import escape
from rich.table import Table

from dcforge.core import action_groups
from dcforge.infra import progress

console = Console(stderr=True, highlight=False, soft_wrap=True)


def _emit(lines: Sequence[action_groups.Out]) -> None:
    """Print ``lines`` (called with the lock held)."""
    for kind, text in lines:
        if kind == "raw":
            sys.stderr.write(f"{text}\n")
            sys.stderr.flush()
        elif kind == "markup":
            console.print(text)
        elif kind == "plain":
            console.print(text, markup=False)
        else:
            console.print(text, markup=False, emoji=False)


def _live(render: Callable[[], RenderableType]) -> progress.LiveDisplay:
    return Live(
        console=console,
        get_renderable=render,
        refresh_per_second=progress.REFRESH_PER_SECOND,
        transient=True,
        redirect_stdout=False,  # a command's stdout (plan --json, releases --json) is data
        redirect_stderr=False,
    )


_hub = progress.Hub(
    _emit,
    terminal=lambda: console.is_terminal and not console.is_dumb_terminal,
    live=_live,
)
_lock = _hub.lock


def configure(*, github_actions: bool) -> None:
    """In GitHub Actions: ``::group::``, ``::warning::`` and ``::error::`` lines."""
    _hub.actions = github_actions


def _on_actions() -> bool:
    return _hub.actions


def sink() -> progress.Sink:
    """Where the runner streams tool output (dcforge.infra.runner.Runner's default)."""
    return _hub


def info(message: str) -> None:
    """One progress line on stderr."""
    _hub.info(("plain", message))


def step(name: str, message: str) -> None:
    """A progress line for one permutation, prefixed with its name. It also tells
    dcforge.infra.progress which permutation this thread works on (its next tool calls)."""
    _hub.step(name, message)


def warn(message: str) -> None:
    if _on_actions():
        _hub.info(("raw", f"::warning::{message}"))
    else:
        _hub.info(("markup", f"[yellow]warning:[/yellow] {_escape(message)}"))


def error(message: str) -> None:
    if _on_actions():
        _hub.info(("raw", f"::error::{message}"))
    else:
        _hub.info(("markup", f"[red bold]error:[/red bold] {_escape(message)}"))


def table(renderable: Table) -> None:
    """A table, wide enough to read in CI logs (which are not terminals)."""
    with _lock:
        wide = console if console.is_terminal else Console(stderr=True, width=160)
        wide.print(renderable)


@contextlib.contextmanager
def group(title: str) -> Iterator[None]:
    """A collapsible group in GitHub Actions logs (split per permutation: dcforge.infra.progress),
    a heading elsewhere."""
    _hub.group_enter(title)
    if not _on_actions():
        with _lock:
            console.rule(title, align="left")
    try:
        yield
    finally:
        _hub.group_exit()


@contextlib.contextmanager
def permutation(name: str) -> Iterator[None]:
    """Tool calls in this block are for permutation ``name`` (on this thread: enter it in
    the function a thread pool runs). In GitHub Actions its group is printed when the block
    ends."""
    with progress.explicit_permutation(name):
        try:
            yield
        finally:
            _hub.permutation_done(name)


def finish() -> None:
    """Stop the terminal's live display; the entry point calls it before it exits."""
    _hub.finish()


def _escape(text: str) -> str:
    return escape(text)
