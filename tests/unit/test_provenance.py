"""SLSA v1 provenance: the predicate must satisfy a strict, independent verifier.

The verifier is the in-toto attestation protobuf for the SLSA v1 provenance predicate
(``json_format.Parse`` rejects unknown fields and bad timestamps), plus what the proto
types only as ``string``: every URI is an absolute RFC 3986 URI, names no local path and
carries no credential.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import urlsplit

import pytest
from google.protobuf import json_format
from hypothesis import given
from hypothesis import strategies as st
from in_toto_attestation.predicates.provenance.v1 import provenance_pb2
from in_toto_attestation.v1.resource_descriptor import ResourceDescriptor

from dcforge.core import manifest as mf
from dcforge.core import provenance
from tests.unit.test_manifest import GOOD, SHA

CI_ENV = {
    "GITHUB_ACTIONS": "true",
    "GITHUB_SERVER_URL": "https://github.com",
    "GITHUB_REPOSITORY": "acme/images",
    "GITHUB_RUN_ID": "4242",
    "GITHUB_RUN_ATTEMPT": "3",
    "GITHUB_WORKFLOW_REF": "acme/images/.github/workflows/publish.yml@refs/heads/main",
}
LOCAL_REMOTES = ["", "file:///work/main", "/work/main", "../main", "C:\\src\\main"]
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*")
_URI_CHARS = re.compile(r"(?:[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=]|%[0-9A-Fa-f]{2})+")


def _entry() -> tuple[mf.Manifest, mf.Entry]:
    m = mf.parse(copy.deepcopy(GOOD), "m")
    return m, m.entry("tiny-one")


def _predicate(env: Mapping[str, str], remote: str, *, allow_dirty: bool = False) -> dict[str, Any]:
    m, e = _entry()
    return provenance.predicate(
        m, e, env, remote, invocation_id=provenance.invocation_id(env), allow_dirty=allow_dirty
    )


def assert_absolute_uri(value: str) -> None:
    """A strict RFC 3986 absolute URI, naming nothing on the builder's disk, no secret."""
    assert _URI_CHARS.fullmatch(value), f"characters not allowed in a URI: {value!r}"
    parts = urlsplit(value)
    assert _SCHEME.fullmatch(parts.scheme), f"no scheme: {value!r}"
    assert parts.netloc or parts.path, f"empty URI: {value!r}"
    if parts.netloc:
        assert parts.hostname, f"no host: {value!r}"
        _ = parts.port  # ValueError on a non-numeric port ("oci://busybox:latest")
    assert parts.password is None, f"credential in {value!r}"
    assert "file" not in parts.scheme.split("+"), f"local path in {value!r}"


def _uris(doc: Any) -> Iterator[str]:
    if isinstance(doc, dict):
        for key, value in doc.items():
            if key == "uri" and isinstance(value, str):
                yield value
            else:
                yield from _uris(value)
    elif isinstance(doc, list):
        for item in doc:
            yield from _uris(item)


def strict_validate(pred: dict[str, Any]) -> provenance_pb2.Provenance:
    """Everything a strict SLSA v1 verifier checks; raises on the first problem."""
    proto = json_format.Parse(json.dumps(pred), provenance_pb2.Provenance())
    for dep in proto.build_definition.resolved_dependencies:
        ResourceDescriptor.copy_from_pb(dep).validate()
    assert proto.run_details.metadata.invocation_id
    uris = [
        *_uris(pred),
        proto.build_definition.build_type,
        proto.run_details.builder.id,
        pred["buildDefinition"]["externalParameters"]["source"]["repository"],
    ]
    for uri in uris:
        assert_absolute_uri(uri)
    return proto


# What the predicate emitted before: `_repo_url`'s file:// fallback and the raw remote
# went straight into the predicate, and the invocation id repeated for every publish of a
# commit. (json_format.Parse itself accepted it: the proto types URIs as plain strings.)
OLD_OUTPUTS = {
    "file:// fallback": "file:///work/main",
    "scp remote": "git@github.com:acme/images.git",
    "token in remote": "https://x-access-token:ghp_SECRET@github.com/acme/images.git",
}


@pytest.mark.parametrize("repo_url", OLD_OUTPUTS.values(), ids=OLD_OUTPUTS.keys())
def test_strict_validator_rejects_the_old_output(repo_url: str) -> None:
    m, _ = _entry()
    old = {
        "buildDefinition": {
            "buildType": provenance.BUILD_TYPE,
            "externalParameters": {"source": {"repository": repo_url, "ref": SHA}},
            "internalParameters": {"gitDirty": False},
            "resolvedDependencies": [
                {"uri": f"git+{repo_url}@{SHA}", "digest": {"gitCommit": SHA}},
            ],
        },
        "runDetails": {
            "builder": {"id": provenance.builder_id({})},
            "metadata": {"invocationId": f"local-{SHA[:12]}", "startedOn": m.created_at},
        },
    }
    with pytest.raises(AssertionError):
        strict_validate(old)


