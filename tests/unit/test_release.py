"""Release records, pins and publish numbers (pure): which record a name means, and the
refusals that hold the release chain — a superseded publish, a publish below the pin's
number, a publish that would move the pin backwards."""

from __future__ import annotations

import json

import pytest

from dcforge.core import manifest as mf
from dcforge.core import release
from dcforge.core.errors import ManifestError, PublishRefused, RollbackRefused, VerifyFailed
from tests.unit.test_manifest import GOOD

A, B = ("sha256:" + c * 64 for c in "ab")
SHA = "a" * 40


def test_pin_statements_round_trip_and_refuse_other_documents() -> None:
    body = release.pin_statement("a" * 40, A, "2026-11-28T00:00:00Z")
    pin = release.parse_pin(json.loads(body), "lkg")
    assert (pin.git_sha, pin.record_digest) == ("a" * 40, A)
    with pytest.raises(ManifestError, match="not a dcforge pin statement"):
        release.parse_pin({"kind": "dcforge-release"}, "lkg")


def test_each_publish_of_a_sha_is_numbered_and_names_what_it_supersedes() -> None:
    m = mf.parse(json.loads(json.dumps(GOOD)), "m")
    first = release.parse(release.build(m, {}), "r")
    assert (first.sequence, first.supersedes) == (1, "")
    second = release.parse(release.build(m, {}, sequence=2, supersedes=A), "r")
    assert (second.sequence, second.supersedes) == (2, A)
    # A record from before publish numbers is publish 1.
    legacy = release.build(m, {})
    del legacy["publish"]
    assert release.parse(legacy, "r").sequence == 1
    for bad in ({"sequence": 2, "supersedes": None}, {"sequence": 0}, {"sequence": "2"},
                {"sequence": 1, "supersedes": A}, {"sequence": True, "supersedes": A}):  # fmt: skip
        with pytest.raises(ManifestError, match="publish"):
            release.parse({**release.build(m, {}), "publish": bad}, "r")
    sha = m.git_sha
    tags = [sha, f"{sha}.1", f"{sha}.3", f"{sha}.x", f"{'b' * 40}.9", f"{sha}.04"]
    assert release.sequences(tags, sha) == [1, 3]
    pin = release.parse_pin(json.loads(release.pin_statement(sha, A, "t", 3)), "lkg")
    assert pin.sequence == 3


def _record(sequence: int = 1, supersedes: str = "") -> release.Release:
    m = mf.parse(json.loads(json.dumps(GOOD)), "m")
    return release.parse(release.build(m, {}, sequence=sequence, supersedes=supersedes), "r")


def test_a_short_sha_names_one_released_sha_or_is_refused() -> None:
    other = "ab" + "0" * 38
    tags = [SHA, f"{other}.2", "latest", f"{'c' * 40}.x", release.LAST_KNOWN_GOOD]
    assert release.released_shas(tags) == [SHA, other]
    assert release.released_sha("aaaa", tags, "r/dcforge-releases") == SHA
    with pytest.raises(RollbackRefused, match="is ambiguous: aaaaaaaaaaaa, aaaabbbbbbbb"):
        release.released_sha("a" * 4, [SHA, "a" * 4 + "b" * 36], "r")
    with pytest.raises(RollbackRefused, match="no published release for git SHA cccc in r"):
        release.released_sha("cccc", tags, "r")
    with pytest.raises(RollbackRefused, match="neither a git SHA"):
        release.released_sha(";rm", tags, "r")


def test_an_earlier_publish_is_refused_below_a_later_one_or_the_pins_number() -> None:
    second = _record(2, A)
    release.refuse_superseded("r", "r:x", B, second, 2)  # the newest: taken
    with pytest.raises(VerifyFailed, match=r"publish 2 of release .* superseded by publish 3"):
        release.refuse_superseded("r", "r:x", B, second, 3)
    pin = release.Pin(second.git_sha, B, "t", 3)
    assert release.pinned_number(pin, second.git_sha) == 3
    assert release.pinned_number(pin, "f" * 40) == 0  # it pins another release
    assert release.pinned_number(None, second.git_sha) == 0


