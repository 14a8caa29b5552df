"""dcforge.core.dsse makes the envelopes cosign attest makes, and dcforge's own reader of
cosign's output takes them as one statement for their image."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from dcforge.core import attestations, dsse
from dcforge.core.errors import ToolError
from dcforge.infra import keyfile

KEYS = Path(__file__).parent / "keys"
DIGEST = "sha256:" + "ab" * 32


def test_pae_is_the_specs_encoding() -> None:
    # The DSSE protocol's own example.
    assert dsse.pae("http://example.com/HelloWorld", b"hello world") == (
        b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
    )


def test_the_statement_is_cosigns() -> None:
    payload = dsse.statement("reg.example/team/img", DIGEST, "spdxjson", {"spdxVersion": "2.3"})
    assert json.loads(payload) == {
        "_type": "https://in-toto.io/Statement/v0.1",
        "predicateType": "https://spdx.dev/Document",
        "subject": [{"name": "reg.example/team/img", "digest": {"sha256": "ab" * 32}}],
        "predicate": {"spdxVersion": "2.3"},
    }
    provenance = dsse.statement("r/i", DIGEST, attestations.PROVENANCE_TYPE, {})
    assert json.loads(provenance)["predicateType"] == "https://slsa.dev/provenance/v1"


@pytest.mark.parametrize("digest", ["sha256:abc", "sha512:" + "ab" * 64, "latest", ""])
def test_only_a_sha256_digest_is_a_subject(digest: str) -> None:
    with pytest.raises(ToolError, match="not a sha256 digest"):
        dsse.statement("r/i", digest, "spdxjson", {})


def test_a_short_type_cosign_would_re_encode_is_not_made_here() -> None:
    with pytest.raises(ToolError, match="slsaprovenance1"):
        dsse.statement("r/i", DIGEST, "slsaprovenance1", {})


def test_the_envelope_verifies_and_reads_as_one_statement_for_its_image() -> None:
    key = keyfile.load(KEYS / "cosign.key", "unit-test-only")
    assert key is not None
    payload = dsse.statement("r/i", DIGEST, "spdxjson", {"name": "x"})
    envelope = dsse.envelope(payload, key.sign)
    assert envelope["payloadType"] == "application/vnd.in-toto+json"
    assert envelope["signatures"][0]["keyid"] == ""  # cosign's verifier skips other ids
    public = load_pem_public_key((KEYS / "cosign.pub").read_bytes())
    assert isinstance(public, ec.EllipticCurvePublicKey)
    signature = base64.b64decode(envelope["signatures"][0]["sig"])
    public.verify(signature, dsse.pae(dsse.PAYLOAD_TYPE, payload), ec.ECDSA(hashes.SHA256()))
    line = json.dumps(envelope)
    assert attestations.one_each(line, [DIGEST], "https://spdx.dev/Document")
    assert not attestations.one_each(line, [DIGEST], "https://slsa.dev/provenance/v1")


def test_a_predicate_that_is_not_json_is_named(tmp_path: Path) -> None:
    bad = tmp_path / "x.spdx.json"
    bad.write_text("{not json")
    with pytest.raises(ToolError, match=r"x\.spdx\.json: not a JSON predicate"):
        dsse.read_predicate(bad)
    with pytest.raises(ToolError, match="not a JSON predicate"):
        dsse.read_predicate(tmp_path / "absent.json")


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ('{"score": NaN}', "NaN is not JSON"),
        ('{"score": -Infinity}', "Infinity is not JSON"),
        ('{"score": 1e400}', "does not fit a float64"),
        ('{"n": ' + "9" * 400 + "}", "does not fit a float64"),
        ("[1, 2]", "not a JSON object"),
        ('"a string"', "not a JSON object"),
        # past any Python's recursion limit (3.13 reads 5,000 levels) and Go's 10,000
        ('{"a":' * 100_000 + "1" + "}" * 100_000, "nested too deeply"),
    ],
)
def test_a_predicate_cosign_could_not_read_is_never_attached(
    tmp_path: Path, text: str, why: str
) -> None:
    """cosign (Go) refuses these; once attached, an attestation it cannot read would fail
    every later verify of the image, so they are refused before anything is signed."""
    bad = tmp_path / "p.json"
    bad.write_text(text)
    with pytest.raises(ToolError, match=why):
        dsse.read_predicate(bad)


def test_a_predicate_in_utf16_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "p.json"
    bad.write_bytes('{"name": "x"}'.encode("utf-16"))
    with pytest.raises(ToolError, match="not a JSON predicate"):
        dsse.read_predicate(bad)


def test_a_statement_never_writes_what_is_not_json() -> None:
    with pytest.raises(ToolError, match="not JSON"):
        dsse.statement("r/i", DIGEST, "spdxjson", {"x": float("nan")})


def test_the_signature_payload_is_the_bytes_cosign_signs() -> None:
    # What `cosign sign --key … localhost:5000/proto/deb@sha256:692d…` stored here (2.5.0).
    digest = "sha256:692dfe1766af4c612aaf1c582b81f5d95ee6edc79dc8de5fedd7813dfd659d53"
    assert dsse.signature_payload("localhost:5000/proto/deb", digest) == (
        b'{"critical":{"identity":{"docker-reference":"localhost:5000/proto/deb"},'
        b'"image":{"docker-manifest-digest":"' + digest.encode() + b'"},'
        b'"type":"cosign container image signature"},"optional":null}'
    )


@pytest.mark.parametrize(
    ("repository", "digest"),
    [
        ("reg.example/team/img", DIGEST + "\n"),  # `$` would match before a newline
        ("reg.example/team/img", DIGEST.upper()),
        ("reg.example/team/img", f"{DIGEST}@{DIGEST}"),
        ("reg.example/team/img:v1", DIGEST),  # a payload naming a tag would claim it
        ("reg.example/team/img@" + DIGEST, DIGEST),
        ("img", DIGEST),
        ("/team/img", DIGEST),
    ],
)
def test_a_payload_names_one_repository_and_one_digest(repository: str, digest: str) -> None:
    with pytest.raises(ToolError, match="refusing to"):
        dsse.signature_payload(repository, digest)
    with pytest.raises(ToolError, match="refusing to"):
        dsse.statement(repository, digest, "spdxjson", {})