def test_the_proto_parser_is_strict() -> None:
    pred = _predicate({}, "https://github.com/acme/images.git")
    strict_validate(pred)
    bad = copy.deepcopy(pred)
    bad["runDetails"]["metadata"]["invocationID"] = bad["runDetails"]["metadata"].pop(
        "invocationId"
    )
    with pytest.raises(json_format.ParseError, match="invocationID"):
        strict_validate(bad)
    bad = copy.deepcopy(pred)
    bad["runDetails"]["metadata"]["startedOn"] = "yesterday"
    with pytest.raises(json_format.ParseError):
        strict_validate(bad)


@pytest.mark.parametrize(
    ("env", "remote"),
    [
        (CI_ENV, "https://github.com/acme/images.git"),
        ({}, "https://github.com/acme/images.git"),
        ({}, "https://x-access-token:ghp_SECRET@github.com/acme/images.git"),
        ({}, "git@github.com:acme/images.git"),
        ({}, "ssh://git:hunter2@git.example.com:2222/acme/images.git"),
        *(({}, r) for r in LOCAL_REMOTES),
    ],
)
def test_predicate_passes_the_strict_validator(env: Mapping[str, str], remote: str) -> None:
    pred = _predicate(env, remote)
    proto = strict_validate(pred)
    text = json.dumps(pred)
    assert "SECRET" not in text
    assert "hunter2" not in text
    assert "/work/main" not in text
    assert proto.build_definition.resolved_dependencies[0].digest["gitCommit"] == SHA


def test_ci_source_and_invocation() -> None:
    pred = _predicate(CI_ENV, "file:///runner/work/images")
    strict_validate(pred)
    assert pred["buildDefinition"]["externalParameters"]["source"] == {
        "repository": "https://github.com/acme/images",
        "ref": SHA,
    }
    assert pred["buildDefinition"]["resolvedDependencies"][0]["uri"] == (
        f"git+https://github.com/acme/images@{SHA}"
    )
    assert pred["runDetails"]["metadata"]["invocationId"] == (
        "https://github.com/acme/images/actions/runs/4242/attempts/3"
    )
    assert pred["runDetails"]["builder"]["id"] == (
        "https://github.com/acme/images/.github/workflows/publish.yml@refs/heads/main"
    )


def test_local_invocation_ids_are_fresh() -> None:
    first, second = provenance.invocation_id({}), provenance.invocation_id({})
    assert first != second
    for value in (first, second):
        assert value.startswith("urn:uuid:")
        assert_absolute_uri(value)
    # a GitHub env without the attempt is not trusted to be unique per attempt
    partial = {k: v for k, v in CI_ENV.items() if k != "GITHUB_RUN_ATTEMPT"}
    assert provenance.invocation_id(partial).startswith("urn:uuid:")


def test_the_caller_s_invocation_id_is_used_for_every_permutation() -> None:
    m, e = _entry()
    run = provenance.invocation_id({})
    ids = {
        provenance.predicate(m, e, {}, "", invocation_id=run, allow_dirty=False)["runDetails"][
            "metadata"
        ]["invocationId"]
        for _ in range(2)
    }
    assert ids == {run}
    with pytest.raises(ValueError, match="invocation_id"):
        provenance.predicate(m, e, {}, "", invocation_id="", allow_dirty=False)


@pytest.mark.parametrize(
    ("remote", "expected"),
    [
        ("https://github.com/acme/images.git", "https://github.com/acme/images.git"),
        (
            "https://user:ghp_SECRET@github.com/acme/images.git",
            "https://github.com/acme/images.git",
        ),
        ("https://ghp_SECRET@github.com/acme/images.git", "https://github.com/acme/images.git"),
        ("https://github.com/acme/images.git?token=SECRET#x", "https://github.com/acme/images.git"),
        ("HTTPS://git.example.com:8443/acme/images", "https://git.example.com:8443/acme/images"),
        ("git@github.com:acme/images.git", "ssh://git@github.com/acme/images.git"),
        ("github.com:acme/images.git", "ssh://github.com/acme/images.git"),
        ("git@host.example:/srv/git/images.git", "ssh://git@host.example/srv/git/images.git"),
        ("ssh://git:pw@host.example:2222/a/b.git", "ssh://git@host.example:2222/a/b.git"),
        ("git+ssh://git@host.example/a/b.git", "ssh://git@host.example/a/b.git"),
        *((r, provenance.LOCAL_SOURCE) for r in LOCAL_REMOTES),
        ("https://github.com", provenance.LOCAL_SOURCE),
        ("https://github.com/acme/my images", provenance.LOCAL_SOURCE),
        ("http://git.example.com/acme/images", provenance.LOCAL_SOURCE),
    ],
)
def test_source_uri_from_the_remote(remote: str, expected: str) -> None:
    assert provenance.source_uri({}, remote) == expected
    assert provenance.source_uri({}, expected) == expected  # idempotent
    assert_absolute_uri(expected)