def test_a_new_publish_is_numbered_one_above_the_newest() -> None:
    assert release.next_sequence(0, None, None) == 1  # the first
    assert release.next_sequence(2, A, (2, B)) == 3
    assert release.next_sequence(0, A, None) == 2  # a record from before numbers: 1
    assert release.next_sequence(0, A, (4, B)) == 5  # never signed, still superseded


def test_publish_refuses_to_move_the_pin_backwards_or_blind() -> None:
    release.refuse_backwards(SHA, "b" * 40, True, "nothing was pushed")
    with pytest.raises(PublishRefused, match=r"does not descend .* nothing was pushed; going"):
        release.refuse_backwards(SHA, "b" * 40, False, "nothing was pushed")
    with pytest.raises(PublishRefused, match=r"cannot tell whether .* — no tag moved$"):
        release.refuse_backwards(SHA, "b" * 40, None, "no tag moved")


def test_an_artifact_is_exactly_one_file_of_its_type() -> None:
    body = b"{}\n"
    layer = {
        "digest": "sha256:ca3d163bab055381827226140568f3bef7eaac187cebd76878e0b63e9e442356",
        "annotations": {"org.opencontainers.image.title": release.FILE_NAME},
    }
    doc = {"artifactType": release.ARTIFACT_TYPE, "layers": [layer]}
    assert release.is_artifact(doc, release.ARTIFACT_TYPE, release.FILE_NAME)
    assert release.is_artifact(doc, release.ARTIFACT_TYPE, release.FILE_NAME, body)
    assert not release.is_artifact(doc, release.ARTIFACT_TYPE, release.FILE_NAME, b"[]\n")
    assert not release.is_artifact(doc, release.PIN_ARTIFACT_TYPE, release.FILE_NAME)
    assert not release.is_artifact(doc, release.ARTIFACT_TYPE, release.PIN_FILE_NAME)
    two = {**doc, "layers": [layer, layer]}
    assert not release.is_artifact(two, release.ARTIFACT_TYPE, release.FILE_NAME)


def test_a_listing_row_reads_what_the_record_was_annotated_with() -> None:
    m = mf.parse(json.loads(json.dumps(GOOD)), "m")
    notes = release.record_annotations(m, 2)
    row = release.listing_row(m.git_sha, A, notes, A)
    assert row == {
        "git_sha": m.git_sha,
        "digest": A,
        "created": m.created_at,
        "permutations": ",".join(e.name for e in m.permutations),
        "pinned": True,
    }
    assert release.listing_row(m.git_sha, A, None, B)["created"] == ""


def test_what_the_registry_holds_keeps_its_names() -> None:
    """Names written into registries outlive the code: a record, pin or audit record
    published by an earlier dcforge must still be found and accepted (a module rename once
    turned the release artifact type into "vnd.dcforge.core.release")."""
    from dcforge.core import attestations, provenance, tag_moves

    assert release.ARTIFACT_TYPE == "application/vnd.dcforge.release.v1+json"
    assert release.PIN_ARTIFACT_TYPE == "application/vnd.dcforge.pin.v1+json"
    assert tag_moves.AUDIT_ARTIFACT_TYPE == "application/vnd.dcforge.rollback.v1+json"
    assert release.REPOSITORY == "dcforge-releases"
    assert release.LAST_KNOWN_GOOD == "last-known-good"
    assert attestations.PROVENANCE_TYPE == "https://slsa.dev/provenance/v1"
    assert provenance.BUILD_TYPE == "https://github.com/dcforge/dcforge/buildtypes/bake/v1"


