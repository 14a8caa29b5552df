"""The SBOM of a multi-platform index (pure): an SPDX 2.3 document that lists no packages of
its own but names, by namespace and checksum, the SBOM of each platform's image.

Attestations of a multi-platform image sit on its platform images; a tag or an index digest
has none of its own, so ``cosign verify-attestation --type spdxjson`` on what users pull
finds nothing (sigstore/cosign#3552) and admission controllers, which check the digest a
Pod names, refuse it. Publish therefore attests the index too: this document as its SBOM,
and a provenance listing the platform images (:func:`dcforge.core.provenance.
index_predicate`). Each platform's full SBOM stays on its own image; the checksums here
bind the index's document to exactly those. SPDX 2.3 §6.6 takes a SHA1 there, and of what
a consumer can recompute from the attestation: the platform SBOM's JSON in canonical form
(:func:`canonical`: keys sorted, no spaces, UTF-8), since cosign's statement carries the
document as JSON, not its file's bytes.

SPDX 2.3: https://spdx.github.io/spdx-spec/v2.3/ (document creation, external document
references, relationships).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

NAMESPACE_PREFIX = "https://dcforge.dev/spdx/index/"


@dataclass(frozen=True)
class PlatformSbom:
    """One platform's image and its SBOM, as the gate wrote it."""

    platform: str  # os/arch[/variant]
    digest: str  # the platform image's digest
    namespace: str  # the SBOM's documentNamespace
    sha1: str  # of the SBOM's canonical JSON (:func:`canonical`), hex


def canonical(document: Any) -> bytes:
    """The canonical JSON bytes a platform SBOM's checksum is of."""
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def checksum(document: Any) -> str:
    """SHA1 (hex) of :func:`canonical` — what SPDX names an external document by."""
    return hashlib.sha1(canonical(document), usedforsecurity=False).hexdigest()


def _ref_id(platform: str) -> str:
    return "DocumentRef-" + "-".join(part for part in platform.split("/") if part)


def _package(repository: str, index_digest: str) -> dict[str, Any]:
    """The index itself, as the one package the document describes."""
    name = repository.rsplit("/", 1)[-1]
    return {
        "SPDXID": "SPDXRef-Index",
        "name": name,
        "versionInfo": index_digest,
        "downloadLocation": "NOASSERTION",
        "filesAnalyzed": False,
        "primaryPackagePurpose": "CONTAINER",
        "externalRefs": [
            {
                "referenceCategory": "PACKAGE-MANAGER",
                "referenceType": "purl",
                "referenceLocator": f"pkg:oci/{name}@{quote(index_digest, safe='')}"
                f"?repository_url={quote(repository, safe='/:')}",
            }
        ],
    }


def document(
    repository: str, index_digest: str, children: Sequence[PlatformSbom], created: str
) -> dict[str, Any]:
    """The index's SPDX document (deterministic: the same inputs give the same bytes;
    ``created``: an RFC 3339 UTC time, e.g. the build's SOURCE_DATE_EPOCH)."""
    if not children:
        raise ValueError("an index SBOM needs the platform images' SBOMs")
    ordered = sorted(children, key=lambda c: c.platform)
    seed = json.dumps([repository, index_digest, [c.__dict__ for c in ordered]], sort_keys=True)
    package = _package(repository, index_digest)
    return {
        "spdxVersion": "SPDX-2.3",
        "dataLicense": "CC0-1.0",
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": f"{repository}@{index_digest}",
        "documentNamespace": NAMESPACE_PREFIX + hashlib.sha256(seed.encode()).hexdigest(),
        "creationInfo": {"created": created, "creators": ["Tool: dcforge"]},
        "comment": "A multi-platform index: each platform image's SBOM is attested on that "
        "image and named here by namespace and SHA1 of its canonical JSON.",
        "externalDocumentRefs": [
            {
                "externalDocumentId": _ref_id(c.platform),
                "spdxDocument": c.namespace,
                "checksum": {"algorithm": "SHA1", "checksumValue": c.sha1},
            }
            for c in ordered
        ],
        "packages": [package],
        "relationships": [
            {
                "spdxElementId": "SPDXRef-DOCUMENT",
                "relationshipType": "DESCRIBES",
                "relatedSpdxElement": "SPDXRef-Index",
            },
            *(
                {
                    "spdxElementId": "SPDXRef-Index",
                    "relationshipType": "CONTAINS",
                    "relatedSpdxElement": f"{_ref_id(c.platform)}:SPDXRef-DOCUMENT",
                    "comment": f"the {c.platform} image {c.digest}",
                }
                for c in ordered
            ),
        ],
    }
