"""The README's own commands, as a newcomer would copy them: the first indented block of a
section, each line without its trailing ``# comment``."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


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
