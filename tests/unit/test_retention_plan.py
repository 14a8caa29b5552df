from __future__ import annotations

import datetime as dt

from hypothesis import given, settings
from hypothesis import strategies as st

from dcforge.core import retention_plan as r

NOW = dt.datetime(2026, 11, 28, tzinfo=dt.UTC)
OLD = NOW - dt.timedelta(days=200)
NEW = NOW - dt.timedelta(days=1)
POLICY = r.RetentionPolicy(now=NOW, keep_releases=2)
REPO = "reg/dc/python"
RELS = "reg/dc/dcforge-releases"


def d(n: int) -> str:
    return f"sha256:{n:064x}"


def sig(n: int) -> str:
    return f"sha256-{n:064x}.sig"


def test_old_unreferenced_image_goes_with_its_signature_after_it() -> None:
    versions = [
        r.Version(REPO, d(1), (f"py-{'a' * 40}",), OLD),
        r.Version(REPO, d(2), (sig(1),), None),
        r.Version(REPO, d(3), ("3.12", f"py-{'b' * 40}"), OLD),
        r.Version(REPO, d(4), (sig(3),), None),
    ]
    p = r.plan(versions, [], None, POLICY)
    assert [v.digest for v in p.delete] == [d(1), d(2)]
    assert "tagged 3.12" in p.keep[(REPO, d(3))]
    assert (REPO, d(4)) in p.keep


def test_release_rules_newest_n_young_and_pinned() -> None:
    def rel(n: int, created: dt.datetime, image: int) -> r.ReleaseRef:
        return r.ReleaseRef((RELS, d(100 + n)), f"{n:040x}", created, ((REPO, d(image)),))

    releases = [
        rel(1, OLD - dt.timedelta(days=3), 11),
        rel(2, OLD - dt.timedelta(days=2), 12),
        rel(3, OLD - dt.timedelta(days=1), 13),
        rel(4, OLD, 14),
        rel(5, NEW, 15),
    ]
    versions = [
        r.Version(RELS, d(100 + n), (f"{n:040x}",), rl.created)
        for n, rl in zip(range(1, 6), releases, strict=True)
    ]
    versions += [r.Version(REPO, d(n), (f"x-{n:040x}",), OLD) for n in range(11, 16)]
    p = r.plan(versions, releases, (RELS, d(101)), POLICY)
    deleted = p.deleted_keys()
    # newest 2 (5, 4), pinned (1) and their images are kept; 2 and 3 go.
    assert deleted == {(RELS, d(102)), (RELS, d(103)), (REPO, d(12)), (REPO, d(13))}
    assert "last-known-good" in p.keep[(RELS, d(101))]


def test_index_children_go_with_the_index_and_stay_for_a_kept_index() -> None:
    versions = [
        r.Version(REPO, d(1), (f"i-{'a' * 40}",), OLD, children=(d(2), d(3))),
        r.Version(REPO, d(2)),
        r.Version(REPO, d(3)),
        r.Version(REPO, d(4), ("latest",), OLD, children=(d(3),)),
    ]
    p = r.plan(versions, [], None, POLICY)
    assert [v.digest for v in p.delete] == [d(1), d(2)]
    assert "child of kept index" in p.keep[(REPO, d(3))]


def test_unknown_age_is_kept_and_orphan_signatures_go() -> None:
    versions = [r.Version(REPO, d(1), (f"x-{'a' * 40}",), None), r.Version(REPO, d(9), (sig(7),))]
    p = r.plan(versions, [], None, POLICY)
    assert p.keep[(REPO, d(1))] == "age unknown"
    assert p.deleted_keys() == {(REPO, d(9))}


# ---- property: nothing referenced is ever planned for deletion -------------------------

digests = st.integers(min_value=1, max_value=30)
ages = st.sampled_from([OLD, NEW, None, NOW - dt.timedelta(days=89), NOW - dt.timedelta(days=91)])
tag_kinds = st.sampled_from(["floating", "immutable", "none"])


