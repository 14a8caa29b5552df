"""Build planning (pure parts): FROM by digest, and how targets split over bake sessions."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from dcforge.core import settings
from dcforge.core.errors import ConfigError
from dcforge.core.refs import at_digest
from dcforge.infra.tools import buildx
from dcforge.stages import build
from tests.projects import write_project

D = "sha256:" + "d" * 64


@pytest.mark.parametrize(
    ("ref", "expected"),
    [
        ("localhost:5000/library/debian:bookworm", f"localhost:5000/library/debian@{D}"),
        ("localhost:5000/library/debian", f"localhost:5000/library/debian@{D}"),
        (f"ghcr.io/o/base:1@sha256:{'e' * 64}", f"ghcr.io/o/base@{D}"),
        ("busybox:latest", f"busybox@{D}"),
    ],
)
def test_the_build_is_from_the_resolved_digest_never_the_tag(ref: str, expected: str) -> None:
    assert at_digest(ref, D) == expected


def target(name: str) -> buildx.Target:
    return buildx.Target(
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
    groups = build._groups(targets, sessions)
    assert len(groups) == expected
    assert sorted(t.name for g in groups for t in g) == sorted(t.name for t in targets)


def test_a_refreshed_target_is_built_with_no_cache_at_all() -> None:
    """A refresh exists because the cached apt-get layer hands back the vulnerable package:
    no cache import, every step rebuilt, the base pulled again."""
    plain = replace(target("a"), cache_from=["type=gha,scope=main-a"])
    refreshed = replace(target("b"), cache_from=["type=gha,scope=main-b"], no_cache=True)
    definition = buildx.bake_definition([plain, refreshed])["target"]
    assert "no-cache" not in definition["a"] and definition["a"]["cache-from"] != []
    assert definition["b"]["no-cache"] is True and definition["b"]["pull"] is True
    assert definition["b"]["cache-from"] == []


def test_refresh_names_are_checked_and_shared_out_to_the_jobs_that_build_them(
    tmp_path: Path,
) -> None:
    root = write_project(tmp_path / "p")
    conf = settings.load(root, {})
    perms = build.load_permutations(conf)
    one = [p for p in perms if p.name == "tiny-one"]
    assert build._refresh_names(conf, perms, ["", " "]) == []
    assert build._refresh_names(conf, perms, ["tiny-two,tiny-one"]) == ["tiny-two", "tiny-one"]
    assert build._refresh_names(conf, one, ["tiny-two"]) == []  # another job's
    with pytest.raises(ConfigError, match="unknown permutation 'tiny-three'"):
        build._refresh_names(conf, one, ["tiny-three"])
