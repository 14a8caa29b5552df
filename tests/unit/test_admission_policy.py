"""Admission policies: Kyverno and policy-controller documents for key and keyless
identities, their CRD schemas, YAML round trips, and refused input."""

from __future__ import annotations

import copy
import hashlib
import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from dcforge.core import admission_policy as ap
from dcforge.core.attestations import PREDICATE_TYPES, PROVENANCE_TYPE
from dcforge.core.errors import ConfigError

HERE = Path(__file__).parent
SCHEMAS = HERE / "crd_schemas"
PEM = (HERE / "keys" / "cosign.pub").read_text()
PRIVATE = (HERE / "keys" / "cosign.key").read_text()
REPO = "ghcr.io/acme/devcontainers"
SOURCE = "https://github.com/acme/devcontainers"
ISSUER = "https://token.actions.githubusercontent.com"
WORKFLOW = f"{SOURCE}/.github/workflows/publish.yml@refs/heads/main"
SBOM, VEX = "https://spdx.dev/Document", "https://openvex.dev/ns/v0.2.0"

KEY = ap.Identity(public_key_pem=PEM)
KEY_TLOG = ap.Identity(public_key_pem=PEM, tlog=True)
KEYLESS = ap.Identity(issuer=ISSUER, subject=WORKFLOW, tlog=True)
KEYLESS_RE = ap.Identity(issuer=ISSUER, subject_regexp=f"{SOURCE}/.*", tlog=True)
# dcforge's reusable workflow: every caller signs as it, the run names the caller.
REUSABLE = ap.Identity(
    issuer=ISSUER,
    subject="https://github.com/dcforge-org/dcforge/.github/workflows/images.yml@refs/tags/v1",
    tlog=True,
    repository="acme/images",
    ref="refs/heads/main",
)
IDENTITIES = {
    "key": KEY, "key-tlog": KEY_TLOG, "keyless": KEYLESS, "keyless-re": KEYLESS_RE,
    "reusable": REUSABLE,
}  # fmt: skip


def verify_images(policy: dict[str, Any]) -> dict[str, Any]:
    verify: dict[str, Any]
    (rule,) = policy["spec"]["rules"]
    (verify,) = rule["verifyImages"]
    return verify