def test_source_uri_prefers_github() -> None:
    env = {"GITHUB_SERVER_URL": "https://ghe.example.com/", "GITHUB_REPOSITORY": "acme/images"}
    assert provenance.source_uri(env, "/work/main") == "https://ghe.example.com/acme/images"


@given(st.text(max_size=80))
def test_source_uri_is_always_a_clean_absolute_uri(remote: str) -> None:
    uri = provenance.source_uri({}, remote)
    assert_absolute_uri(uri)
    assert urlsplit(uri).scheme in {"https", "ssh", "urn"}
    assert provenance.source_uri({}, uri) == uri


def test_urn_source_dependency_has_no_git_prefix() -> None:
    pred = _predicate({}, "")
    assert pred["buildDefinition"]["externalParameters"]["source"]["repository"] == (
        "urn:dcforge:local-source"
    )
    assert pred["buildDefinition"]["resolvedDependencies"][0] == {
        "uri": "urn:dcforge:local-source",
        "digest": {"gitCommit": SHA},
    }


def test_ssh_dependency_uri() -> None:
    pred = _predicate({}, "git@github.com:acme/images.git")
    assert pred["buildDefinition"]["resolvedDependencies"][0]["uri"] == (
        f"git+ssh://git@github.com/acme/images.git@{SHA}"
    )


@pytest.mark.parametrize(
    ("ref", "uri"),
    [
        ("localhost:5000/library/busybox:latest", "oci://localhost:5000/library/busybox:latest"),
        ("busybox:latest", "oci://docker.io/library/busybox:latest"),
        ("acme/base@sha256:" + "d" * 64, "oci://docker.io/acme/base"),
        ("ghcr.io/acme/base:1", "oci://ghcr.io/acme/base:1"),
    ],
)
def test_base_image_uri(ref: str, uri: str) -> None:
    data = copy.deepcopy(GOOD)
    data["permutations"][0]["base_image"]["ref"] = ref
    m = mf.parse(data, "m")
    pred = provenance.predicate(
        m, m.entry("tiny-one"), {}, "", invocation_id="urn:uuid:x", allow_dirty=False
    )
    assert pred["buildDefinition"]["resolvedDependencies"][1] == {
        "uri": uri,
        "digest": {"sha256": "d" * 64},
        "name": "base-image",
    }
    assert_absolute_uri(uri)


@pytest.mark.parametrize("allow_dirty", [True, False])
def test_internal_parameters_record_dirty_and_allow_dirty(allow_dirty: bool) -> None:
    data = copy.deepcopy(GOOD)
    data["git_dirty"] = True
    data["builder"] = "buildx 0.13.1"
    m = mf.parse(data, "m")
    pred = provenance.predicate(
        m, m.entry("tiny-one"), {}, "", invocation_id="urn:uuid:x", allow_dirty=allow_dirty
    )
    strict_validate(pred)
    assert pred["buildDefinition"]["internalParameters"] == {
        "inputHash": "sha256:" + "e" * 64,
        "builder": "buildx 0.13.1",
        "gitDirty": True,
        "allowDirty": allow_dirty,
    }
    assert pred["buildDefinition"]["externalParameters"]["platforms"] == ["linux/amd64"]
    assert pred["buildDefinition"]["externalParameters"]["permutation"] == "tiny-one"


def test_an_index_provenance_lists_its_platform_images_and_passes_the_strict_validator() -> None:
    raw = json.loads(json.dumps(GOOD))
    raw["permutations"][0]["platforms"] = ["linux/amd64", "linux/arm64"]
    raw["permutations"][0]["platform_digests"] = {
        "linux/amd64": "sha256:" + "1" * 64,
        "linux/arm64": "sha256:" + "2" * 64,
    }
    m = mf.parse(raw, "m")
    e = m.permutations[0]
    pred = provenance.index_predicate(
        m, e, {}, "https://github.com/acme/images.git", invocation_id="run-1", allow_dirty=False
    )
    strict_validate(pred)
    made = pred["runDetails"]["byproducts"]
    assert [(b["name"], b["digest"]["sha256"]) for b in made] == [
        ("linux/amd64", "1" * 64),
        ("linux/arm64", "2" * 64),
    ]
    assert all(b["uri"].startswith("oci://") and b["uri"].endswith(e.repository) for b in made)
    assert provenance.source_commit(pred) == m.git_sha
    assert "platform" not in pred["buildDefinition"]["externalParameters"]  # the whole index
