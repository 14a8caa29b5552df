"""Live progress while tools run, so that nothing long looks hung.

:class:`dcforge.infra.runner.Runner` streams every tool's stdout and stderr line by line (each line
redacted before it leaves the runner) into a :class:`Sink`; :mod:`dcforge.infra.log` fronts the one
:class:`Hub` that shows those lines, the ``log.step`` messages and heartbeats in one of three
ways, chosen by ``log.configure`` (the entry point) and the console:

plain (a pipe, a file, a CI that is not GitHub Actions, pytest's capture)
    Lines as before: one per ``log.step``/``log.info``. A tool's own output is printed only
    with ``--verbose``, each line prefixed with the permutation it is for (or the tool's name).
    A call that has shown nothing for :data:`HEARTBEAT` seconds logs
    ``… still running trivy for NAME (1m20s)``, again every :data:`HEARTBEAT` seconds.

terminal (stderr is an interactive terminal, not GitHub Actions)
    The same lines scroll above a ``rich`` live table, started by the first ``log.step`` (or
    the first heartbeat) and stopped by ``log.finish()``: one row per permutation that
    ``log.step`` has named (its latest message, the tool running for it with its latest
    line, the time since the permutation was first seen) and one per running tool call
    that belongs to none. The table is the heartbeat: no heartbeat lines.

GitHub Actions (``log.configure(github_actions=True)``)
    ``::group::`` lines never nest and two permutations' lines never mix inside one group.
    Inside a ``log.group(TITLE)`` block each permutation's step messages and its tools'
    stderr (stdout too with ``--verbose``) go into ``::group::NAME — TITLE``:

    * while only one thread has produced permutation lines in the block (sequential work),
      the permutation's group is open and its lines stream live; the thread moving on to
      the next permutation closes it and opens that one's;
    * once a second thread produces permutation lines (parallel work), the open group is
      closed and from then on every permutation's lines are buffered; each buffer is
      printed as one group when the permutation's explicit ``log.permutation(NAME)`` block
      ends, the rest when the ``log.group`` block ends (in the order first seen; a
      permutation whose lines were already printed in this block gets ``— TITLE
      (continued)``). Tool lines that belong to no permutation are buffered too and printed
      first, as ``::group::TITLE``;
    * ``log.info``/``warn``/``error`` lines and heartbeats are never buffered: in parallel
      work nothing is open, so they go out un-grouped and the log never stays silent for
      more than :data:`HEARTBEAT` seconds; in sequential work they go into the open group.

    Without ``--verbose`` a tool's stderr is held back until the call has run for
    :data:`STREAM_AFTER` seconds (quick probes that expect to fail stay quiet, as before);
    then what was held and everything after it streams. Outside a ``log.group`` block only
    ``--verbose`` streams tool lines; step lines print as before.

Which permutation a tool call is for (no call site says so): the innermost
``log.permutation(NAME)`` block (a :class:`contextvars.ContextVar`: set it on the thread that
runs the work, thread pools do not copy it); else the one known permutation whose name the
argv mentions (``dist/NAME.tar``, ``reports/NAME@linux-arm64.trivy.json``); else the one the
calling thread last named with ``log.step`` (when the thread named several in a row, as a
bake session does for the targets it builds together, the call is for none of them).
``log.group`` forgets the calling thread's last step on the way in and out. A step name is
grouped under its permutation: ``NAME@linux-arm64`` and ``NAME (linux/arm64)`` are ``NAME``.
"""

from __future__ import annotations

import atexit
import contextlib
import re
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Literal, Protocol

from rich.console import RenderableType
from rich.markup import escape
from rich.table import Table

from dcforge.core.action_groups import GithubGroups, Out

HEARTBEAT = 10.0  # seconds a tool call may show nothing before "… still running"
STREAM_AFTER = 2.0  # GitHub Actions, not verbose: a call's stderr streams once it runs this long
MAX_LINE = 2000  # a streamed line is cut to this many characters for display (after redaction)
LIVE_ROWS = 12  # rows of the terminal's live table
REFRESH_PER_SECOND = 4

Stream = Literal["stdout", "stderr"]


class Watch(Protocol):
    """One running tool call, as a :class:`Sink` sees it."""

    def line(self, stream: Stream, text: str) -> bool:
        """One line (redacted, no line end); True when it was shown (resets the heartbeat)."""

    def heartbeat(self, elapsed: float) -> None:
        """The call has shown nothing for a heartbeat interval; it has run ``elapsed`` s."""

    def close(self) -> None:
        """The call is over (finished, failed or timed out)."""


