"""GitHub Actions' log groups (pure): one ``::group::`` per permutation, never nested, never
interleaved — the state machine :mod:`dcforge.infra.progress` describes, fed under the hub's
lock; every method returns the lines to print now, in order."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Kind = Literal["raw", "markup", "plain", "tool"]
# One line of output: "raw" is written as is (::group:: and friends), "markup" is rich markup,
# "plain" is printed without markup, "tool" is a tool's line (no markup, no emoji codes).
Out = tuple[Kind, str]


def _raw(text: str) -> Out:
    return ("raw", text)


@dataclass
class _Block:
    title: str
    mode: Literal["title", "live", "buffered"] = "title"
    title_open: bool = False  # "title": ::group::TITLE is open
    live: str | None = None  # "live": the permutation whose group is open
    live_thread: int | None = None
    buffers: dict[str, list[Out]] = field(default_factory=dict)
    loose: list[Out] = field(default_factory=list)  # buffered tool lines of no permutation
    printed: set[str] = field(default_factory=set)  # permutations whose group was printed


class GithubGroups:
    """The ``::group::`` state machine of the module docstring: every method returns the
    lines to print now, in order. Pure; the hub calls it under its lock."""

    def __init__(self) -> None:
        self.block: _Block | None = None
        self._nested = 0

    @staticmethod
    def _group(key: str, b: _Block) -> Out:
        again = " (continued)" if key in b.printed else ""
        b.printed.add(key)
        return _raw(f"::group::{key} — {b.title}{again}")

    def enter(self, title: str) -> list[Out]:
        if self.block is not None:  # a group inside a group: a heading line, no nesting
            self._nested += 1
            return [("plain", f"— {title}")]
        self.block = _Block(title)
        return []

    def exit(self) -> list[Out]:
        if self._nested:
            self._nested -= 1
            return []
        b, self.block = self.block, None
        if b is None:
            return []
        out: list[Out] = []
        if b.title_open or b.mode == "live":
            out.append(_raw("::endgroup::"))
        if b.loose:
            out += [_raw(f"::group::{b.title}"), *b.loose, _raw("::endgroup::")]
        for key, lines in b.buffers.items():
            out += [self._group(key, b), *lines, _raw("::endgroup::")]
        return out

    def permutation_line(self, key: str, line: Out, thread: int) -> list[Out]:
        """A step message or tool line of permutation ``key``, from work on ``thread``."""
        b = self.block
        if b is None:
            return [line]
        if key in b.buffers or b.mode == "buffered":
            b.buffers.setdefault(key, []).append(line)
            return []
        if b.mode == "live" and key == b.live:
            return [line]
        if b.mode == "title":
            out = [_raw("::endgroup::")] if b.title_open else []
            b.mode, b.title_open, b.live, b.live_thread = "live", False, key, thread
            return [*out, self._group(key, b), line]
        if thread == b.live_thread:  # the same thread moved on: sequential work
            b.live = key
            return [_raw("::endgroup::"), self._group(key, b), line]
        # A second thread: parallel work. Close the live group, buffer from now on.
        b.mode, b.live, b.live_thread = "buffered", None, None
        b.buffers[key] = [line]
        return [_raw("::endgroup::")]

    def loose_line(self, line: Out, *, tool: bool) -> list[Out]:
        """A line of no permutation: a tool's (``tool``) is buffered in parallel work; an
        info line or heartbeat never is."""
        b = self.block
        if b is None or b.mode == "live":
            return [line]
        if b.mode == "buffered":
            if tool:
                b.loose.append(line)
                return []
            return [line]
        if not b.title_open:
            b.title_open = True
            return [_raw(f"::group::{b.title}"), line]
        return [line]

    def permutation_done(self, key: str) -> list[Out]:
        """An explicit ``log.permutation(key)`` block ended: print its group now."""
        b = self.block
        if b is None:
            return []
        if b.mode == "live" and b.live == key:
            b.mode, b.live, b.live_thread = "title", None, None
            return [_raw("::endgroup::")]
        lines = b.buffers.pop(key, None)
        if not lines:
            return []
        return [self._group(key, b), *lines, _raw("::endgroup::")]
