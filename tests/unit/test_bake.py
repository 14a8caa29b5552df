"""Bake targets (pure): how targets split over bake sessions, and what a refresh asks of
buildx."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from dcforge.core import bake


def target(name: str) -> bake.Target:
    return bake.Target(
        name=name,
        context=Path("."),
        dockerfile=Path("Dockerfile"),
        args={},
        platforms=("linux/amd64",),
        tags=[],
        labels={},
        output_tar=Path(f"{name}.tar"),
    )


@pytest.mark.parametrize(
    ("n", "sessions", "expected"), [(5, 1, 1), (5, 2, 2), (2, 8, 2), (0, 3, 1)]
)
def test_targets_split_over_at_most_the_asked_sessions(
    n: int, sessions: int, expected: int
) -> None:
    targets = [target(f"p{i}") for i in range(n)]
    groups = bake.groups(targets, sessions)
    assert len(groups) == expected
    assert sorted(t.name for g in groups for t in g) == sorted(t.name for t in targets)


def test_a_refreshed_target_is_built_with_no_cache_at_all() -> None:
    """A refresh exists because the cached apt-get layer hands back the vulnerable package:
    no cache import, every step rebuilt, the base pulled again."""
    plain = replace(target("a"), cache_from=["type=gha,scope=main-a"])
    refreshed = replace(target("b"), cache_from=["type=gha,scope=main-b"], no_cache=True)
    definition = bake.bake_definition([plain, refreshed])["target"]
    assert "no-cache" not in definition["a"] and definition["a"]["cache-from"] != []
    assert definition["b"]["no-cache"] is True and definition["b"]["pull"] is True
    assert definition["b"]["cache-from"] == []
