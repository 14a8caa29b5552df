"""What a release attests, and cosign's verified attestations read back (pure).

Each image of a release carries two in-toto statements: its SBOM (SPDX JSON) and its SLSA
v1 provenance; an image with waived findings a third, their OpenVEX document. ``cosign
verify-attestation`` prints the verified ones as JSON lines (DSSE envelopes);
:func:`subjects` and :func:`one_each` read which images they name, strictly: anything
cosign could read differently from dcforge names no subject.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from typing import Any

from dcforge.core import dsse, vex

SBOM_TYPE = "spdxjson"
# The predicate-type URI itself: cosign then stores the predicate exactly as written
# (``slsaprovenance1`` re-encodes it and writes ``invocationID``, which SLSA v1 does not know).
PROVENANCE_TYPE = "https://slsa.dev/provenance/v1"
# An image the gate waived findings of also carries the OpenVEX document of those waivers
# (only then: OpenVEX has no empty document), by its own ``@context`` as predicate type.
VEX_TYPE = vex.CONTEXT
PREDICATE_TYPES = {ptype: dsse.predicate_type_uri(ptype) for ptype in (SBOM_TYPE, PROVENANCE_TYPE)}
ALL_TYPES = {**PREDICATE_TYPES, VEX_TYPE: VEX_TYPE}  # every type an image can be attested with


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object without a repeated key."""
    keys = [k for k, _ in pairs]
    if len(set(keys)) != len(keys):
        raise ValueError(f"a key repeated in {sorted(keys)}")
    return dict(pairs)


def _no_case_twins(obj: object) -> None:
    """cosign (Go) reads a struct's keys ignoring case, the last one winning: an envelope
    with ``payload`` and ``Payload`` could show dcforge one statement while cosign checked
    the signature of another. Where Go reads a struct (the envelope, the statement and its
    subjects), keys must differ even ignoring case."""
    if isinstance(obj, dict):
        folded = [k.casefold() for k in obj]
        if len(set(folded)) != len(folded):
            raise ValueError(f"keys differing only in case: {sorted(obj)}")


def _statement(line: str) -> dict[str, Any]:
    """The in-toto statement of one of cosign's JSON lines (a DSSE envelope), read
    strictly: ValueError for anything else."""
    try:
        envelope = json.loads(line, object_pairs_hook=_unique_keys)
        _no_case_twins(envelope)
        for signature in envelope.get("signatures") or []:
            _no_case_twins(signature)
        statement = json.loads(
            base64.b64decode(envelope["payload"], validate=True), object_pairs_hook=_unique_keys
        )
        _no_case_twins(statement)
        for subject in statement.get("subject") or []:
            _no_case_twins(subject)
    except (KeyError, TypeError, AttributeError, RecursionError) as err:
        raise ValueError(str(err)) from None
    if not isinstance(statement, dict):
        raise ValueError("not a statement")
    return statement


def subjects(verify_output: str, predicate_type: str) -> set[str]:
    """sha256 subjects of in-toto statements of ``predicate_type`` in cosign's JSON lines."""
    found = set()
    for line in verify_output.splitlines():
        try:
            statement = _statement(line)
        except ValueError:
            continue
        if statement.get("predicateType") != predicate_type:
            continue
        for subject in statement.get("subject") or []:
            sha = (subject.get("digest") or {}).get("sha256")
            if isinstance(sha, str):
                found.add(f"sha256:{sha}")
    return found


def one_each(verify_output: str, digests: Sequence[str], predicate_type: str) -> bool:
    """cosign's JSON lines of one ``verify-attestation`` run over images of ``digests``
    (in that order) are exactly one statement of ``predicate_type`` per image, in the same
    order, each naming just its own image as subject. cosign checks every image has at
    least one verified attestation of the type; one line per image, in order, ties each
    to its image. Anything else (an image attested twice, say): False, check one by one."""
    lines = [line for line in verify_output.splitlines() if line.strip()]
    if len(lines) != len(digests):
        return False
    return all(
        _subject_list(line, predicate_type) == [digest]
        for line, digest in zip(lines, digests, strict=True)
    )


def _subject_list(line: str, predicate_type: str) -> list[str]:
    """The subjects (sha256 digests, as written) of the one in-toto statement of
    ``predicate_type`` in one of cosign's JSON lines; [] for anything else."""
    try:
        statement = _statement(line)
        listed = statement["subject"] if statement["predicateType"] == predicate_type else []
        return [f"sha256:{s['digest']['sha256']}" for s in listed]
    except (ValueError, KeyError, TypeError):
        return []


def predicates(verify_output: str, predicate_type: str, digest: str) -> list[Any]:
    """The predicates of the ``predicate_type`` statements in cosign's JSON lines that name
    exactly ``digest`` as their one subject (a statement about several images, or another
    one, is not this image's)."""
    found = []
    for line in verify_output.splitlines():
        if _subject_list(line, predicate_type) == [digest]:
            found.append(_statement(line).get("predicate"))
    return found
