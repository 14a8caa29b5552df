"""Edits of cosign's attestation manifests in a plain-HTTP registry, as someone with push
rights but not the signing key can make them: keep, drop or swap the signed statements
(layers) a ``sha256-….att`` manifest lists."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any

import requests

MEDIA = "application/vnd.oci.image.manifest.v1+json"


@dataclass(frozen=True)
class Attestations:
    """The attestation manifest of one image: its URL and document."""

    url: str
    blobs: str
    doc: dict[str, Any]

    def predicate_type(self, layer: dict[str, Any]) -> str:
        envelope = requests.get(f"{self.blobs}/{layer['digest']}", timeout=30).json()
        return str(json.loads(base64.b64decode(envelope["payload"]))["predicateType"])

    def layer(self, predicate_type: str) -> dict[str, Any]:
        (found,) = [x for x in self.doc["layers"] if self.predicate_type(x) == predicate_type]
        layer: dict[str, Any] = found
        return layer

    def predicate(self, predicate_type: str) -> Any:
        layer = self.layer(predicate_type)
        envelope = requests.get(f"{self.blobs}/{layer['digest']}", timeout=30).json()
        return json.loads(base64.b64decode(envelope["payload"]))["predicate"]

    def put(self, layers: list[dict[str, Any]]) -> None:
        doc = {**self.doc, "layers": layers}
        reply = requests.put(
            self.url, data=json.dumps(doc), headers={"Content-Type": MEDIA}, timeout=30
        )
        reply.raise_for_status()

    def delete(self) -> None:
        """Delete the manifest (by its digest): the image has no attestations then."""
        head = requests.head(self.url, headers={"Accept": MEDIA}, timeout=30)
        digest = head.headers["Docker-Content-Digest"]
        url = self.url.rsplit("/", 1)[0] + f"/{digest}"
        requests.delete(url, timeout=30).raise_for_status()

    def restore(self) -> None:
        self.put(self.doc["layers"])


def attestations(repository: str, digest: str) -> Attestations:
    host, _, name = repository.partition("/")
    url = f"http://{host}/v2/{name}/manifests/sha256-{digest.split(':', 1)[1]}.att"
    doc = requests.get(url, headers={"Accept": MEDIA}, timeout=30).json()
    return Attestations(url, f"http://{host}/v2/{name}/blobs", doc)


def drop_all(repository: str, digest: str, predicate_type: str) -> None:
    """Re-write the image's attestation manifest without its ``predicate_type`` statements."""
    att = attestations(repository, digest)
    kept = [x for x in att.doc["layers"] if att.predicate_type(x) != predicate_type]
    assert len(kept) < len(att.doc["layers"])
    att.put(kept)
