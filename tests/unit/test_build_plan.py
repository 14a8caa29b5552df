"""Build planning (pure parts): FROM by digest, and how targets split over bake sessions."""

from __future__ import annotations

from pathlib import Path

import pytest

from dcforge.stages import build
from dcforge.tools import buildx
from dcforge.tools.registry import at_digest

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
