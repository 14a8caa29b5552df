"""The release store as stages use it (``ctx.releases``), against an in-memory stand-in for
the distribution API: a name is resolved to one release before any record is read, and tag
moves go through the store's floating tags. The real registry and cosign are exercised by
tests/integration/test_release_chain.py."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

import pytest

from dcforge.core import manifest as mf
from dcforge.core import release, settings
from dcforge.core.errors import RollbackRefused, ToolError
from dcforge.infra.release_store import Releases
from dcforge.infra.runner import Runner
from dcforge.infra.tools.cosign import Cosign, Signer
from dcforge.infra.tools.registry import Registry
from tests.unit.test_floating_tags import MemoryRegistry
from tests.unit.test_manifest import GOOD

A, B = ("sha256:" + c * 64 for c in "ab")
SHA, OTHER = "a" * 40, "aaaa" + "0" * 36


@dataclass
class ListingRegistry:
    """tag → digest, as a registry serves and lists it (a repository with no tag does not
    exist); nothing else is readable."""

    served: dict[str, str] = field(default_factory=dict)
    runner: Runner = field(default_factory=Runner)

    def digest_or_none(self, reference: str) -> str | None:
        return self.served.get(reference)

    def tags(self, repository: str) -> list[str]:
        found = [r.rsplit(":", 1)[1] for r in self.served if r.startswith(f"{repository}:")]
        if not found:
            raise ToolError(f"{repository}: name unknown")
        return found


def store(tmp_path: Path, reg: MemoryRegistry | ListingRegistry) -> Releases:
    conf = settings.load(tmp_path, {})
    fake = cast(Registry, reg)
    return Releases(conf, fake, Cosign(Runner(), Signer(key="k"), fake, {}), {})


def test_a_short_sha_must_name_one_release_before_any_record_is_read(tmp_path: Path) -> None:
    rels = store(tmp_path, ListingRegistry())
    repo = rels.repository
    reg = ListingRegistry({f"{repo}:{SHA}": A, f"{repo}:{OTHER}.1": B})
    rels = store(tmp_path, reg)
    assert rels.tags() == [SHA, f"{OTHER}.1"]
    with pytest.raises(RollbackRefused, match="ambiguous: aaaa00000000, aaaaaaaaaaaa"):
        rels.fetch("aaaa")
    with pytest.raises(RollbackRefused, match=f"no published release for git SHA cccc in {repo}"):
        rels.fetch("cccc")
    with pytest.raises(RollbackRefused, match="neither a git SHA"):
        rels.fetch(";rm")


def test_an_empty_release_repository_has_no_releases(tmp_path: Path) -> None:
    rels = store(tmp_path, ListingRegistry())
    assert rels.tags() == []
    assert rels.listing() == []
    with pytest.raises(RollbackRefused, match="no published release"):
        rels.fetch(SHA)


def test_tag_moves_go_through_the_stores_floating_tags(tmp_path: Path) -> None:
    doc = copy.deepcopy(GOOD)
    doc["permutations"][0] |= {"repository": "r/tiny", "floating_tags": ["one"]}
    new = release.parse(release.build(mf.parse(doc, "m"), {}), "r")
    (one,) = new.images
    tag = f"{one.repository}:one"
    reg = MemoryRegistry({tag: A})
    rels = store(tmp_path, reg)
    assert rels.floating_tags is rels.floating_tags  # made once, then shared
    assert rels.floating(new) == [(tag, A, one.digest)]
    moved = rels.move_tags(list(new.images))
    assert moved == {tag: A}
    assert reg.tags == {tag: one.digest}
    assert "1 tag(s) put back" in rels.restore(moved)
    assert reg.tags == {tag: A}


def test_the_stores_parts_read_and_sign_through_its_own_clients(tmp_path: Path) -> None:
    """Records, pin, checks and tag moves: one registry client, one cosign, one repository
    — the pin is never read or signed with another identity than the records."""
    rels = store(tmp_path, ListingRegistry())
    for part in (rels.pins, rels.checks, rels.floating_tags):
        assert part.registry is rels.registry, type(part).__name__
    for part in (rels.pins, rels.checks):
        assert part.cosign is rels.cosign, type(part).__name__
    assert rels.pins.repository == rels.repository
    assert rels.pins.checks is rels.checks