def test_the_record_names_each_image_the_gate_wrote_a_vex_for() -> None:
    m = mf.parse(json.loads(json.dumps(GOOD)), "m")
    entry = m.permutations[0]
    sha = "c" * 64
    platform = {"platform": "linux/amd64", "digest": entry.image_digest, "passed": True}
    gate_doc = {"permutations": [{"name": entry.name, "platforms": [
        {**platform, "vex": {"file": "x.vex.json", "sha256": sha}}]}]}  # fmt: skip
    built = release.build(m, gate_doc)
    assert built["images"][0]["vex"] == {entry.image_digest: sha}
    image = release.parse(built, "r").images[0]
    assert image.vex_digests() == {entry.image_digest}
    # No VEX recorded (nothing waived, or a record from before VEX): no field, none needed.
    assert "vex" not in release.build(m, {"permutations": [{"name": entry.name}]})["images"][0]
    assert release.parse(release.build(m, {}), "r").images[0].vex == ()
    # A record naming a VEX for an image it does not have, or not a sha256, is refused.
    bads: list[object] = [{A: sha}, {entry.image_digest: "c" * 63}, {entry.image_digest: 7}, []]
    for bad in bads:
        record = release.build(m, gate_doc)
        record["images"][0]["vex"] = bad
        with pytest.raises(ManifestError, match="'vex'"):
            release.parse(record, "r")


def test_a_multi_platform_record_says_its_index_is_attested_too() -> None:
    raw = json.loads(json.dumps(GOOD))
    entry = raw["permutations"][0]
    entry["platforms"] = ["linux/amd64", "linux/arm64"]
    entry["platform_digests"] = {"linux/amd64": A, "linux/arm64": B}
    m = mf.parse(raw, "m")
    image = release.parse(release.build(m, {}), "r").images[0]
    assert image.index_attested
    index = m.permutations[0].image_digest
    assert image.attested() == [("linux/amd64", A), ("linux/arm64", B)]  # scanned: platforms
    assert image.attestation_subjects()[-1] == ("index", index)
    # A record from before: its index carries none, and it still parses and binds as then.
    old = release.build(m, {})
    del old["images"][0]["index_attested"]
    assert release.parse(old, "r").images[0].attestation_subjects() == image.attested()
    single = release.build(mf.parse(json.loads(json.dumps(GOOD)), "m"), {})
    assert "index_attested" not in single["images"][0]
    single["images"][0]["index_attested"] = True
    with pytest.raises(ManifestError, match="only for a multi-platform image"):
        release.parse(single, "r")


def test_a_reproduction_is_the_same_images_of_the_same_commit() -> None:
    m = mf.parse(json.loads(json.dumps(GOOD)), "m")
    rel = release.parse(release.build(m, {}), "r")
    assert release.same_images(rel, m)
    rebuilt = json.loads(json.dumps(GOOD))
    rebuilt["created_at"] = "2030-01-01T00:00:00Z"  # another build, the same images
    assert release.same_images(rel, mf.parse(rebuilt, "m"))
    other = json.loads(json.dumps(GOOD))
    other["permutations"][0]["image_digest"] = "sha256:" + "e" * 64
    assert not release.same_images(rel, mf.parse(other, "m"))
    elsewhere = json.loads(json.dumps(GOOD))
    elsewhere["permutations"][0]["repository"] = "localhost:5000/dcforge/tiny-elsewhere"
    elsewhere["permutations"][0]["tags"] = [
        t.replace("/tiny:", "/tiny-elsewhere:") for t in elsewhere["permutations"][0]["tags"]
    ]
    assert not release.same_images(rel, mf.parse(elsewhere, "m"))
    tag, doc = release.reproduced_statement(rel, A, "f" * 64, "builder", "2030-01-02T03:04:05Z", "")
    assert tag == f"reproduced-20300102T030405-{m.git_sha[:12]}"
    assert (doc["record_digest"], doc["publish"]) == (A, 1)
    assert doc["images"] == {e.name: e.image_digest for e in m.permutations}


