"""Retention planning (pure): registry versions + releases + policy in, a deletion plan out.

Never planned for deletion: anything a floating tag or ``last-known-good`` references;
any release record younger than the window or among the newest N, or whose images a
floating tag serves, every image such a release names, and its audit records; anything
younger than the window. A signature/attestation/SBOM goes with
its image (never before it, never left behind); the children of an index go with the
index, and stay while any kept index references them.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from dcforge.core import release

COSIGN_TAG = re.compile(r"^sha256-([0-9a-f]{64})\.(sig|att|sbom)$")
IMMUTABLE_TAG = re.compile(r"-[0-9a-f]{40}$")
RELEASE_TAG = re.compile(r"^[0-9a-f]{40}$")
AUDIT_TAG = re.compile(r"^(?:rollback|reproduced)-")  # rollbacks, reproductions
AUDIT_SHA = re.compile(r"^(?:rollback|reproduced)-[0-9T]+-([0-9a-f]{7,40})$")

Key = tuple[str, str]  # (repository, digest)


@dataclass(frozen=True)
class Version:
    repository: str
    digest: str
    tags: tuple[str, ...] = ()
    created: dt.datetime | None = None  # None: unknown age, treated as young
    children: tuple[str, ...] = ()  # index → manifest digests in the same repository

    @property
    def key(self) -> Key:
        return (self.repository, self.digest)

    @property
    def subject(self) -> str | None:
        """For a cosign signature/attestation/SBOM version: the digest it belongs to."""
        for tag in self.tags:
            m = COSIGN_TAG.match(tag)
            if m:
                return f"sha256:{m.group(1)}"
        return None

    def floating_tags(self) -> list[str]:
        """Tags that can move: not immutable (name-<sha>), not cosign's, not a release SHA."""
        return [
            t
            for t in self.tags
            if not (
                COSIGN_TAG.match(t)
                or IMMUTABLE_TAG.search(t)
                or RELEASE_TAG.match(t)
                or release.SEQUENCE_TAG.match(t)  # one publish of a SHA
                or AUDIT_TAG.match(t)
            )
        ]


@dataclass(frozen=True)
class ReleaseRef:
    record: Key
    git_sha: str
    created: dt.datetime
    images: tuple[Key, ...]


@dataclass(frozen=True)
class RetentionPolicy:
    now: dt.datetime
    max_age: dt.timedelta = dt.timedelta(days=90)
    keep_releases: int = 5


@dataclass
class Plan:
    delete: list[Version] = field(default_factory=list)  # in a safe order
    keep: dict[Key, str] = field(default_factory=dict)  # key → why

    def deleted_keys(self) -> set[Key]:
        return {v.key for v in self.delete}


def kept_releases(
    releases: Sequence[ReleaseRef], pinned: Key | None, policy: RetentionPolicy
) -> dict[Key, str]:
    kept: dict[Key, str] = {}
    newest = sorted(releases, key=lambda r: r.created, reverse=True)
    for i, rel in enumerate(newest):
        if pinned is not None and rel.record == pinned:
            kept[rel.record] = f"release {rel.git_sha[:12]} is last-known-good"
        elif i < policy.keep_releases:
            kept[rel.record] = (
                f"release {rel.git_sha[:12]} is among the newest {policy.keep_releases}"
            )
        elif policy.now - rel.created < policy.max_age:
            kept[rel.record] = (
                f"release {rel.git_sha[:12]} is younger than {policy.max_age.days} days"
            )
    return kept


def _protect_audits(
    versions: Iterable[Version], releases: Sequence[ReleaseRef], keep: dict[Key, str]
) -> None:
    """Audit records (``rollback-<time>-<sha12>``) and reproduction statements
    (``reproduced-<time>-<sha12>``) stay as long as their release does."""
    kept = [rel.git_sha for rel in releases if rel.record in keep]
    for v in versions:
        for tag in v.tags:
            m = AUDIT_SHA.match(tag)
            if m and any(sha.startswith(m.group(1)) for sha in kept) and v.key not in keep:
                keep[v.key] = f"audit record of kept release {m.group(1)}"


def plan(
    versions: Iterable[Version],
    releases: Sequence[ReleaseRef],
    pinned: Key | None,
    policy: RetentionPolicy,
) -> Plan:
    by_key = {v.key: v for v in versions}
    keep: dict[Key, str] = {}
    _protect_releases(by_key, releases, pinned, policy, keep)
    _protect_audits(by_key.values(), releases, keep)
    _protect_by_tag_and_age(by_key, policy, keep)
    _protect_closure(by_key, keep)
    return Plan(
        delete=_deletion_order([v for v in by_key.values() if v.key not in keep]), keep=keep
    )


def _protect(keep: dict[Key, str], key: Key, why: str) -> None:
    if key not in keep:
        keep[key] = why


def _protect_releases(
    by_key: Mapping[Key, Version],
    releases: Sequence[ReleaseRef],
    pinned: Key | None,
    policy: RetentionPolicy,
    keep: dict[Key, str],
) -> None:
    for key, why in kept_releases(releases, pinned, policy).items():
        _protect(keep, key, why)
    if pinned is not None:  # what the signed pin names, whether or not its record verified
        _protect(keep, pinned, "the record last-known-good names")
    # A release whose images a floating tag serves keeps its record: rollback and verify of
    # what users pull need it, however old it is.
    served = {v.key for v in by_key.values() if v.subject is None and v.floating_tags()}
    for rel in releases:
        if any(image in served for image in rel.images):
            _protect(
                keep, rel.record, f"release {rel.git_sha[:12]}: floating tags serve its images"
            )
    for rel in releases:
        if rel.record in keep:
            for image in rel.images:
                _protect(keep, image, f"named by {keep[rel.record]}")


def _protect_by_tag_and_age(
    by_key: Mapping[Key, Version], policy: RetentionPolicy, keep: dict[Key, str]
) -> None:
    children = {(v.repository, c) for v in by_key.values() for c in v.children}
    for v in by_key.values():
        if v.subject is not None:
            continue  # signatures follow their subject, decided below
        floating = v.floating_tags()
        if floating:
            _protect(keep, v.key, f"tagged {', '.join(floating)}")
        elif v.key in children and v.created is None:
            continue  # an index's children follow the index, decided below
        elif v.created is None:
            _protect(keep, v.key, "age unknown")
        elif policy.now - v.created < policy.max_age:
            _protect(keep, v.key, f"younger than {policy.max_age.days} days")


def _protect_closure(by_key: Mapping[Key, Version], keep: dict[Key, str]) -> None:
    """Children of kept indexes (transitively), then signatures of anything kept."""
    changed = True
    while changed:
        changed = False
        for key in list(keep):
            parent = by_key.get(key)
            for child in parent.children if parent else ():
                if (key[0], child) not in keep:
                    _protect(keep, (key[0], child), f"child of kept index {key[1][:19]}")
                    changed = True
    for v in by_key.values():
        subject = v.subject
        if subject is not None and (v.repository, subject) in keep:
            _protect(keep, v.key, f"signature/attestation of kept {subject[:19]}")


def _deletion_order(doomed: list[Version]) -> list[Version]:
    """Parents first, then children, then signatures (never before their image)."""

    def rank(v: Version) -> int:
        if v.subject is not None:
            return 2
        is_child = any(v.digest in p.children for p in doomed if p.repository == v.repository)
        return 1 if is_child else 0

    return sorted(doomed, key=lambda v: (rank(v), v.repository, v.digest))
