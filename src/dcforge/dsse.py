"""In-toto statements in DSSE envelopes, exactly as ``cosign attest`` writes them.

With a key file and no transparency log, publish signs each image's statements itself
(the key decrypted once per run, ``dcforge.keyfile``) and hands the envelopes to ``cosign
attach attestation``: ``cosign attest`` decrypts the key again for every attestation, and
that scrypt is most of its cost. The envelopes are the same: cosign's statement header
(``_type`` v0.1, the repository as subject name, the digest), its predicate types, an
unnamed signature (``keyid`` empty: cosign's verifier skips a signature whose key id is
not its own), and real cosign verifies every one before a tag moves.

DSSE: https://github.com/secure-systems-lab/dsse/blob/master/protocol.md
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dcforge.errors import ToolError

PAYLOAD_TYPE = "application/vnd.in-toto+json"
STATEMENT_TYPE = "https://in-toto.io/Statement/v0.1"  # what cosign 2 writes

# cosign's short name (``--type``) of the SBOM predicate type; a ``--type`` that is a URI
# is its own predicate type, its predicate the file's JSON as written (cosign's
# ParsePredicateType and GenerateStatement). Other short names re-encode the predicate.
PREDICATE_TYPES = {"spdxjson": "https://spdx.dev/Document"}


def predicate_type_uri(cosign_type: str) -> str:
    if cosign_type in PREDICATE_TYPES:
        return PREDICATE_TYPES[cosign_type]
    if cosign_type.startswith("https://"):
        return cosign_type
    raise ToolError(f"no in-process attestation of predicate type {cosign_type!r}")


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE's pre-authentication encoding: what the signature covers."""
    kind = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(payload), payload)


def statement(repository: str, digest: str, cosign_type: str, predicate: Any) -> bytes:
    """The in-toto statement ``cosign attest --type cosign_type`` makes for
    ``repository@digest`` (subject name: the repository, as cosign names it)."""
    if not digest.startswith("sha256:") or len(digest) != 71:
        raise ToolError(f"refusing to attest {repository}@{digest}: not a sha256 digest")
    return json.dumps(
        {
            "_type": STATEMENT_TYPE,
            "predicateType": predicate_type_uri(cosign_type),
            "subject": [{"name": repository, "digest": {"sha256": digest[len("sha256:") :]}}],
            "predicate": predicate,
        },
        separators=(",", ":"),
    ).encode()


def read_predicate(path: Path) -> Any:
    """A predicate file as cosign reads it for a JSON predicate type: one JSON value
    (cosign refuses anything else, and so does this)."""
    try:
        return json.loads(path.read_bytes())
    except (OSError, ValueError) as err:
        raise ToolError(f"{path}: not a JSON predicate ({err}) — re-run the gate") from None


def envelope(payload: bytes, sign: Callable[[bytes], bytes]) -> dict[str, Any]:
    """The signed DSSE envelope of an in-toto ``payload``."""
    signature = sign(pae(PAYLOAD_TYPE, payload))
    return {
        "payloadType": PAYLOAD_TYPE,
        "payload": base64.b64encode(payload).decode(),
        "signatures": [{"keyid": "", "sig": base64.b64encode(signature).decode()}],
    }