class Sink(Protocol):
    """Where :class:`dcforge.infra.runner.Runner` sends what its tool calls print."""

    def call(self, tool: str, argv: Sequence[str], *, shown: str, verbose: bool) -> Watch:
        """A call starts: ``shown`` is its redacted command line."""


def format_elapsed(seconds: float) -> str:
    """``12s``, ``1m20s``, ``2h05m``."""
    s = max(0, int(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def permutation_key(name: str) -> str:
    """The permutation a step name is about: ``NAME@linux-arm64`` and ``NAME (linux/arm64)``
    (a platform's report stem and verdict) are ``NAME``."""
    return re.split(r"@| \(", name, maxsplit=1)[0].strip() or name


def clip(text: str, limit: int = MAX_LINE) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


class Heartbeat:
    """When a silent call is due a heartbeat. Times are the caller's clock (monotonic
    seconds); an interval of 0 or less never beats."""

    def __init__(self, interval: float, now: float) -> None:
        self.interval = interval
        self._quiet_since = now

    def seen(self, now: float) -> None:
        """Something of the call's was shown at ``now``."""
        self._quiet_since = now

    def wait(self, now: float) -> float:
        """Seconds until the next beat is due (inf when the heartbeat is off)."""
        if self.interval <= 0:
            return float("inf")
        return max(0.0, self._quiet_since + self.interval - now)

    def due(self, now: float) -> bool:
        """True (once) when a beat is due at ``now``; the next is then one interval later."""
        if self.interval <= 0 or now - self._quiet_since < self.interval:
            return False
        self._quiet_since = now
        return True


# ---------------------------------------------------------------------------------------
# Which permutation a tool call is for


_explicit: ContextVar[str | None] = ContextVar("dcforge_permutation", default=None)


@contextlib.contextmanager
def explicit_permutation(name: str) -> Iterator[str]:
    """Tool calls in this block (on this thread or context) are for permutation ``name``."""
    token = _explicit.set(permutation_key(name))
    try:
        yield permutation_key(name)
    finally:
        _explicit.reset(token)


@dataclass
class _ThreadState:
    recent: list[str] = field(default_factory=list)  # names stepped since the last call
    ran: bool = False  # a call started since; the next step starts a new run


class Attribution:
    """The heuristics above. Not thread-safe: the hub calls it under its lock."""

    def __init__(self) -> None:
        self._local = threading.local()
        self._known: dict[str, None] = {}
        self._pattern: re.Pattern[str] | None = None

    def _state(self) -> _ThreadState:
        state: _ThreadState | None = getattr(self._local, "state", None)
        if state is None:
            state = self._local.state = _ThreadState()
        return state

    def stepped(self, key: str) -> None:
        """``log.step`` named ``key`` on this thread."""
        if key not in self._known:
            self._known[key] = None
            self._pattern = None
        state = self._state()
        if state.ran:
            state.recent, state.ran = [key], False
        elif key not in state.recent:
            state.recent.append(key)

    def reset(self) -> None:
        """Forget what this thread last named (a ``log.group`` boundary)."""
        self._local.state = _ThreadState()

    def mentioned(self, argv: Sequence[str]) -> str | None:
        """The one known permutation ``argv`` names (ignoring names inside longer ones)."""
        if not self._known:
            return None
        if self._pattern is None:
            names = sorted(self._known, key=len, reverse=True)
            alternatives = "|".join(re.escape(n) for n in names)
            # Bounded like a word of a path or a ref; "NAME.tar" counts, "NAME.11" does not.
            self._pattern = re.compile(rf"(?<![\w.-])({alternatives})(?![\w-])(?!\.\d)")
        found = {m.group(1) for arg in argv for m in self._pattern.finditer(arg)}
        outer = {n for n in found if not any(n != o and n in o for o in found)}
        return next(iter(outer)) if len(outer) == 1 else None

    def for_call(self, argv: Sequence[str]) -> str | None:
        """The permutation a call starting on this thread is for, or None."""
        explicit = _explicit.get()
        if explicit is not None:
            return explicit
        state = self._state()
        state.ran = True
        found = self.mentioned(argv)
        if found is not None:
            state.recent = [found]  # the thread works on it now
            return found
        return state.recent[0] if len(state.recent) == 1 else None


# ---------------------------------------------------------------------------------------
# The terminal's live table


@dataclass
class _Row:
    key: str
    first: float
    last: float
    stage: str = ""
    line: str = ""


class Board:
    """Rows of the live table; :meth:`render` builds it. The hub calls it under its lock."""

    def __init__(self) -> None:
        self.rows: dict[str, _Row] = {}
        self.calls: dict[int, _Call] = {}

    def _row(self, key: str, now: float) -> _Row:
        row = self.rows.get(key)
        if row is None:
            row = self.rows[key] = _Row(key, now, now)
        row.last = now
        return row

    def step(self, key: str, message: str, now: float) -> None:
        self._row(key, now).stage = message

    def started(self, call: _Call, now: float) -> None:
        self.calls[id(call)] = call
        if call.key is not None:
            self._row(call.key, now).line = ""

    def ended(self, call: _Call, now: float) -> None:
        if self.calls.pop(id(call), None) is not None and call.key is not None:
            self._row(call.key, now)

    def output(self, call: _Call, text: str, now: float) -> None:
        call.last_line = text
        if call.key is not None:
            self._row(call.key, now).line = text

    def render(self, now: float) -> Table:
        running: dict[str, list[_Call]] = {}
        for call in self.calls.values():
            running.setdefault(call.key or "", []).append(call)
        ranked = sorted(self.rows.values(), key=lambda r: (r.key in running, r.last))
        shown = sorted(ranked[-LIVE_ROWS:], key=lambda r: r.first)
        table = Table(box=None, show_edge=False, pad_edge=False, expand=False)
        table.add_column("permutation", style="bold", no_wrap=True)
        table.add_column("stage", no_wrap=True, overflow="ellipsis", max_width=48)
        table.add_column("running", no_wrap=True, overflow="ellipsis")
        table.add_column("elapsed", justify="right", no_wrap=True)
        for row in shown:
            calls = running.get(row.key, [])
            end = now if calls else row.last
            table.add_row(
                escape(row.key),
                escape(row.stage),
                _running(calls, now, row.line),
                format_elapsed(end - row.first),
            )
        for call in running.get("", []):
            table.add_row("[dim]—[/dim]", "", _running([call], now, call.last_line), "")
        hidden = len(self.rows) - len(shown)
        if hidden > 0:
            table.caption = f"… and {hidden} more permutation(s)"
        return table


def _running(calls: Sequence[_Call], now: float, line: str) -> str:
    if not calls:
        return ""
    what = ", ".join(f"{c.tool} {format_elapsed(now - c.started)}" for c in calls)
    return escape(f"{what}  {clip(line, 120)}" if line else what)


# ---------------------------------------------------------------------------------------
# The hub


class LiveDisplay(Protocol):
    def start(self, refresh: bool = False) -> None: ...

    def stop(self) -> None: ...


class _Call:
    """A :class:`Watch` for one tool call, bound to its hub."""

    def __init__(self, hub: Hub, tool: str, key: str | None, verbose: bool, started: float) -> None:
        self.hub = hub
        self.tool = tool
        self.key = key
        self.verbose = verbose
        self.started = started
        self.thread = threading.get_ident()
        self.held: list[str] = []
        self.released = False
        self.last_line = ""

    def line(self, stream: Stream, text: str) -> bool:
        return self.hub._line(self, stream, text)

    def heartbeat(self, elapsed: float) -> None:
        self.hub._heartbeat(self, elapsed)

    def close(self) -> None:
        self.hub._end(self)


class Hub:
    """Everything the console shows, for all threads. ``emit`` prints lines (called under
    ``lock``, in order); ``terminal`` says whether stderr is an interactive terminal;
    ``live`` makes the terminal's live display from a function that renders it."""

    def __init__(
        self,
        emit: Callable[[Sequence[Out]], None],
        *,
        lock: threading.RLock | None = None,
        clock: Callable[[], float] = time.monotonic,
        terminal: Callable[[], bool] = lambda: False,
        live: Callable[[Callable[[], RenderableType]], LiveDisplay] | None = None,
        stream_after: float = STREAM_AFTER,
    ) -> None:
        self.lock = lock if lock is not None else threading.RLock()
        self.actions = False
        self.stream_after = stream_after
        self._emit = emit
        self._clock = clock
        self._terminal = terminal
        self._make_live = live
        self._live: LiveDisplay | None = None
        self._atexit = False
        self._rendered: RenderableType = ""
        self.attribution = Attribution()
        self.groups = GithubGroups()
        self.board = Board()

    def mode(self) -> Literal["actions", "terminal", "plain"]:
        if self.actions:
            return "actions"
        return "terminal" if self._terminal() and self._make_live is not None else "plain"

    # -- what log.* says --------------------------------------------------------------

    def info(self, out: Out) -> None:
        with self.lock:
            if self.mode() == "actions":
                self._emit(self.groups.loose_line(out, tool=False))
            else:
                self._emit([out])

    def step(self, name: str, message: str) -> None:
        key = permutation_key(name)
        out: Out = ("markup", f"[bold]{escape(name)}[/bold] {escape(message)}")
        with self.lock:
            self.attribution.stepped(key)
            mode = self.mode()
            if mode == "actions":
                self._emit(self.groups.permutation_line(key, out, threading.get_ident()))
                return
            if mode == "terminal":
                self.board.step(key, message, self._clock())
                self._start_live()
            self._emit([out])

    def group_enter(self, title: str) -> None:
        with self.lock:
            self.attribution.reset()
            if self.mode() == "actions":
                self._emit(self.groups.enter(title))

    def group_exit(self) -> None:
        with self.lock:
            self.attribution.reset()
            if self.mode() == "actions":
                self._emit(self.groups.exit())

    def permutation_done(self, name: str) -> None:
        with self.lock:
            if self.mode() == "actions":
                self._emit(self.groups.permutation_done(permutation_key(name)))

    def finish(self) -> None:
        """Stop the live display (the last lines stay above it); idempotent."""
        with self.lock:
            live, self._live = self._live, None
            if live is not None:
                live.stop()

    # -- the Sink ---------------------------------------------------------------------

    def call(self, tool: str, argv: Sequence[str], *, shown: str, verbose: bool) -> Watch:
        with self.lock:
            call = _Call(self, tool, self.attribution.for_call(argv), verbose, self._clock())
            mode = self.mode()
            if mode == "terminal":
                self.board.started(call, call.started)
            if verbose:
                echo: Out = ("plain", f"+ {shown}")
                if mode == "actions":
                    self._emit(self._actions_tool_line(call, echo))
                else:
                    self._emit([echo])
        return call

    def _line(self, call: _Call, stream: Stream, text: str) -> bool:
        text = clip(text)
        with self.lock:
            mode = self.mode()
            if mode == "terminal":
                self.board.output(call, text, self._clock())
                if call.verbose:
                    self._emit([("tool", f"{call.key or call.tool} | {text}")])
                return True
            if mode == "plain":
                if call.verbose:
                    self._emit([("tool", f"{call.key or call.tool} | {text}")])
                return call.verbose
            if not call.verbose:
                if stream != "stderr":
                    return False
                if not call.released:
                    if self._clock() - call.started < self.stream_after:
                        call.held.append(text)
                        return False
                    return self._release(call, text)
            out = self._actions_tool_line(call, ("tool", f"{call.tool} | {text}"))
            self._emit(out)
            return bool(out)

    def _release(self, call: _Call, text: str | None = None) -> bool:
        """Stream what a call held back (and ``text``): it has run long enough."""
        call.released = True
        lines = [*call.held, *([text] if text is not None else [])]
        call.held.clear()
        out = [
            o for t in lines for o in self._actions_tool_line(call, ("tool", f"{call.tool} | {t}"))
        ]
        self._emit(out)
        return bool(out)

    def _actions_tool_line(self, call: _Call, line: Out) -> list[Out]:
        if self.groups.block is None:
            if not call.verbose:
                return []
            kind, text = line
            return [(kind, f"{call.key} | {text}" if call.key and kind == "tool" else text)]
        if call.key is None:
            return self.groups.loose_line(line, tool=True)
        return self.groups.permutation_line(call.key, line, call.thread)

    def _heartbeat(self, call: _Call, elapsed: float) -> None:
        with self.lock:
            mode = self.mode()
            if mode == "terminal":
                self._start_live()
                return
            if mode == "actions" and not call.verbose and not call.released:
                self._release(call)
            on = f" for {call.key}" if call.key else ""
            out: Out = ("plain", f"… still running {call.tool}{on} ({format_elapsed(elapsed)})")
            if mode == "actions":
                self._emit(self.groups.loose_line(out, tool=False))
            else:
                self._emit([out])

    def _end(self, call: _Call) -> None:
        with self.lock:
            call.held.clear()  # a quick call's output stays unshown, as before
            self.board.ended(call, self._clock())

    # -- the terminal's live display ----------------------------------------------------

    def _start_live(self) -> None:
        if self._live is not None or self._make_live is None:
            return
        self._live = self._make_live(self.render)
        if not self._atexit:
            self._atexit = True
            atexit.register(self.finish)
        self._live.start(refresh=True)

    def render(self) -> RenderableType:
        """The live table (called by the display's refresh thread). Never waits for the
        lock: a thread holding it may be printing, which waits for the display."""
        if self.lock.acquire(blocking=False):
            try:
                self._rendered = self.board.render(self._clock())
            finally:
                self.lock.release()
        return self._rendered
