"""A multi-platform index's SBOM: SPDX 2.3 naming each platform's SBOM by namespace and
sha256, the same bytes for the same inputs."""

from __future__ import annotations

import json

import pytest

from dcforge.core import index_sbom

A, B, I = ("sha256:" + c * 64 for c in "abi")  # noqa: E741
CHILDREN = [
    index_sbom.PlatformSbom("linux/arm64", B, "https://anchore.com/syft/image/b", "2" * 40),
    index_sbom.PlatformSbom("linux/amd64", A, "https://anchore.com/syft/image/a", "1" * 40),
]


def test_the_index_sbom_names_each_platform_sbom_by_namespace_and_checksum() -> None:
    doc = index_sbom.document("ghcr.io/acme/dc/base", I, CHILDREN, "2026-12-07T00:00:00Z")
    assert doc["spdxVersion"] == "SPDX-2.3" and doc["SPDXID"] == "SPDXRef-DOCUMENT"
    refs = {r["externalDocumentId"]: r for r in doc["externalDocumentRefs"]}
    assert refs["DocumentRef-linux-amd64"]["spdxDocument"] == "https://anchore.com/syft/image/a"
    assert refs["DocumentRef-linux-arm64"]["checksum"] == {
        "algorithm": "SHA1",
        "checksumValue": "2" * 40,
    }
    (package,) = doc["packages"]
    assert package["versionInfo"] == I
    assert package["externalRefs"][0]["referenceLocator"].startswith("pkg:oci/base@sha256%3A")
    contained = [r["relatedSpdxElement"] for r in doc["relationships"][1:]]
    assert contained == [
        "DocumentRef-linux-amd64:SPDXRef-DOCUMENT",
        "DocumentRef-linux-arm64:SPDXRef-DOCUMENT",
    ]
    # Every element a relationship names exists (in the document or a referenced one).
    ids = {"SPDXRef-DOCUMENT", package["SPDXID"]} | set(refs)
    for rel in doc["relationships"]:
        assert rel["spdxElementId"] in ids
        assert rel["relatedSpdxElement"].split(":")[0] in ids


def test_the_same_inputs_give_the_same_document_and_others_another() -> None:
    make = index_sbom.document
    one = json.dumps(make("r.io/x/y", I, CHILDREN, "t"), sort_keys=True)
    assert one == json.dumps(make("r.io/x/y", I, list(reversed(CHILDREN)), "t"), sort_keys=True)
    other = make("r.io/x/y", I, [CHILDREN[0]], "t")
    assert other["documentNamespace"] != json.loads(one)["documentNamespace"]
    with pytest.raises(ValueError, match="needs the platform images"):
        make("r.io/x/y", I, [], "t")


def test_a_platform_sbom_is_named_by_the_sha1_of_its_canonical_json() -> None:
    doc = {"spdxVersion": "SPDX-2.3", "name": "é", "packages": [{"b": 1, "a": 2}]}
    same = json.loads(json.dumps(doc, indent=4))  # another layout, the same document
    assert index_sbom.checksum(doc) == index_sbom.checksum(same)
    assert index_sbom.canonical(doc).startswith(b'{"name":"\xc3\xa9"')
    assert len(index_sbom.checksum(doc)) == 40