def authorities(policy: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {a["name"]: a for a in policy["spec"]["authorities"]}


def strict(schema: Any) -> Any:
    """A CRD's structural schema as the API server applies it with kubectl's strict field
    validation: an object with listed properties takes no other field."""
    if isinstance(schema, list):
        return [strict(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: strict(v) for k, v in schema.items()}
    if "properties" in out and not out.get("x-kubernetes-preserve-unknown-fields"):
        out.setdefault("additionalProperties", False)
    return out


def validator(name: str) -> jsonschema.Draft7Validator:
    schema = json.loads((SCHEMAS / name).read_text())
    # The API server takes these of every object, listed in its CRD's schema or not.
    for field, kind in (("apiVersion", "string"), ("kind", "string"), ("metadata", "object")):
        schema["properties"].setdefault(field, {"type": kind})
    return jsonschema.Draft7Validator(strict(schema))


KYVERNO_SCHEMA = validator("kyverno-clusterpolicy-v1.json")
SIGSTORE_SCHEMA = validator("policy-controller-clusterimagepolicy-v1beta1.json")


# --- Kyverno ---------------------------------------------------------------------------


def test_kyverno_key_without_tlog() -> None:
    policy = ap.kyverno(REPO, KEY)
    assert (policy["apiVersion"], policy["kind"]) == ("kyverno.io/v1", "ClusterPolicy")
    verify = verify_images(policy)
    assert verify["imageReferences"] == ["ghcr.io/acme/devcontainers/*"]
    assert verify["failureAction"] == "Enforce"
    assert verify["mutateDigest"] is verify["verifyDigest"] is verify["required"] is True
    (attestor_set,) = verify["attestors"]
    (entry,) = attestor_set["entries"]
    assert entry == {
        "keys": {
            "publicKeys": PEM,
            "rekor": {"ignoreTlog": True},
            "ctlog": {"ignoreSCT": True},
        }
    }


def test_kyverno_attestations_are_the_release_types_each_signed_by_the_identity() -> None:
    verify = verify_images(ap.kyverno(REPO, KEY_TLOG))
    assert [a["type"] for a in verify["attestations"]] == list(PREDICATE_TYPES.values())
    assert [a["type"] for a in verify["attestations"]] == [SBOM, PROVENANCE_TYPE]
    for attestation in verify["attestations"]:
        # Without its own attestors Kyverno would read the attestation checking no signer.
        assert attestation["attestors"] == verify["attestors"]
        assert "conditions" not in attestation
    assert verify["attestors"][0]["entries"][0]["keys"]["rekor"] == {"url": ap.REKOR_URL}


def test_kyverno_keyless() -> None:
    (entry,) = verify_images(ap.kyverno(REPO, KEYLESS))["attestors"][0]["entries"]
    assert entry == {
        "keyless": {"issuer": ISSUER, "subject": WORKFLOW, "rekor": {"url": ap.REKOR_URL}}
    }


def test_kyverno_pins_the_run_of_a_reusable_workflow() -> None:
    (entry,) = verify_images(ap.kyverno(REPO, REUSABLE))["attestors"][0]["entries"]
    assert entry["keyless"]["additionalExtensions"] == {
        "githubWorkflowRepository": "acme/images",
        "githubWorkflowRef": "refs/heads/main",
    }
    with pytest.raises(ConfigError, match="not both"):
        ap.Identity(public_key_pem=PEM, repository="acme/images")


def test_a_subject_regexp_must_match_the_whole_subject() -> None:
    (entry,) = verify_images(ap.kyverno(REPO, KEYLESS_RE))["attestors"][0]["entries"]
    pattern = entry["keyless"]["subjectRegExp"]
    assert pattern == f"^(?:{SOURCE}/.*)$"
    # cosign searches: unanchored, a look-alike subject would match.
    assert re.search(pattern, WORKFLOW)
    assert not re.search(pattern, f"https://evil.example/{WORKFLOW}")
    identities = authorities(ap.sigstore(REPO, KEYLESS_RE))["signature"]["keyless"]["identities"]
    assert identities == [{"issuer": ISSUER, "subjectRegExp": pattern}]


def test_kyverno_provenance_must_name_the_source() -> None:
    verify = verify_images(ap.kyverno(REPO, KEY, source_repo=SOURCE))
    (provenance,) = [a for a in verify["attestations"] if a["type"] == PROVENANCE_TYPE]
    (condition,) = provenance["conditions"][0]["all"]
    assert condition["key"] == "{{ buildDefinition.externalParameters.source.repository }}"
    assert (condition["operator"], condition["value"]) == ("Equals", SOURCE)


def test_the_source_is_named_as_the_provenance_names_it() -> None:
    """An scp-like remote, as dcforge.core.provenance writes it into the predicate."""
    verify = verify_images(ap.kyverno(REPO, KEY, source_repo="git@github.com:acme/dc.git"))
    condition = verify["attestations"][1]["conditions"][0]["all"][0]
    assert condition["value"] == "ssh://git@github.com/acme/dc.git"


@pytest.mark.parametrize("build", [ap.kyverno, ap.sigstore])
def test_vex_only_when_required(build: Any) -> None:
    def types(policy: dict[str, Any]) -> list[str]:
        if policy["kind"] == "ClusterPolicy":
            return [a["type"] for a in verify_images(policy)["attestations"]]
        return [a["predicateType"] for a in authorities(policy)["attestations"]["attestations"]]

    assert VEX not in types(build(REPO, KEY))
    assert types(build(REPO, KEY, require_vex=True)) == [SBOM, PROVENANCE_TYPE, VEX]


# --- policy-controller -------------------------------------------------------------------


def test_sigstore_key_without_tlog() -> None:
    policy = ap.sigstore(REPO, KEY)
    assert policy["apiVersion"] == "policy.sigstore.dev/v1beta1"
    assert policy["kind"] == "ClusterImagePolicy"
    assert policy["spec"]["mode"] == "enforce"
    assert policy["spec"]["images"] == [{"glob": "ghcr.io/acme/devcontainers/**"}]
    signature, attestations = policy["spec"]["authorities"]
    assert signature == {"name": "signature", "key": {"data": PEM}}  # no ctlog: no tlog
    assert attestations["key"] == {"data": PEM}
    assert [(a["name"], a["predicateType"]) for a in attestations["attestations"]] == [
        ("sbom", SBOM),
        ("provenance", PROVENANCE_TYPE),
    ]


def test_sigstore_requires_both_authorities() -> None:
    """Authorities are alternatives; the policy makes the signature and the attestations
    both necessary."""
    rego = ap.sigstore(REPO, KEY)["spec"]["policy"]
    assert rego["type"] == "rego"
    assert rego["data"].startswith("package sigstore\ndefault isCompliant = false\n")
    assert 'count(input.authorityMatches["signature"].signatures) > 0' in rego["data"]
    assert 'input.authorityMatches["attestations"].attestations' in rego["data"]


def test_sigstore_keyless_with_tlog() -> None:
    found = authorities(ap.sigstore(REPO, KEYLESS))
    for authority in found.values():
        assert authority["keyless"] == {
            "url": ap.FULCIO_URL,
            "identities": [{"issuer": ISSUER, "subject": WORKFLOW}],
        }
        assert authority["ctlog"] == {"url": ap.REKOR_URL}
    assert authorities(ap.sigstore(REPO, KEY_TLOG))["signature"]["ctlog"] == {"url": ap.REKOR_URL}


def test_sigstore_provenance_source_in_rego() -> None:
    attestations = authorities(ap.sigstore(REPO, KEY, source_repo=SOURCE))["attestations"]
    sbom, provenance = attestations["attestations"]
    assert "policy" not in sbom
    assert provenance["policy"] == {
        "type": "rego",
        "data": "package sigstore\ndefault isCompliant = false\nisCompliant {\n"
        "  input.predicate.buildDefinition.externalParameters.source.repository"
        f' == "{SOURCE}"\n}}\n',
    }


def test_docker_hub_as_each_controller_names_it() -> None:
    assert verify_images(ap.kyverno("index.docker.io/acme", KEY))["imageReferences"] == [
        "docker.io/acme/*"
    ]
    assert ap.sigstore("docker.io/acme", KEY)["spec"]["images"] == [
        {"glob": "index.docker.io/acme/**"}
    ]


# --- schemas, YAML -------------------------------------------------------------------------


@pytest.mark.parametrize("vex", [False, True])
@pytest.mark.parametrize("identity", IDENTITIES.values(), ids=IDENTITIES.keys())
def test_documents_match_the_crd_schemas(identity: ap.Identity, vex: bool) -> None:
    kwargs: dict[str, Any] = {"source_repo": SOURCE, "require_vex": vex}
    KYVERNO_SCHEMA.validate(ap.kyverno(REPO, identity, **kwargs))
    SIGSTORE_SCHEMA.validate(ap.sigstore(REPO, identity, **kwargs))


def test_the_strict_schemas_catch_a_misspelt_field() -> None:
    policy = ap.kyverno(REPO, KEY)
    wrong = copy.deepcopy(policy)
    verify_images(wrong)["attestors"][0]["entries"][0]["keys"]["rekor"] = {"ignoreTLog": True}
    with pytest.raises(jsonschema.ValidationError, match="ignoreTLog"):
        KYVERNO_SCHEMA.validate(wrong)
    cip = ap.sigstore(REPO, KEY)
    cip["spec"]["authorities"][0]["ctlog"] = {"ignoreTlog": True}
    with pytest.raises(jsonschema.ValidationError, match="ignoreTlog"):
        SIGSTORE_SCHEMA.validate(cip)


def test_schema_extracts_are_the_ones_the_readme_names() -> None:
    readme = (SCHEMAS / "README.md").read_text()
    for path in sorted(SCHEMAS.glob("*.json")):
        assert f"`{path.name}`" in readme
        assert hashlib.sha256(path.read_bytes()).hexdigest() in readme, path.name


@pytest.mark.parametrize("identity", IDENTITIES.values(), ids=IDENTITIES.keys())
def test_render_round_trips(identity: ap.Identity) -> None:
    docs = [ap.kyverno(REPO, identity, source_repo=SOURCE), ap.sigstore(REPO, identity)]
    text = ap.render(*docs)
    assert list(yaml.safe_load_all(text)) == docs
    assert text.startswith("---\napiVersion: kyverno.io/v1\nkind: ClusterPolicy\n")
    assert text.count("\n---\n") == 1
    assert "&id" not in text and "*id" not in text  # each attestor written out in full
    assert text == ap.render(*copy.deepcopy(docs))


def test_render_writes_keys_and_rego_as_blocks() -> None:
    text = ap.render(ap.sigstore(REPO, KEY, source_repo=SOURCE))
    assert "data: |\n" in text and "-----BEGIN PUBLIC KEY-----\n" in text
    assert "\\n" not in text


def test_render_needs_a_document() -> None:
    with pytest.raises(ConfigError, match="no admission policy"):
        ap.render()


# --- refused input ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("repository", "reason"),
    [
        ("", "names no registry host"),
        ("acme/devcontainers", "names no registry host"),
        ("devcontainers", "names no registry host"),
        ("ghcr.io", "not a repository prefix"),
        ("ghcr.io/", "not a repository prefix"),
        ("ghcr.io/acme/devcontainers/*", "not a repository prefix"),
        ("ghcr.io/acme/python:3.12", "not a repository prefix"),
        ("ghcr.io/acme/python@sha256:" + "a" * 64, "not a repository prefix"),
        ("https://ghcr.io/acme", "not a repository prefix"),
        ("ghcr.io/Acme", "not a repository prefix"),
        ("ghcr.io//acme", "not a repository prefix"),
        ("[::1]:5000/acme", "not a repository prefix"),
    ],
)
@pytest.mark.parametrize("build", [ap.kyverno, ap.sigstore])
def test_nonsense_repositories_are_refused(build: Any, repository: str, reason: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(reason)):
        build(repository, KEY)


@pytest.mark.parametrize(
    "repository", ["localhost:5000/acme", "registry.example:443/a/b", "GHCR.io/acme"]
)
def test_registry_hosts_docker_would_accept(repository: str) -> None:
    glob = ap.sigstore(repository, KEY)["spec"]["images"][0]["glob"]
    assert glob == f"{repository.lower()}/**"


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({}, "an identity needs a public key"),
        ({"subject": WORKFLOW, "tlog": True}, "an identity needs a public key"),
        ({"public_key_pem": PEM, "issuer": ISSUER}, "not both"),
        ({"public_key_pem": PRIVATE}, "private key"),
        ({"public_key_pem": "ssh-ed25519 AAAA"}, "not PEM"),
        ({"public_key_pem": "-----BEGIN PUBLIC KEY-----\n!!\n-----END PUBLIC KEY-----"}, "not PEM"),
        ({"issuer": "http://issuer.example", "subject": "x", "tlog": True}, "not an https URL"),
        ({"issuer": ISSUER, "tlog": True}, "exactly one of subject"),
        ({"issuer": ISSUER, "subject": "a", "subject_regexp": "a", "tlog": True}, "exactly one"),
        ({"issuer": ISSUER, "subject_regexp": "(", "tlog": True}, "subject_regexp"),
        ({"issuer": ISSUER, "subject": WORKFLOW}, "transparency log"),
    ],
)
def test_identities_that_cannot_work_are_refused(fields: dict[str, Any], reason: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(reason)):
        ap.Identity(**fields)


def test_a_pem_with_crlf_line_ends_is_one_key() -> None:
    crlf = ap.Identity(public_key_pem=PEM.replace("\n", "\r\n"))
    assert ap.sigstore(REPO, crlf) == ap.sigstore(REPO, KEY)


@pytest.mark.parametrize("source", ["/home/me/devcontainers", "file:///srv/git/dc", "urn:x"])
def test_a_source_no_provenance_names_is_refused(source: str) -> None:
    with pytest.raises(ConfigError, match="not a repository URL"):
        ap.kyverno(REPO, KEY, source_repo=source)


@pytest.mark.parametrize("name", ["", "Dcforge", "dcforge_images", "-x", "a" * 254])
def test_a_name_kubernetes_refuses_is_refused(name: str) -> None:
    with pytest.raises(ConfigError, match="not a Kubernetes object name"):
        ap.sigstore(REPO, KEY, name=name)
