"""README.md and docs/ against the code and each other. The README's commands are the ones
CI runs: .ci/run is the README's "## Tests" block (with ``nox -s lint`` before the tests),
and the quick start is what the clean-room test runs. The README stays short (the depth is
in docs/); every relative link leads to a file (and heading) that exists; every repository
path and dcforge module a page names exists; the docs index lists every page."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from tests.readme import (
    DOCS,
    README,
    code_spans,
    commands,
    headings,
    pages,
    sections,
    table_rows,
)

ROOT = Path(__file__).resolve().parents[2]


def _script_lines(path: Path) -> list[str]:
    return [
        line
        for line in path.read_text().splitlines()
        if line.strip() and not line.startswith(("#", "set ", "cd "))
    ]


def test_ci_runs_the_readmes_test_command_verbatim() -> None:
    tests = commands("Tests")
    assert tests[-1] == "nox -s tests"
    assert _script_lines(ROOT / ".ci/run") == [*tests[:-1], "nox -s lint", tests[-1]]


def test_the_quick_start_installs_nox_as_the_tests_do_and_runs_the_main_job() -> None:
    quick, tests = commands("Quick start"), commands("Tests")
    assert quick[-1] == "nox" and quick[:-1] == tests[:-1]


def test_a_command_block_is_read_without_its_comments(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text("# x\n\n## Quick start\n\ntext\n\n    a b  # say\n    c\n\nmore\n\n    d\n")
    assert commands("Quick start", readme) == ["a b", "c"]
    assert README.is_file()


# --- README.md and docs/ hold together -----------------------------------------------------

README_MAX_LINES = 250
# [text](target) outside code spans; a target may carry a "title" after a space.
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)|!\[[^\]]*\]\(([^)\s]+)\)")


def links(path: Path) -> list[str]:
    """The link targets of a markdown page, code spans and code blocks left out."""
    text = re.sub(r"^( {4}|\t).*$", "", path.read_text(encoding="utf-8"), flags=re.M)
    text = re.sub(r"^(```|~~~).*?^\1", "", text, flags=re.M | re.S)
    text = re.sub(r"`[^`\n]*`", "", text)
    found = [a or b for a, b in LINK.findall(text)]
    found += re.findall(r"^\[[^\]]+\]:\s*(\S+)", text, flags=re.M)
    return found


def slug(title: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", title.replace("`", "").strip().lower()).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    found = set()
    for _, title in headings(path.read_text(encoding="utf-8")):
        base = slug(title)
        found.add(f"{base}-{seen[base]}" if base in seen else base)
        seen[base] = seen.get(base, 0) + 1
    return found


def broken_links(path: Path, root: Path = ROOT) -> list[str]:
    """Each relative link of ``path`` that leads to no file under ``root``, or to a heading
    its page does not have."""
    broken = []
    for target in links(path):
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # https:, mailto:: not a file here
            continue
        file, _, anchor = target.partition("#")
        dest = (path.parent / file).resolve() if file else path
        if not dest.is_relative_to(root.resolve()):
            broken.append(f"{target}: outside the repository")
        elif not dest.exists():
            broken.append(f"{target}: no such file")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            broken.append(f"{target}: no heading '#{anchor}' in {dest.name}")
    return broken


def test_the_readme_is_short() -> None:
    lines = len(README.read_text(encoding="utf-8").splitlines())
    assert lines <= README_MAX_LINES, f"README.md: {lines} lines; move depth into docs/"


@pytest.mark.parametrize("page", pages(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_leads_somewhere(page: Path) -> None:
    assert not broken_links(page)


def test_the_docs_index_lists_every_page() -> None:
    index = DOCS / "README.md"
    linked = {(DOCS / t.partition("#")[0]).resolve() for t in links(index)}
    unlisted = [p.name for p in pages()[1:] if p != index and p.resolve() not in linked]
    assert not unlisted, f"docs/README.md does not link {unlisted}"
    assert index.resolve() in {(ROOT / t.partition("#")[0]).resolve() for t in links(README)}


def test_a_broken_link_or_anchor_is_found(tmp_path: Path) -> None:
    (tmp_path / "a.md").write_text("# A page\n\n## Its `part`\n")
    page = tmp_path / "b.md"
    page.write_text(
        "[ok](a.md) [ok](a.md#its-part) [gone](c.md) [bad](a.md#nope) [self](#b)\n"
        "`[code](x.md)` [web](https://example.com)\n\n    [indented](y.md)\n\n# B\n"
    )
    assert sorted(links(page)) == sorted(
        ["a.md", "a.md#its-part", "c.md", "a.md#nope", "#b", "https://example.com"]
    )
    assert [b.split(":")[0] for b in broken_links(page, tmp_path)] == ["c.md", "a.md#nope"]
    assert broken_links(page, tmp_path / "elsewhere")[0].endswith("outside the repository")


def test_sections_tables_and_code_spans_are_read_as_markdown(tmp_path: Path) -> None:
    page = tmp_path / "docs" / "p.md"
    page.parent.mkdir()
    page.write_text(
        "# Exit codes\n\n| code | meaning |\n|---|---|\n| 0 | `ok` |\n\n```yaml\n# not a heading\n"
        "```\n\n## Part\n\nrun `nox -s gate\n-- --self-test` or\n\n    invoke gate  # comment\n\n"
        "# Other\n\n| a | b |\n|---|---|\n| `x \\| y` | z |\n"
    )
    found = sections("Exit codes", [page])
    assert len(found) == 1 and "# not a heading" in found[0] and "## Part" in found[0]
    assert "Other" not in found[0]
    assert table_rows(found[0]) == [["0", "`ok`"]]
    assert sections("Part", [page])[0].splitlines()[0] == "## Part"
    assert [s for _, s in code_spans([page])] == [
        "ok", "# not a heading", "nox -s gate -- --self-test", "invoke gate", "x | y"
    ]  # fmt: skip


# A repository path (src/…, tests/…, …) or a dotted module (dcforge.infra.runner.TOOL_ENV)
# in a code span or code line of README.md or docs/.
REPO_PATH = re.compile(
    r"(?<![\w./<-])(?:src|tests|scripts|requirements|benchmarks|images|permutations|\.github|\.ci)"
    r"/[\w./-]*[\w/](?![\w./:-])"  # not a file named in an error message ("x.yaml: …")
)
MODULE = re.compile(r"(?<![\w.-])dcforge(?:\.\w+)+")


def _defines(module: Path, name: str) -> bool:
    tree = ast.parse(module.read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            names = [node.name]
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names = [t.id for t in targets if isinstance(t, ast.Name)]
        else:
            continue
        if name in names:
            return True
    return False


def missing_names(text: str, root: Path = ROOT) -> list[str]:
    """The repository paths and dcforge modules (or their names) ``text`` mentions that do
    not exist; a bare ``test_x.py`` may be any test module."""
    missing = [p for p in REPO_PATH.findall(text) if not (root / p).exists()]
    tests = {p.name for p in (root / "tests").rglob("test_*.py")}
    missing += [t for t in re.findall(r"(?<![\w/])test_\w+\.py", text) if t not in tests]
    for dotted in MODULE.findall(text):
        path, parts = root / "src" / "dcforge", dotted.split(".")[1:]
        while parts and (path / parts[0]).is_dir():
            path = path / parts.pop(0)
        if parts and (path / f"{parts[0]}.py").is_file():
            module = path / f"{parts.pop(0)}.py"
        else:
            module = path / "__init__.py"
        if not module.is_file() or len(parts) > 1 or (parts and not _defines(module, parts[0])):
            missing.append(dotted)
    return missing


def test_every_path_and_module_the_docs_name_exists() -> None:
    wrong = [f"{page}: {name}" for page, text in code_spans() for name in missing_names(text)]
    assert not wrong, "named in the documentation but not in the repository: " + ", ".join(wrong)


def test_a_stale_path_or_module_is_found() -> None:
    assert missing_names("src/dcforge/core/settings.py tests/unit/ test_readme.py") == []
    assert missing_names("dcforge.infra.runner.TOOL_ENV dcforge.core.errors dcforge.cli") == []
    assert missing_names("src/dcforge/settings.py test_nothing.py dcforge.releases") == [
        "src/dcforge/settings.py", "test_nothing.py", "dcforge.releases"
    ]  # fmt: skip
    assert missing_names("dcforge.infra.runner.NO_SUCH dcforge.core.errors.ConfigError.x") == [
        "dcforge.infra.runner.NO_SUCH", "dcforge.core.errors.ConfigError.x"
    ]  # fmt: skip


def _layer_table() -> set[str]:
    """``layer/module`` for every module docs/architecture.md's table of layers names."""
    named, layer = set(), ""
    rows = [row for section in sections("Where each layer lives") for row in table_rows(section)]
    assert rows, "docs/architecture.md should hold the table of layers"
    for row in rows:
        layer = next(iter(re.findall(r"`src/dcforge/(\w+)/`", row[0])), layer)
        tools = "tools/" if "`tools/`" in row[1] else ""
        for name in re.findall(r"`(\w+)`", re.sub(r"\([^)]*\)", "", row[1])):
            named.add(f"{layer}/{tools}{name}")
    return named


def test_the_layer_table_names_every_module_where_it_lives() -> None:
    """docs/architecture.md's table of layers names each module of the package, in its
    layer, and nothing that isn't one."""
    src = ROOT / "src" / "dcforge"
    modules = {
        str(p.relative_to(src).with_suffix(""))
        for p in src.glob("*/**/*.py")
        if p.name != "__init__.py"
    }
    named = _layer_table() - {"infra/tools/tools"}
    assert not named - modules, f"named in docs/architecture.md, not there: {named - modules}"
    assert not modules - named, f"missing from docs/architecture.md: {modules - named}"
