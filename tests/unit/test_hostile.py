"""Hostile input: the loaders and parsers never raise anything but a clear dcforge error."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dcforge.core import permfile, release
from dcforge.core.errors import ConfigError, ManifestError
from tests.unit.test_manifest import GOOD

pytestmark = pytest.mark.reliability(
    scenario="hostile input (property-based)",
    checks="permutation loader and release-record parser: a clear error or a valid result, never a traceback",
)

BUILTINS = {"base_registry": "b", "registry": "r"}
keys = st.sampled_from(
    [
        "family",
        "name",
        "context",
        "base",
        "matrix",
        "tags",
        "smoke",
        "build_args",
        "platforms",
        "image",
        "dockerfile",
        "exclude",
        "extra",
    ]
)
scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.text(max_size=30)
    | st.sampled_from(
        ["../../etc", "/abs/path", "{nope}", "{family}", "x:y", "UPPER", "a" * 200, "ok-name", "."]
    )
)
values = st.recursive(
    scalars,
    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=8) | keys, c, max_size=3),
    max_leaves=12,
)


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.dictionaries(keys, values, max_size=10))
def test_any_family_mapping_loads_or_fails_clearly(tmp_path: Path, data: dict[str, Any]) -> None:
    root = tmp_path
    (root / "permutations").mkdir(exist_ok=True)
    (root / "ctx").mkdir(exist_ok=True)
    (root / "ctx/Dockerfile").write_text("FROM scratch\n")
    (root / "permutations/f.yaml").write_text(yaml.safe_dump(data))
    try:
        perms = permfile.load_all(root / "permutations", root=root, registry="r", builtins=BUILTINS)
    except ConfigError as err:
        assert_clear_lines(err, "f.yaml")
        return
    for p in perms:
        assert permfile.NAME_RE.match(p.name)
        assert p.context.resolve().is_relative_to(root.resolve())


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.text(max_size=300))
def test_any_text_as_yaml_fails_clearly(tmp_path: Path, text: str) -> None:
    (tmp_path / "permutations").mkdir(exist_ok=True)
    (tmp_path / "permutations/f.yaml").write_text(text)
    try:
        permfile.load_all(tmp_path / "permutations", root=tmp_path, registry="r", builtins=BUILTINS)
    except ConfigError as err:
        assert_clear_lines(err, "f.yaml")


def record() -> dict[str, Any]:
    m = json.loads(json.dumps(GOOD))
    return {
        "schema_version": 1,
        "kind": "dcforge-release",
        "git_sha": m["git_sha"],
        "images": [{"name": "tiny-one", "digest": m["permutations"][0]["image_digest"]}],
        "gate": {},
        "manifest": m,
    }


def test_a_good_record_parses() -> None:
    rel = release.parse(record(), "r")
    assert rel.images[0].name == "tiny-one"


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(["schema_version", "kind", "git_sha", "images", "gate", "manifest"]),
    st.recursive(
        st.none() | st.integers() | st.text(max_size=20),
        lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=8), c, max_size=3),
        max_leaves=10,
    ),
)
def test_mutated_records_fail_clearly(key: str, value: Any) -> None:
    data = record()
    data[key] = value
    try:
        rel = release.parse(data, "registry/dcforge-releases:abc")
    except ManifestError as err:
        assert_clear(err, "registry/dcforge-releases:abc")
        return
    # What parses is still a release whose images are in its own manifest.
    assert rel.images
    assert all(rel.manifest.entry(i.name).image_digest == i.digest for i in rel.images)


def assert_clear_lines(err: Exception, source: str) -> None:
    """A permutation file's errors: one clear line per error, each naming the file."""
    for line in str(err).splitlines():
        assert_clear(Exception(line), source)


def assert_clear(err: Exception, source: str) -> None:
    """One line, naming where the bad input came from, no Python repr noise."""
    text = str(err)
    assert text and "\n" not in text, text
    assert source in text, text
    assert "Traceback" not in text


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(["kind", "git_sha", "record_digest", "pinned_at"]),
    st.recursive(
        st.none() | st.integers() | st.text(max_size=70),
        lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=8), c, max_size=3),
        max_leaves=10,
    ),
)
def test_mutated_pin_statements_fail_clearly(key: str, value: Any) -> None:
    data = json.loads(release.pin_statement("a" * 40, "sha256:" + "b" * 64, "2026-11-28T00:00:00Z"))
    data[key] = value
    try:
        pin = release.parse_pin(data, "registry/dcforge-releases:last-known-good")
    except ManifestError as err:
        assert_clear(err, "last-known-good")
        return
    assert len(pin.git_sha) == 40
    assert pin.record_digest.startswith("sha256:")


@pytest.mark.parametrize("digest", ["sha256:" + "g" * 64, "sha256:abc", "md5:" + "a" * 32, ""])
def test_a_record_naming_a_malformed_or_foreign_digest_is_refused(digest: str) -> None:
    data = record()
    data["images"][0]["digest"] = digest
    with pytest.raises(ManifestError, match="does not match its manifest"):
        release.parse(data, "r")


def test_a_record_binds_each_signature_and_attestation_manifest_of_its_images() -> None:
    m = json.loads(json.dumps(GOOD))
    digest = m["permutations"][0]["image_digest"]
    sig, att = "sha256:" + "5" * 64, "sha256:" + "6" * 64
    data = record()
    data["images"][0].update({"signatures": {digest: sig}, "attestations": {digest: att}})
    (image,) = release.parse(data, "r").images
    assert image.bound() and image.signatures == ((digest, sig),)
    assert release.artifact_tag(digest, "att") == f"sha256-{digest[7:]}.att"
    # A binding for an image the record does not hold, half a binding, or not a digest:
    for bad in (
        {"signatures": {digest: sig, "sha256:" + "7" * 64: sig}, "attestations": {digest: att}},
        {"signatures": {digest: sig}},
        {"signatures": {digest: "latest"}, "attestations": {digest: att}},
        {"signatures": [sig], "attestations": {digest: att}},
    ):
        data = record()
        data["images"][0].update(bad)
        with pytest.raises(ManifestError) as err:
            release.parse(data, "registry/dcforge-releases:abc")
        assert_clear(err.value, "registry/dcforge-releases:abc")
    # Without bindings (records of earlier versions): not bound, verified by cosign.
    assert not release.parse(record(), "r").images[0].bound()
