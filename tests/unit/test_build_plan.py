"""Build planning (pure parts): FROM by digest, the permutations to refresh, the base's
platforms, a platform part, reuse of an unchanged permutation, and the CI matrix."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import settings as settings_
from hypothesis import strategies as st

from dcforge.core import build_plan, settings
from dcforge.core import manifest as mf
from dcforge.core.build_plan import PlannedPermutation
from dcforge.core.errors import ConfigError
from dcforge.core.refs import at_digest
from tests.projects import write_project
from tests.unit.test_multiplatform import AMD, ARM, INDEX, multi, perm

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


def test_refresh_names_are_checked_and_shared_out_to_the_jobs_that_build_them(
    tmp_path: Path,
) -> None:
    root = write_project(tmp_path / "p")
    conf = settings.load(root, {})
    perms = build_plan.load_permutations(conf)
    one = [p for p in perms if p.name == "tiny-one"]
    assert build_plan.refresh_names(conf, perms, ["", " "]) == []
    assert build_plan.refresh_names(conf, perms, ["tiny-two,tiny-one"]) == [
        "tiny-two",
        "tiny-one",
    ]
    assert build_plan.refresh_names(conf, one, ["tiny-two"]) == []  # another job's
    with pytest.raises(ConfigError, match="unknown permutation 'tiny-three'"):
        build_plan.refresh_names(conf, one, ["tiny-three"])


def test_the_base_must_have_every_platform_before_anything_builds(tmp_path: Path) -> None:
    p = perm(tmp_path / "a", "[linux/amd64, linux/arm64]")
    base = {"linux/amd64": AMD, "linux/arm64": ARM}
    assert build_plan.base_platforms(p, INDEX, base, dry_run=False) == base
    with pytest.raises(ConfigError, match="builds linux/arm64, which its base"):
        build_plan.base_platforms(p, INDEX, {"linux/amd64": AMD}, dry_run=False)
    with pytest.raises(ConfigError, match="single-platform image"):
        build_plan.base_platforms(p, AMD, {}, dry_run=False)
    one = perm(tmp_path / "b", "[linux/amd64]")
    assert build_plan.base_platforms(one, AMD, {}, dry_run=False) == {"linux/amd64": AMD}


# --- a platform part (build --platform) --------------------------------------------------------


def test_a_platform_leaves_out_what_does_not_build_it_unless_it_was_named(
    tmp_path: Path,
) -> None:
    both = perm(tmp_path / "a", "[linux/amd64, linux/arm64]")
    arm = replace(perm(tmp_path / "b", "[linux/arm64]"), name="arm")
    assert build_plan.left_out([both, arm], "linux/amd64", named=False) == [arm]
    assert build_plan.left_out([both, arm], "linux/arm64", named=True) == []
    assert build_plan.left_out([both, arm], "", named=True) == []  # no platform: everything
    with pytest.raises(ConfigError, match=r"'arm' does not build linux/amd64 \(its platforms"):
        build_plan.left_out([both, arm], "linux/amd64", named=True)
    with pytest.raises(ConfigError, match=r"^no selected permutation builds linux/s390x$"):
        build_plan.left_out([both, arm], "linux/s390x", named=False)


def test_a_platform_part_keeps_the_whole_permutations_input_hash_and_base(
    tmp_path: Path,
) -> None:
    """The parts, built on native runners, must merge into the index one machine builds."""
    both = perm(tmp_path / "a", "[linux/amd64, linux/arm64]")
    arm = replace(perm(tmp_path / "b", "[linux/arm64]"), name="arm")
    planned = [
        PlannedPermutation(both, INDEX, "h", {"linux/amd64": AMD, "linux/arm64": ARM}),
        PlannedPermutation(arm, ARM, "h2", {"linux/arm64": ARM}),
    ]
    (part,) = build_plan.platform_parts(planned, "linux/amd64")
    assert part.perm.platforms == ("linux/amd64",)
    assert part.part_of == ("linux/amd64", "linux/arm64")
    assert (part.base_digest, part.input_hash) == (INDEX, "h")
    assert part.base_platforms == {"linux/amd64": AMD}
    assert build_plan.platform_parts(planned, "linux/arm64")[1] == planned[1]  # one platform
    assert build_plan.platform_parts(planned, "") == planned


# --- reuse (build --since) ---------------------------------------------------------------------


def test_only_an_unchanged_permutation_is_reused_and_a_part_reuses_the_whole(
    tmp_path: Path,
) -> None:
    both = perm(tmp_path / "a", "[linux/amd64, linux/arm64]")
    item = PlannedPermutation(both, INDEX, "sha256:" + "e" * 64, {"linux/amd64": AMD})
    released = mf.parse(multi(), "m").permutations[0]
    old = replace(released, name=both.name, repository=both.repository)
    assert build_plan.unchanged(item, {both.name: old}) == old
    assert build_plan.unchanged(replace(item, input_hash="other"), {both.name: old}) is None
    assert build_plan.unchanged(item, {both.name: replace(old, repository="x/y")}) is None
    assert build_plan.unchanged(item, {}) is None
    part = build_plan.platform_parts([item], "linux/amd64")[0]
    entry = build_plan.reused_entry(part, old, "f" * 40, {"git_sha": "a" * 40})
    assert (entry.image_digest, entry.platforms) == (INDEX, ["linux/amd64", "linux/arm64"])
    assert entry.part_of == [] and entry.tarball == ""
    assert entry.platform_digests == {"linux/amd64": AMD, "linux/arm64": ARM}
    assert entry.base_image.platform_digests == old.base_image.platform_digests
    assert entry.reused_from == {"git_sha": "a" * 40}


# --- the CI matrix -----------------------------------------------------------------------------


def jobs(matrix: dict[str, list[dict[str, str]]]) -> list[tuple[str, str, str, str]]:
    return [(j["permutation"], j["platform"], j["part"], j["runner"]) for j in matrix["include"]]


def test_the_ci_matrix_splits_a_permutation_into_parts_only_with_a_native_runner_each(
    tmp_path: Path,
) -> None:
    multi_perm = perm(tmp_path / "a", "[linux/amd64, linux/arm64]")
    one = perm(tmp_path / "b", "[linux/arm64]")
    emulated = build_plan.ci_matrix([multi_perm, one], {})
    assert jobs(emulated) == [("tiny", "", "all", "ubuntu-24.04")] * 2
    assert [j["job"] for j in emulated["include"]] == ["0001", "0002"]
    labels = {"linux/amd64": "x64", "linux/arm64": "arm"}
    assert jobs(build_plan.ci_matrix([multi_perm, one], labels)) == [
        ("tiny", "linux/amd64", "linux-amd64", "x64"),
        ("tiny", "linux/arm64", "linux-arm64", "arm"),
        ("tiny", "", "all", "arm"),  # a single-platform arm64 permutation runs natively, whole
    ]
    half = build_plan.ci_matrix([multi_perm], {"linux/arm64": "arm"})
    assert jobs(half) == [("tiny", "", "all", "ubuntu-24.04")]


@settings_(max_examples=200, deadline=None)
@given(
    st.lists(st.sampled_from(["x64:", "arm:", "x64:linux/amd64", "arm:linux/arm64"]), max_size=60),
    st.integers(4, 300),
)
def test_a_grouped_matrix_never_exceeds_its_cap_and_builds_everything_once(
    units: list[str], max_jobs: int
) -> None:
    """Whatever the permutations, at most max_matrix_jobs jobs, each on one runner and
    platform, every permutation (or platform part) built exactly once."""
    perms = []
    for i, unit in enumerate(units):
        runner, platform = unit.split(":")
        platforms = ("linux/amd64", "linux/arm64") if platform else (
            ("linux/amd64",) if runner == "x64" else ("linux/arm64",)
        )  # fmt: skip
        perms.append(_Perm(f"p{i}", platforms))
    labels = {"linux/amd64": "x64", "linux/arm64": "arm"}
    matrix = build_plan.ci_matrix(perms, labels, max_jobs)  # type: ignore[arg-type]
    built = [
        (name, j["platform"]) for j in matrix["include"] for name in j["permutation"].split(",")
    ]
    expected = [
        (p.name, pl if len(p.platforms) > 1 else "")
        for p in perms
        for pl in (p.platforms if len(p.platforms) > 1 else ("",))
    ]
    assert sorted(built) == sorted(expected)
    assert len(matrix["include"]) <= max_jobs
    if len(expected) <= max_jobs:
        assert len(matrix["include"]) == len(expected)
    assert len({j["job"] for j in matrix["include"]}) == len(matrix["include"])


@dataclass(frozen=True)
class _Perm:
    name: str
    platforms: tuple[str, ...]


def test_a_matrix_cap_below_the_runner_platform_combinations_is_refused(tmp_path: Path) -> None:
    p = perm(tmp_path, "[linux/amd64]")
    other = replace(p, name="other", platforms=("linux/arm64",))
    with pytest.raises(ConfigError, match="max_matrix_jobs = 1 is fewer than the 2"):
        build_plan.ci_matrix([p, other], {"linux/arm64": "a"}, 1)
