from __future__ import annotations

import json
from pathlib import Path

import pytest

from dcforge.core import permfile
from dcforge.core.errors import ConfigError
from tests.projects import TINY_FAMILY, write_project

BUILTINS = {"base_registry": "localhost:5000/library", "registry": "localhost:5000/test"}


def load(root: Path) -> list[permfile.Permutation]:
    return permfile.load_all(
        root / "permutations", root=root, registry="r.example/x", builtins=BUILTINS
    )


def test_matrix_expands_into_named_permutations(tmp_path: Path) -> None:
    root = write_project(tmp_path)
    perms = load(root)
    assert [p.name for p in perms] == ["tiny-one", "tiny-two"]
    one = perms[0]
    assert one.repository == "r.example/x/tiny"
    assert one.base_ref == "localhost:5000/library/busybox:latest"
    assert dict(one.build_args) == {"GREETING": "hello one"}
    assert one.floating_refs() == ["r.example/x/tiny:one"]
    assert one.smoke == ('grep -q "hello one" /etc/built-greeting',)
    assert one.platforms == ("linux/amd64",)
    assert one.immutable_tag("a" * 40) == "tiny-one-" + "a" * 40


def test_exclude_removes_combinations(tmp_path: Path) -> None:
    family = (
        TINY_FAMILY.replace(
            "matrix:\n  flavor: [one, two]",
            "matrix:\n  flavor: [one, two]\n  v: [1, 2]\nexclude:\n  - {flavor: two, v: 2}",
        )
        .replace('"tiny-{flavor}"', '"tiny-{flavor}-{v}"')
        .replace('["{flavor}"]', '["{flavor}-{v}"]')
    )
    root = write_project(tmp_path, families={"tiny.yaml": family})
    assert [p.name for p in load(root)] == ["tiny-one-1", "tiny-one-2", "tiny-two-1"]


BAD_CASES = {
    "unknown key": (TINY_FAMILY + "colour: red\n", "unknown key 'colour'"),
    "wrong type": (
        TINY_FAMILY.replace("matrix:\n  flavor: [one, two]", "matrix:\n  flavor: one"),
        "field 'matrix.flavor'",
    ),
    "malformed yaml": ("family: [unclosed\n", "malformed YAML"),
    "missing required": (
        TINY_FAMILY.replace('base: "{base_registry}/busybox:latest"\n', ""),
        "'base' is a required property",
    ),
    "unknown template variable": (
        TINY_FAMILY.replace('"hello {flavor}"', '"hello {colour}"'),
        "unknown template variable {colour}",
    ),
    "missing dockerfile": (
        TINY_FAMILY + "dockerfile: Nope.Dockerfile\n",
        "Nope.Dockerfile does not exist",
    ),
    "missing context": (TINY_FAMILY.replace("../images/tiny", "../images/none"), "does not exist"),
    "context outside project": (
        TINY_FAMILY.replace("../images/tiny", "../../.."),
        "outside the project",
    ),
    "path traversal in name": (
        TINY_FAMILY.replace('"tiny-{flavor}"', '"../{flavor}"'),
        "not a valid permutation name",
    ),
    "invalid tag": (TINY_FAMILY.replace('["{flavor}"]', '["bad tag:{flavor}"]'), "not a valid tag"),
    "duplicate names in matrix": (
        TINY_FAMILY.replace('"tiny-{flavor}"', '"tiny"'),
        "duplicate permutation name 'tiny'",
    ),
    "alias bomb": ("a: &a [x, x]\nb: &b [*a, *a]\nc: [*b, *b]\n", "aliases are not allowed"),
    "top level not a mapping": ("- just\n- a list\n", "expected a mapping"),
    "reserved build arg": (
        TINY_FAMILY.replace('GREETING: "hello {flavor}"', "BASE_IMAGE: x"),
        "reserved",
    ),
    "SOURCE_DATE_EPOCH set by hand": (
        TINY_FAMILY.replace('GREETING: "hello {flavor}"', "SOURCE_DATE_EPOCH: 1"),
        "dcforge sets it to the commit's time",
    ),
    "unknown variable in the description": (
        "description: for {nobody}\n" + TINY_FAMILY,
        "field 'description': unknown template variable {nobody}",
    ),
    "literal brace": (
        TINY_FAMILY.replace('"hello {flavor}"', '"hello {"'),
        "field 'build_args.GREETING'",
    ),
}


@pytest.mark.reliability(
    scenario="hostile permutation files (traversal, alias bomb, bad tags, …)",
    checks="one-line ConfigError naming file and field",
)
@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_bad_input_is_one_clear_error_naming_file_and_field(tmp_path: Path, case: str) -> None:
    text, expected = BAD_CASES[case]
    root = write_project(tmp_path, families={"tiny.yaml": text})
    with pytest.raises(ConfigError) as info:
        load(root)
    message = str(info.value)
    assert expected in message
    assert "tiny.yaml" in message or "Nope" in message
    assert "\n" not in message


def test_two_permutations_claiming_one_tag(tmp_path: Path) -> None:
    other = TINY_FAMILY.replace('"tiny-{flavor}"', '"other-{flavor}"').replace(
        "family: tiny", "family: other\nimage: tiny"
    )
    root = write_project(tmp_path, families={"a.yaml": TINY_FAMILY, "b.yaml": other})
    with pytest.raises(ConfigError, match="claimed by both 'tiny-one' and 'other-one'"):
        load(root)


def test_duplicate_name_across_files(tmp_path: Path) -> None:
    other = TINY_FAMILY.replace("family: tiny", "family: other")
    root = write_project(tmp_path, families={"a.yaml": TINY_FAMILY, "b.yaml": other})
    with pytest.raises(ConfigError, match="duplicate permutation name 'tiny-one'"):
        load(root)


@pytest.mark.reliability(scenario="huge permutation file", checks="refused before parsing")
def test_huge_file_is_refused(tmp_path: Path) -> None:
    root = write_project(tmp_path, families={"tiny.yaml": TINY_FAMILY + "#" * 2_000_000 + "\n"})
    with pytest.raises(ConfigError, match="too large"):
        load(root)


def test_select_unknown_permutation(tmp_path: Path) -> None:
    perms = load(write_project(tmp_path))
    assert [p.name for p in permfile.select(perms, ["tiny-two"])] == ["tiny-two"]
    with pytest.raises(ConfigError, match="unknown permutation 'nope'"):
        permfile.select(perms, ["nope"])


def test_shipped_permutations_load() -> None:
    root = Path(__file__).resolve().parents[2]
    perms = permfile.load_all(
        root / "permutations", root=root, registry="localhost:5000/dcforge", builtins=BUILTINS
    )
    names = {p.name for p in perms}
    assert {"base-bookworm", "python-3.11-bookworm", "node-18-bookworm"} <= names
    for p in perms:
        assert p.smoke, p.name
        if p.devcontainer:  # the Dev Containers CLI writes its metadata label
            assert p.test is not None and p.feature_refs() == ["./dev-user"]
            continue
        assert json.loads(p.metadata)[0]["remoteUser"] == "vscode"
