from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import pytest

from dcforge.core import permfile
from dcforge.core.errors import ConfigError
from dcforge.core.hashing import input_hash
from tests.projects import write_project

BUILTINS = {"base_registry": "localhost:5000/library", "registry": "r"}
D1 = "sha256:" + "1" * 64
D2 = "sha256:" + "2" * 64


def perms(root: Path) -> dict[str, permfile.Permutation]:
    loaded = permfile.load_all(root / "permutations", root=root, registry="r", builtins=BUILTINS)
    return {p.name: p for p in loaded}


def test_hash_is_stable_and_sensitive_to_each_input(tmp_path: Path) -> None:
    root = write_project(tmp_path)
    p = perms(root)
    one, two = p["tiny-one"], p["tiny-two"]
    assert input_hash(one, D1) == input_hash(perms(root)["tiny-one"], D1)
    assert input_hash(one, D1) != input_hash(two, D1)  # build args differ
    assert input_hash(one, D1) != input_hash(one, D2)  # base digest moved
    before = input_hash(one, D1)
    (root / "images/tiny/greeting.txt").write_text("changed\n")
    assert input_hash(one, D1) != before  # context file
    before = input_hash(one, D1)
    (root / "images/tiny/Dockerfile").write_text("FROM scratch\n")
    assert input_hash(one, D1) != before  # Dockerfile


@pytest.mark.reliability(scenario="symlink out of a build context", checks="refused by name")
def test_symlink_out_of_context_is_refused(tmp_path: Path) -> None:
    root = write_project(tmp_path)
    (tmp_path / "secret").write_text("x")
    os.symlink(tmp_path / "secret", root / "images/tiny/leak")
    with pytest.raises(ConfigError, match="symlink points outside the build context"):
        input_hash(perms(root)["tiny-one"], D1)


def test_the_labels_a_permutation_sets_are_inputs(tmp_path: Path) -> None:
    """A new description or licenses label is a new image: --since must not reuse the old
    one (the commit the labels name is not an input: a reused image keeps its own)."""
    one = perms(write_project(tmp_path))["tiny-one"]
    before = input_hash(one, D1)
    assert input_hash(replace(one, description="Tiny."), D1) != before
    assert input_hash(replace(one, licenses="MIT"), D1) != before
    assert input_hash(replace(one, licenses="MIT"), D1) != input_hash(
        replace(one, description="MIT"), D1
    )
