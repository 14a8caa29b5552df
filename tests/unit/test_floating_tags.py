"""Floating tag moves against an in-memory stand-in for the distribution API (tags →
digests): all or nothing, put back on any failure, never a mix of releases. The real
registry is exercised by tests/integration/test_release_chain.py."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import cast

import pytest

from dcforge.core import release
from dcforge.core.errors import DcforgeError, RegistryError
from dcforge.infra.floating_tags import FloatingTags
from dcforge.infra.runner import Runner
from dcforge.infra.tools.registry import Registry

A, B, C = ("sha256:" + c * 64 for c in "abc")


@dataclass
class MemoryRegistry:
    """tag → digest, as a registry serves it; ``fail_on`` makes one tag operation fail."""

    tags: dict[str, str] = field(default_factory=dict)
    fail_on: set[str] = field(default_factory=set)
    runner: Runner = field(default_factory=Runner)

    def digest_or_none(self, reference: str) -> str | None:
        return self.tags.get(reference)

    def resolve(self, reference: str) -> str:
        return self.tags[reference]

    def tag(self, ref_at_digest: str, new_tags: list[str]) -> None:
        repo, digest = ref_at_digest.split("@", 1)
        for t in new_tags:
            if f"{repo}:{t}" in self.fail_on:
                raise RegistryError(f"cannot tag {repo}:{t}")
            self.tags[f"{repo}:{t}"] = digest


def floating(reg: MemoryRegistry) -> FloatingTags:
    return FloatingTags(cast(Registry, reg))


def image(repo: str, digest: str, *tags: str) -> release.Image:
    return release.Image(repo.rsplit("/", 1)[-1], repo, digest, "immutable", tags)


def test_tags_move_and_report_where_they_were() -> None:
    reg = MemoryRegistry({"r/py:3": A, "r/py:latest": A})
    moved = floating(reg).move([image("r/py", B, "3", "latest"), image("r/node", C, "18")])
    assert moved == {"r/py:3": A, "r/py:latest": A, "r/node:18": "(none)"}
    assert reg.tags == {"r/py:3": B, "r/py:latest": B, "r/node:18": C}
    assert floating(reg).move([image("r/py", B, "3")]) == {}  # nothing to do


def test_a_failed_move_puts_back_what_already_moved() -> None:
    reg = MemoryRegistry({"r/a:1": A, "r/b:1": A}, fail_on={"r/b:1"})
    with pytest.raises(DcforgeError, match=r"previous release is in place \(1 tag"):
        floating(reg).move([image("r/a", B, "1"), image("r/b", B, "1")])
    assert reg.tags == {"r/a:1": A, "r/b:1": A}  # never a mix of releases


def test_tags_written_side_by_side_are_all_put_back_when_one_fails() -> None:
    """The writes run at once: whatever moved, before or after the failed one, goes back."""
    images = [image(f"r/p{i}", B, "1") for i in range(20)]
    reg = MemoryRegistry({f"r/p{i}:1": A for i in range(20)}, fail_on={"r/p3:1"})
    with pytest.raises(DcforgeError, match=r"previous release is in place \(19 tag"):
        floating(reg).move(images)
    assert reg.tags == {f"r/p{i}:1": A for i in range(20)}


def test_a_write_of_several_tags_that_fails_half_way_is_put_back() -> None:
    """One image's tags are one write: when it moves "1" and fails on "2", "1" goes back."""
    reg = MemoryRegistry({"r/a:1": A, "r/a:2": A}, fail_on={"r/a:2"})
    with pytest.raises(DcforgeError, match=r"previous release is in place \(1 tag"):
        floating(reg).move([image("r/a", B, "1", "2")])
    assert reg.tags == {"r/a:1": A, "r/a:2": A}


def test_an_error_that_is_not_dcforge_s_still_puts_back() -> None:
    class Crashing(MemoryRegistry):
        def tag(self, ref_at_digest: str, new_tags: list[str]) -> None:
            super().tag(ref_at_digest, new_tags)
            if ref_at_digest.startswith("r/b@") and ref_at_digest.endswith(B):
                raise RuntimeError("can't start new thread")

    reg = Crashing({"r/a:1": A, "r/b:1": A})
    with pytest.raises(RuntimeError, match="new thread"):
        floating(reg).move([image("r/a", B, "1"), image("r/b", B, "1")])
    assert reg.tags == {"r/a:1": A, "r/b:1": A}


def test_a_tag_that_reads_back_wrong_or_not_at_all_puts_back() -> None:
    class Lagging(MemoryRegistry):
        def resolve(self, reference: str) -> str:
            if reference == "r/b:1":
                raise RegistryError("r/b:1: manifest unknown")
            return super().resolve(reference)

    reg = Lagging({"r/a:1": A, "r/b:1": A})
    with pytest.raises(DcforgeError, match=r"r/b:1 serves nothing readable.*in place \(2 tag"):
        floating(reg).move([image("r/a", B, "1"), image("r/b", B, "1")])
    assert reg.tags == {"r/a:1": A, "r/b:1": A}


def test_restore_puts_moved_tags_back() -> None:
    reg = MemoryRegistry({"r/a:1": B})
    assert "1 tag(s) put back" in floating(reg).restore({"r/a:1": A})
    assert reg.tags == {"r/a:1": A}
