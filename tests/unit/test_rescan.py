"""The rescan's live images: each scan's reports in files of its own."""

from __future__ import annotations

from dataclasses import replace

from dcforge.stages.rescan import LiveImage

PINNED = LiveImage("tiny", "tiny", "r/tiny", "sha256:" + "a" * 64, "last-known-good 0123456789ab")


def test_a_floating_tags_image_is_named_as_the_pinned_one_but_reports_apart() -> None:
    moved = replace(PINNED, digest="sha256:" + "b" * 64, why="floating tag r/tiny:latest")
    assert moved.name == PINNED.name
    assert PINNED.stem == "tiny" and moved.stem == "tiny+" + "b" * 12
    arm = replace(PINNED, name="tiny (linux/arm64)")
    assert arm.stem == "tiny@linux-arm64"
    assert replace(arm, why="floating tag r/tiny:latest").stem == "tiny@linux-arm64+" + "a" * 12