@st.composite
def inventories(draw: st.DrawFn) -> tuple[list[r.Version], list[r.ReleaseRef], r.Key | None]:
    versions: dict[r.Key, r.Version] = {}
    for n in draw(st.lists(digests, max_size=15, unique=True)):
        kind = draw(tag_kinds)
        tags = {"floating": (f"t{n}",), "immutable": (f"p-{n:040x}",), "none": ()}[kind]
        kids = tuple(d(c) for c in draw(st.lists(digests, max_size=3, unique=True)) if c != n)
        versions[(REPO, d(n))] = r.Version(REPO, d(n), tags, draw(ages), kids)
    for n in draw(st.lists(digests, max_size=8, unique=True)):
        key = (REPO, d(100 + n))
        versions[key] = r.Version(REPO, d(100 + n), (sig(n),))
    releases = []
    for i in range(draw(st.integers(0, 6))):
        created = draw(st.sampled_from([OLD, NEW, OLD - dt.timedelta(days=i)]))
        images = tuple((REPO, d(x)) for x in draw(st.lists(digests, max_size=3)))
        rec = (RELS, d(500 + i))
        releases.append(r.ReleaseRef(rec, f"{i:040x}", created, images))
        versions[rec] = r.Version(RELS, d(500 + i), (f"{i:040x}",), created)
    pin_one = bool(releases) and draw(st.booleans())
    pinned = releases[draw(st.integers(0, len(releases) - 1))].record if pin_one else None
    return list(versions.values()), releases, pinned


@settings(max_examples=400, deadline=None)
@given(inventories(), st.integers(0, 4))
def test_nothing_referenced_is_ever_planned_for_deletion(inv, keep_n: int) -> None:  # type: ignore[no-untyped-def]
    versions, releases, pinned = inv
    policy = r.RetentionPolicy(now=NOW, keep_releases=keep_n)
    p = r.plan(versions, releases, pinned, policy)
    deleted = p.deleted_keys()
    by_key = {v.key: v for v in versions}
    kept_rel = r.kept_releases(releases, pinned, policy)
    for v in versions:
        if v.floating_tags():
            assert v.key not in deleted
        if v.subject is None and v.created is not None and NOW - v.created < policy.max_age:
            assert v.key not in deleted
    for rel in releases:
        if rel.record in kept_rel:
            assert rel.record not in deleted
            assert not (set(rel.images) & deleted)
    if pinned is not None:
        assert pinned not in deleted
    for v in versions:
        if v.key not in deleted:
            for child in v.children:
                assert (v.repository, child) not in deleted
        subject = (v.repository, v.subject or "")
        if v.subject is not None and subject in by_key and subject not in deleted:
            assert v.key not in deleted  # never strip a kept image of its signature
    order = [v.key for v in p.delete]
    for i, v in enumerate(p.delete):
        if v.subject is not None and (v.repository, v.subject) in deleted:
            assert order.index((v.repository, v.subject)) < i  # image first, then its signature


def test_a_release_whose_images_floating_tags_serve_keeps_its_record_and_audits() -> None:
    sha = "c" * 40
    old = r.ReleaseRef((RELS, d(200)), sha, OLD, ((REPO, d(21)), (REPO, d(22))))
    versions = [
        r.Version(RELS, d(200), (sha,), OLD),
        r.Version(RELS, d(201), (f"rollback-20250101T000000-{sha[:12]}",), OLD),
        r.Version(RELS, d(202), (f"rollback-20250101T000000-{'e' * 12}",), OLD),
        r.Version(RELS, d(203), (f"reproduced-20250101T000000-{sha[:12]}",), OLD),
        r.Version(REPO, d(21), ("latest",), OLD),  # a rollback put it back on a tag
        r.Version(REPO, d(22), (f"other-{sha}",), OLD),
    ]
    p = r.plan(versions, [old], None, r.RetentionPolicy(now=NOW, keep_releases=0))
    assert "floating tags serve its images" in p.keep[(RELS, d(200))]
    assert (REPO, d(22)) in p.keep  # the rest of that release stays with it
    assert "audit record of kept release" in p.keep[(RELS, d(201))]
    assert "audit record of kept release" in p.keep[(RELS, d(203))]  # its reproduction
    assert p.deleted_keys() == {(RELS, d(202))}  # an audit of a release that is gone


def test_the_pinned_record_stays_when_it_is_not_among_the_releases() -> None:
    # Its signature did not verify (a cosign timeout, a rotated key): no ReleaseRef, yet
    # the record the signed pin names is never planned for deletion.
    versions = [r.Version(RELS, d(101), ("a" * 40,), OLD)]
    p = r.plan(versions, [], (RELS, d(101)), POLICY)
    assert p.delete == []
    assert "last-known-good" in p.keep[(RELS, d(101))]
