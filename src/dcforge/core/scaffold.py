"""What ``dcforge init`` writes: an images repository, planned as data.

The templates are package data under ``resources/scaffold/`` (read with importlib.resources,
so an installed wheel has them); the Trivy configuration is dcforge's own
``resources/trivy.yaml``. A template's path is its target's, spelt so that packaging keeps
it: a ``dot-`` prefix stands for a leading dot (``dot-github/`` → ``.github/``) and a
``.tmpl`` suffix is dropped (``noxfile.py.tmpl`` → ``noxfile.py``: a ``.py`` file under
``src/`` would be linted, type-checked and counted as a module of the package). In a
template, ``@NAME@`` is replaced by :func:`values`'s ``NAME``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path, PurePosixPath

TEMPLATES = "scaffold"
PLACEHOLDER = re.compile(r"@([A-Z][A-Z_]*)@")
EXECUTABLE = (".sh",)  # written 0755: a Feature's install.sh, an image test

# dcforge's reusable workflow, as the scaffold's workflow calls it. The owner and the ref
# are the adopter's to fill in (the repository they use, a commit SHA of it): the scaffold
# writes these placeholders and the workflow's header says to replace them.
WORKFLOW_OWNER = "DCFORGE-OWNER"
WORKFLOW_REF = "DCFORGE-REF"
WORKFLOW_FILE = "images.yml"
# What an adopter fills in, as an example: `nox -s lint` lints the scaffold's workflow
# rendered with these (a made-up owner, a commit SHA), as an adopter's would read.
EXAMPLE_WORKFLOW_CALL = {
    "DCFORGE_WORKFLOW_OWNER": "example-owner",
    "DCFORGE_WORKFLOW_REF": "0123456789abcdef0123456789abcdef01234567",
}


@dataclass(frozen=True)
class ScaffoldFile:
    """One file ``init`` writes: its path under the target (POSIX), content and mode."""

    path: str
    content: bytes
    mode: int = 0o644


def target_path(template: str) -> str:
    """The path a template at ``template`` (relative, POSIX) is written to."""
    parts = PurePosixPath(template.removesuffix(".tmpl")).parts
    return "/".join(f".{p.removeprefix('dot-')}" if p.startswith("dot-") else p for p in parts)


def values(version: str) -> dict[str, str]:
    """The placeholders' values for dcforge ``version`` (``unknown``: an uninstalled tree,
    whose scaffold then asks for dcforge unpinned)."""
    return {
        "DCFORGE_REQUIREMENT": "dcforge" if version == "unknown" else f"dcforge=={version}",
        "DCFORGE_WORKFLOW_OWNER": WORKFLOW_OWNER,
        "DCFORGE_WORKFLOW_REF": WORKFLOW_REF,
        "DCFORGE_WORKFLOW": WORKFLOW_FILE,
    }


def render(text: str, known: Mapping[str, str], where: str = "") -> str:
    """``text`` with each ``@NAME@`` replaced; a name without a value is a bug."""

    def value(found: re.Match[str]) -> str:
        if found[1] not in known:
            raise KeyError(f"{where}: no value for the placeholder {found[0]}")
        return known[found[1]]

    return PLACEHOLDER.sub(value, text)


def _templates(folder: Traversable, prefix: str = "") -> Iterator[tuple[str, Traversable]]:
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        name = f"{prefix}{entry.name}"
        if entry.is_dir():
            if entry.name != "__pycache__":
                yield from _templates(entry, f"{name}/")
        else:
            yield name, entry


def plan(version: str, filled: Mapping[str, str] | None = None) -> list[ScaffoldFile]:
    """Every file of the scaffold, in path order (``filled``: placeholders given values other
    than :func:`values`'s, e.g. :data:`EXAMPLE_WORKFLOW_CALL`)."""
    known = {**values(version), **(filled or {})}
    package = resources.files("dcforge.resources")
    made = [
        ScaffoldFile(
            path=target_path(name),
            content=render(entry.read_text(encoding="utf-8"), known, name).encode(),
            mode=0o755 if name.endswith(EXECUTABLE) else 0o644,
        )
        for name, entry in _templates(package / TEMPLATES)
    ]
    made.append(ScaffoldFile("trivy.yaml", package.joinpath("trivy.yaml").read_bytes()))
    return sorted(made, key=lambda f: f.path)


def existing(root: Path, files: Sequence[ScaffoldFile]) -> list[str]:
    """The planned paths something already occupies under ``root`` (a file, a link, a
    folder), in plan order."""
    return [f.path for f in files if os.path.lexists(root / f.path)]


def blocked(root: Path, files: Sequence[ScaffoldFile]) -> list[str]:
    """What even ``--force`` will not replace: a folder where a file goes, or a file or link
    where a folder goes (writing through a link could land outside ``root``)."""
    found: dict[str, None] = {}
    for f in files:
        target = root / f.path
        if target.is_dir() and not target.is_symlink():
            found[f"{f.path} (a folder)"] = None
        for parent in PurePosixPath(f.path).parents:
            if str(parent) == ".":
                continue
            here = root / parent
            if here.is_symlink() or (os.path.lexists(here) and not here.is_dir()):
                found[f"{parent} (not a folder)"] = None
    return list(found)
