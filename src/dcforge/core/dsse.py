"""What cosign signs, made exactly as cosign makes it: an image's signature payload
(``cosign sign``) and in-toto statements in DSSE envelopes (``cosign attest``).

With a key file and no transparency log, publish signs them itself (the key decrypted
once per run, ``dcforge.infra.keyfile``) and hands them to ``cosign attach signature`` /
``cosign attach attestation``: ``cosign sign`` and ``cosign attest`` decrypt the key again
for every run, and that scrypt is most of their cost. The payloads are cosign's: the
simple-signing payload, the statement header (``_type`` v0.1, the repository as subject
name, the digest), its predicate types, an unnamed DSSE signature (``keyid`` empty:
cosign's verifier skips a signature whose key id is not its own); and the real cosign
verifies every one before a tag moves.

DSSE: https://github.com/secure-systems-lab/dsse/blob/master/protocol.md
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dcforge.core.errors import ToolError

DIGEST = re.compile(r"sha256:[0-9a-f]{64}")  # fullmatch only
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


SIGNATURE_TYPE = "cosign container image signature"


def _check_repository(repository: str) -> None:
    """A repository as cosign names a subject: a registry host and a path, no tag (cosign
    writes ``repo`` for ``repo:tag@digest``; a payload naming the tag would claim it)."""
    host, _, path = repository.partition("/")
    if not path or ":" in path or "@" in repository or not host:
        raise ToolError(f"refusing to sign for {repository!r}: not a registry/repository name")


def signature_payload(repository: str, digest: str) -> bytes:
    """The simple-signing payload ``cosign sign`` signs for ``repository@digest`` (no
    annotations: ``optional`` is null)."""
    if not DIGEST.fullmatch(digest):
        raise ToolError(f"refusing to sign {repository}@{digest}: not a sha256 digest")
    _check_repository(repository)
    critical = {
        "identity": {"docker-reference": repository},
        "image": {"docker-manifest-digest": digest},
        "type": SIGNATURE_TYPE,
    }
    return json.dumps({"critical": critical, "optional": None}, separators=(",", ":")).encode()


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE's pre-authentication encoding: what the signature covers."""
    kind = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(payload), payload)


def statement(repository: str, digest: str, cosign_type: str, predicate: Any) -> bytes:
    """The in-toto statement ``cosign attest --type cosign_type`` makes for
    ``repository@digest`` (subject name: the repository, as cosign names it)."""
    if not DIGEST.fullmatch(digest):
        raise ToolError(f"refusing to attest {repository}@{digest}: not a sha256 digest")
    _check_repository(repository)
    try:
        return json.dumps(
            {
                "_type": STATEMENT_TYPE,
                "predicateType": predicate_type_uri(cosign_type),
                "subject": [{"name": repository, "digest": {"sha256": digest[len("sha256:") :]}}],
                "predicate": predicate,
            },
            separators=(",", ":"),
            allow_nan=False,
        ).encode()
    except (ValueError, TypeError) as err:  # NaN, Infinity: not JSON, cosign could not read it
        raise ToolError(f"the {cosign_type} predicate for {digest} is not JSON: {err}") from None


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _finite(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise ValueError(f"{text[:20]}… does not fit a float64 (Go reads every number so)")
    return value


def _int(text: str) -> int:
    if len(text.lstrip("-")) > 300:
        raise ValueError(f"{text[:20]}… does not fit a float64 (Go reads every number so)")
    return int(text)


def read_predicate(path: Path) -> dict[str, Any]:
    """A predicate file as cosign reads it for a JSON predicate type: one JSON object in
    UTF-8 whose every number fits a float64 (cosign, in Go, would refuse anything else —
    and an attestation it cannot read, once attached, fails every later verify of the
    image, so nothing is attached that cosign could not read)."""
    try:
        value = json.loads(
            path.read_bytes().decode("utf-8"),
            parse_constant=_no_constant,
            parse_float=_finite,
            parse_int=_int,
        )
        if not isinstance(value, dict):
            raise ValueError("not a JSON object")
        return value
    except (OSError, ValueError, RecursionError) as err:
        detail = "nested too deeply" if isinstance(err, RecursionError) else err
        raise ToolError(f"{path}: not a JSON predicate ({detail}) — re-run the gate") from None


def envelope(payload: bytes, sign: Callable[[bytes], bytes]) -> dict[str, Any]:
    """The signed DSSE envelope of an in-toto ``payload``."""
    signature = sign(pae(PAYLOAD_TYPE, payload))
    return {
        "payloadType": PAYLOAD_TYPE,
        "payload": base64.b64encode(payload).decode(),
        "signatures": [{"keyid": "", "sig": base64.b64encode(signature).decode()}],
    }
