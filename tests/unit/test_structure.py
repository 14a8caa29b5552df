"""The layering, checked on the source: data flows build → gate → publish → rollback, and
imports go down — cli → stages → infra → core. No stage imports another; registry work
goes through the one client."""

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


# Each layer and what it may import (besides itself); the package's top holds no modules
# but ``__init__`` and ``__main__``.
LAYERS: dict[str, tuple[str, ...]] = {
    "core": (),
    "infra": ("core",),
    "stages": ("core", "infra"),
    "cli": ("core", "infra", "stages"),
}
MODULES = sorted(SRC.rglob("*.py"))


def _layer(path: Path) -> str:
    parts = path.relative_to(SRC).parts
    return parts[0] if len(parts) > 1 else ""


def test_every_module_lives_in_a_layer() -> None:
    loose = [
        p.name for p in MODULES if not _layer(p) and p.name not in ("__init__.py", "__main__.py")
    ]
    assert not loose, f"modules outside core/, infra/, stages/, cli/: {loose}"
    assert {_layer(p) for p in MODULES} - {""} == set(LAYERS)


@pytest.mark.parametrize(
    "path", [p for p in MODULES if _layer(p)], ids=lambda p: str(p.relative_to(SRC))
)
def test_imports_go_down_the_layers(path: Path) -> None:
    """core imports only core (pure logic, no processes); infra never reaches up into a
    stage or the CLI; stages never into the CLI."""
    layer = _layer(path)
    allowed = {layer, *LAYERS[layer]}
    wrong = sorted(
        m
        for m in imported_modules(path)
        if m.startswith("dcforge.") and m.split(".")[1] not in allowed | {"resources"}
    )
    assert not wrong, f"{path.relative_to(SRC)} ({layer}) imports {wrong}"


def test_main_is_only_the_entry_point() -> None:
    """``python -m dcforge`` calls :func:`dcforge.cli.main.main`; nothing else lives there."""
    tree = ast.parse((SRC / "__main__.py").read_text())
    defined = [n for n in tree.body if isinstance(n, ast.FunctionDef | ast.ClassDef)]
    assert not defined
    assert "dcforge.cli.main.main" in imported_modules(SRC / "__main__.py")


MAX_MODULE_LINES = 600
MAX_STAGE_LINES = 500


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(SRC)))
def test_no_module_carries_too_much(path: Path) -> None:
    """A module a reader holds in their head: none over 600 lines, no stage over 500."""
    limit = MAX_STAGE_LINES if _layer(path) == "stages" else MAX_MODULE_LINES
    lines = len(path.read_text().splitlines())
    assert lines <= limit, f"{path.relative_to(SRC)}: {lines} lines (at most {limit}): split it"


@pytest.mark.parametrize("path", STAGES, ids=lambda p: p.name)
def test_no_stage_imports_another_stage(path: Path) -> None:
    stage_names = {p.stem for p in STAGES} - {"__init__"}
    stages = {f"dcforge.stages.{name}" for name in stage_names}
    wrong = sorted(m for m in imported_modules(path) if m in stages)
    assert not wrong, f"{path.name} imports stage module(s) {wrong}: move shared code down"


@pytest.mark.parametrize(
    "path",
    [p for p in MODULES if "tools" not in p.relative_to(SRC).parts],
    ids=lambda p: str(p.relative_to(SRC)),
)
def test_registry_work_goes_through_the_client(path: Path) -> None:
    """No oras/skopeo argv and no hand-passed plain_http outside dcforge.infra.tools."""
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

    from dcforge.core import toolpins

    pyproject = tomllib.loads((SRC.parents[1] / "pyproject.toml").read_text())
    imported = set()
    for path in SRC.rglob("*.py"):
        imported |= {m.split(".")[0] for m in imported_modules(path)}
    for spec in pyproject["project"]["dependencies"]:
        name = Requirement(spec).name.lower()
        if name in toolpins.WHEELS.values():
            continue  # ships a binary dcforge runs (and checks against its pin)
        assert IMPORT_NAMES.get(name, name.replace("-", "_")) in imported, name


# Unit test modules about a concern that spans modules, not one module.
TOPICS = {
    "cli",  # the command line end to end: parser, dispatch, errors, help
    "structure",  # this file
    "readme",  # README and docs against the code
    "hostile",  # hostile inputs across the file formats
    "multiplatform",  # one index, several platforms, through every stage
    "rehearsal_expressions",  # tests/integration/actions_runner.py's expressions
    "bench_report",  # benchmarks/bench_report.py: medians of repeated runs, the table
    "rehearsal_calls",  # its reusable workflow calls, permissions and id-token endpoint
}


def test_unit_test_modules_are_named_after_what_they_test() -> None:
    """``tests/unit/test_X.py`` tests module X (in any layer), or a topic listed above."""
    modules = {p.stem for p in MODULES}
    tests = {
        p.stem.removeprefix("test_") for p in (SRC.parents[1] / "tests/unit").glob("test_*.py")
    }
    unknown = sorted(tests - modules - TOPICS)
    assert not unknown, f"unit test modules named after no module: {unknown} — rename them"


# What a command binds once (infra/context.py makes each on first use); tests and the
# benchmark may build their own.
BOUND_ONCE = {"Registry", "Releases", "Engine", "Cosign"}


@pytest.mark.parametrize(
    "path", [p for p in MODULES if p.name != "context.py"], ids=lambda p: str(p.relative_to(SRC))
)
def test_only_the_context_opens_clients(path: Path) -> None:
    """No module builds its own registry client, release store, cosign or Docker engine:
    the command's context holds one of each, and every stage is handed it."""
    made = [
        f"{path.relative_to(SRC)}:{node.lineno} {name}(...)"
        for node in ast.walk(ast.parse(path.read_text(), str(path)))
        if isinstance(node, ast.Call)
        and (name := getattr(node.func, "id", getattr(node.func, "attr", ""))) in BOUND_ONCE
    ]
    assert not made, f"use the command's context instead: {made}"
