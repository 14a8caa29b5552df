"""Floating tag moves (pure): which tags a release needs moved, what a put-back left, and
the audit record a rollback writes of its moves.

The moves themselves — side by side, read back, put back on any failure — are
:mod:`dcforge.infra.floating_tags`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from dcforge.core import release

AUDIT_ARTIFACT_TYPE = "application/vnd.dcforge.rollback.v1+json"
AUDIT_FILE_NAME = "rollback.json"
NO_TAG = "(none)"  # where a moved tag was when it did not exist before

# Each image with the floating tags of it to write (one write per image).
Plan = list[tuple[release.Image, list[str]]]


@dataclass(frozen=True)
class Move:
    tag: str
    current: str | None
    target: str


def plan(
    images: Sequence[release.Image], current: Mapping[str, str | None]
) -> tuple[Plan, dict[str, str]]:
    """The floating tags of ``images`` not serving their image's digest (``current``: what
    every ``repository:tag`` serves now), and tag → the digest it served (:data:`NO_TAG`
    for a tag that does not exist yet)."""
    todo_of: Plan = []
    moved: dict[str, str] = {}
    for image in images:
        todo = []
        for tag in image.floating_tags:
            served = current[f"{image.repository}:{tag}"]
            if served != image.digest:
                todo.append(tag)
                moved[f"{image.repository}:{tag}"] = served or NO_TAG
        if todo:
            todo_of.append((image, todo))
    return todo_of, moved


def undo_plan(moved: Mapping[str, str]) -> Plan:
    """The tags of ``moved`` (``repository:tag`` → previous digest), as a plan to put back."""
    done: Plan = []
    for ref in moved:
        repository, tag = ref.rsplit(":", 1)
        done.append((release.Image("", repository, "", "", ()), [tag]))
    return done


def put_back_report(tags: Sequence[str], outcomes: Sequence[str]) -> str:
    """What putting ``tags`` back did, each one's outcome 'kept' (already back), 'restored',
    'new' (it did not exist before: the registry API has no tag delete) or 'failed'."""
    failed = [ref for ref, outcome in zip(tags, outcomes, strict=True) if outcome == "failed"]
    new = [ref for ref, outcome in zip(tags, outcomes, strict=True) if outcome == "new"]
    if failed or new:
        return "could not put back " + ", ".join(
            [*failed, *(f"{ref} (new tag; no earlier digest)" for ref in new)]
        )
    restored = list(outcomes).count("restored")
    return f"the previous release is in place ({restored} tag(s) put back)"


def audit_record(
    rel: release.Release,
    record_digest: str,
    moves: Sequence[Move],
    who: str,
    now: dt.datetime,
    run: str,
) -> tuple[str, dict[str, Any]]:
    """(tag, document) of the audit record of a rollback to ``rel`` by ``who`` at ``now``
    (UTC) in CI run ``run`` ('' outside CI)."""
    doc: dict[str, Any] = {
        "kind": "dcforge-rollback",
        "schema_version": 1,
        "who": who,
        "when": now.isoformat(timespec="seconds").replace("+00:00", "Z"),
        "to": {"git_sha": rel.git_sha, "record_digest": record_digest},
        "moves": [{"tag": m.tag, "from": m.current, "to": m.target} for m in moves],
        "run": run,
    }
    return f"rollback-{now:%Y%m%dT%H%M%S}-{rel.git_sha[:12]}", doc
