"""Floating tag moves (pure): which tags a release needs moved, and what a put-back says
it left."""

from __future__ import annotations

from dcforge.core import release
from dcforge.core import tag_moves as tm

A, B, C = ("sha256:" + c * 64 for c in "abc")


def image(repo: str, digest: str, *tags: str) -> release.Image:
    return release.Image(repo.rsplit("/", 1)[-1], repo, digest, "immutable", tags)


def test_a_move_plans_only_the_tags_not_serving_their_image() -> None:
    images = [image("r/py", B, "3", "latest"), image("r/node", C, "18")]
    current: dict[str, str | None] = {"r/py:3": B, "r/py:latest": A, "r/node:18": None}
    plan, moved = tm.plan(images, current)
    assert [(i.name, todo) for i, todo in plan] == [("py", ["latest"]), ("node", ["18"])]
    assert moved == {"r/py:latest": A, "r/node:18": tm.NO_TAG}


def test_a_put_back_names_what_it_could_not_undo() -> None:
    tags = ["r/a:1", "r/b:1", "r/c:1"]
    assert tm.put_back_report(tags, ["kept", "restored", "restored"]) == (
        "the previous release is in place (2 tag(s) put back)"
    )
    assert tm.put_back_report(tags, ["new", "failed", "kept"]) == (
        "could not put back r/b:1, r/a:1 (new tag; no earlier digest)"
    )


def test_undoing_moves_puts_each_tag_back_on_its_own() -> None:
    plan = tm.undo_plan({"r/a:1": A, "r/a:2": tm.NO_TAG})
    assert [(i.repository, todo) for i, todo in plan] == [("r/a", ["1"]), ("r/a", ["2"])]