def test_a_publish_with_nothing_to_add_is_told_apart() -> None:
    m = mf.parse(json.loads(json.dumps(GOOD)), "m")
    entry = m.permutations[0]
    bindings: release.Bindings = {
        entry.name: {
            "signatures": {entry.image_digest: A},
            "attestations": {entry.image_digest: B},
        }
    }
    gate_doc = {"trivy_version": "0.76.0", "permutations": [{"name": entry.name, "counts": {}}]}
    policy = release.policy_digest({"key": "k"}, ["spdx"])
    record = release.build(m, gate_doc, bindings, sequence=2, supersedes=A, bindings_policy=policy)
    rel = release.parse(record, "r")
    assert release.is_record_of(rel, m, gate_doc, policy)
    # Another verdict (a re-gate with a newer DB), or another build: a new record to write.
    assert not release.is_record_of(rel, m, {**gate_doc, "db_updated_at": "2030-01-01"}, policy)
    rebuilt = json.loads(json.dumps(GOOD))
    rebuilt["created_at"] = "2030-01-01T00:00:00Z"
    assert not release.is_record_of(rel, mf.parse(rebuilt, "m"), gate_doc, policy)
    # Another verification policy (a rotated key): a record whose bindings stand under it.
    assert not release.is_record_of(rel, m, gate_doc, release.policy_digest({"key": "j"}, []))


def test_a_reproduction_rebuilt_every_image_under_the_same_verdict() -> None:
    m = mf.parse(json.loads(json.dumps(GOOD)), "m")
    gate_doc = {"db_updated_at": "2026-12-01", "permutations": [{"name": "tiny-one", "counts": {}}]}
    rel = release.parse(release.build(m, gate_doc), "r")
    # Reused from a release (nothing rebuilt), or built from a dirty tree: not a reproduction.
    reused = json.loads(json.dumps(GOOD))
    reused["permutations"][0]["reused_from"] = {"git_sha": "b" * 40, "record_digest": A}
    reused["permutations"][0]["tarball"] = ""
    reused["permutations"][0]["tarball_sha256"] = ""
    assert not release.same_images(rel, mf.parse(reused, "m"))
    dirty = json.loads(json.dumps(GOOD))
    dirty["git_dirty"] = True
    assert not release.same_images(rel, mf.parse(dirty, "m"))
    # The verdict the record holds, or a newer one (another DB): a new record to write.
    assert release.same_verdict(rel, m, gate_doc)
    assert not release.same_verdict(rel, m, {**gate_doc, "db_updated_at": "2026-12-07"})


def test_a_record_names_the_policy_its_bindings_were_verified_under() -> None:
    m = mf.parse(json.loads(json.dumps(GOOD)), "m")
    name = m.permutations[0].name
    images = [e.image_digest for e in m.permutations[:1]]
    bound = {name: {"signatures": {d: A for d in images}, "attestations": {d: B for d in images}}}
    policy = release.policy_digest({"key": "spki:sha256:00"}, ["spdx", "slsa"])
    rel = release.parse(release.build(m, {}, bound, bindings_policy=policy), "r")
    assert rel.bindings_policy == policy
    # No bindings, no policy: nothing stands for cosign either way.
    assert "bindings_policy" not in release.build(m, {}, None, bindings_policy=policy)
    for bad in ("", None, 1, "sha256:xyz"):
        record = {**release.build(m, {}, bound, bindings_policy=policy), "bindings_policy": bad}
        if bad == "":
            assert release.parse(record, "r").bindings_policy == ""
            continue
        with pytest.raises(ManifestError, match="'bindings_policy' is not a sha256: digest"):
            release.parse(record, "r")
    # Each part of a policy changes its digest; the order of the predicate types does not.
    assert release.policy_digest({"key": "spki:sha256:00"}, ["slsa", "spdx"]) == policy
    assert release.policy_digest({"key": "spki:sha256:01"}, ["spdx", "slsa"]) != policy
    assert release.policy_digest({"key": "spki:sha256:00"}, ["spdx"]) != policy
