"""The README's own commands, as a newcomer would copy them: the first indented block of a
section, each line without its trailing ``# comment``; and the documentation as a whole
(README.md + docs/*.md), read by the tests that keep it in step with the code."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = ROOT / "docs"


def commands(section: str, readme: Path = README) -> list[str]:
    """The command lines of the first code block (four-space indented) under ``## section``."""
    text = readme.read_text(encoding="utf-8")
    found = re.search(rf"^## {re.escape(section)}\n(.*?)(?=^## |\Z)", text, re.S | re.M)
    if not found:
        raise LookupError(f"{readme}: no section '## {section}'")
    block: list[str] = []
    for line in found[1].splitlines():
        if line.startswith("    ") and line.strip():
            block.append(re.sub(r"\s+# .*$", "", line[4:]).rstrip())
        elif block:
            break
    if not block:
        raise LookupError(f"{readme}: no indented command block under '## {section}'")
    return block


def pages(root: Path = ROOT) -> list[Path]:
    """Where a claim about dcforge may live: README.md and every page under docs/."""
    return [root / "README.md", *sorted((root / "docs").glob("*.md"))]


def _prose(text: str) -> Iterator[tuple[str, bool]]:
    """Each line of a markdown text, and whether it sits inside a fenced code block."""
    fence = ""
    for line in text.splitlines():
        marker = re.match(r"\s*(```+|~~~+)", line)
        if marker and (not fence or marker[1].startswith(fence)):
            fence = "" if fence else marker[1]
            yield line, True
        else:
            yield line, bool(fence)


HEADING = re.compile(r"(#{1,6}) +(.+?)(?: +#+)? *$")


def headings(text: str) -> list[tuple[int, str]]:
    """The (level, title) of each heading outside code blocks."""
    found = []
    for line, code in _prose(text):
        heading = None if code else HEADING.match(line)
        if heading:
            found.append((len(heading[1]), heading[2]))
    return found


def sections(title: str, paths: list[Path] | None = None) -> list[str]:
    """Every section headed ``title`` (at any level) in README.md and docs/*.md, each up to
    the next heading of its level or above."""
    found = []
    lines: list[str]
    for path in pages() if paths is None else paths:
        level, lines = 0, []  # the section being read: its heading's level, its lines
        for line, code in _prose(path.read_text(encoding="utf-8")):
            heading = None if code else HEADING.match(line)
            if heading and level and len(heading[1]) <= level:
                found.append("\n".join(lines))
                level, lines = 0, []
            if heading and heading[2] == title:
                level = len(heading[1])
            if level:
                lines.append(line)
        if level:
            found.append("\n".join(lines))
    return found


def table_rows(section: str) -> list[list[str]]:
    """The cells of the body rows of every markdown table in ``section`` (``\\|`` inside a
    cell is not a separator; each table's header row is left out)."""
    rows: list[list[str]] = []
    header = True
    for line in section.splitlines():
        if not line.startswith("|"):
            header = True
        elif not line.startswith("|---"):
            if not header:
                rows.append([c.strip() for c in re.split(r"(?<!\\)\|", line.strip().strip("|"))])
            header = False
    return rows


def code_spans(paths: list[Path] | None = None) -> list[tuple[str, str]]:
    """Every inline code span (which may run over a line break) and every line of a code
    block (indented or fenced, without its trailing ``# comment``) in README.md and
    docs/*.md, with the page it is on."""
    found = []
    for path in pages() if paths is None else paths:
        name = str(path.relative_to(path.parents[1] if path.parent.name == "docs" else path.parent))
        paragraph: list[str] = []
        for line, code in [*_prose(path.read_text(encoding="utf-8")), ("", False)]:
            indented = line.startswith("    ") and not paragraph
            if code or indented or not line.strip():
                text = " ".join(paragraph).replace("\\|", "|")
                found += [(name, span) for span in re.findall(r"(?<!`)`([^`]+)`(?!`)", text)]
                paragraph = []
            if code or indented:
                if not line.lstrip().startswith(("```", "~~~")):
                    found.append((name, re.sub(r"\s+# .*$", "", line.strip())))
            elif line.strip():
                paragraph.append(line.strip())
    return found
