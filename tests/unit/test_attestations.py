"""Reading cosign's verified attestations: which images a statement names, per predicate
type, strictly (an envelope cosign could read otherwise names none)."""

from __future__ import annotations

import base64
import json
from typing import Any

from dcforge.core.attestations import one_each, predicates, subjects

A, B = ("sha256:" + c * 64 for c in "ab")


def envelope(predicate_type: str, *digests: str) -> str:
    statement: dict[str, Any] = {
        "predicateType": predicate_type,
        "subject": [{"digest": {"sha256": d.removeprefix("sha256:")}} for d in digests],
    }
    return json.dumps({"payload": base64.b64encode(json.dumps(statement).encode()).decode()})


def test_subjects_are_read_per_predicate_type_and_junk_is_ignored() -> None:
    out = "\n".join(
        [
            envelope("https://slsa.dev/provenance/v1", A),
            envelope("https://spdx.dev/Document", B),
            "not json",
            json.dumps({"payload": "!!!"}),
        ]
    )
    assert subjects(out, "https://slsa.dev/provenance/v1") == {A}
    assert subjects(out, "https://spdx.dev/Document") == {B}
    assert subjects(out, "https://example.invalid/other") == set()


def test_one_verify_run_counts_only_one_own_statement_per_image_in_order() -> None:
    """A release's attestations verified in one cosign run: line i must be image i's own
    statement of the type, one per image — a swap, a missing, an extra or a shared
    statement sends the check back to one image at a time."""
    slsa, spdx = "https://slsa.dev/provenance/v1", "https://spdx.dev/Document"
    a, b = envelope(slsa, A), envelope(slsa, B)
    assert one_each(f"{a}\n{b}\n", [A, B], slsa)
    assert not one_each(f"{b}\n{a}\n", [A, B], slsa)  # swapped between the images
    assert not one_each(f"{a}\n", [A, B], slsa)
    assert not one_each(f"{a}\n{a}\n{b}\n", [A, B], slsa)  # one image attested twice
    assert not one_each(f"{envelope(slsa, A, B)}\n{b}\n", [A, B], slsa)  # shared statement
    assert not one_each(f"{a}\n{envelope(spdx, B)}\n", [A, B], slsa)
    assert not one_each(f"{a}\nnot json\n", [A, B], slsa)
    assert not one_each('{"payload": "bm90IGpzb24="}\n' + b, [A, B], slsa)


def test_an_envelope_cosign_would_read_otherwise_names_no_subject() -> None:
    """cosign reads envelope and statement keys ignoring case (last one wins): a layer
    carrying ``payload`` (a forged statement) and ``Payload`` (a signed one) must not
    count for dcforge — nor an exact repeat, nor a subject written twice; a predicate's
    own keys (build args http_proxy and HTTP_PROXY) are the predicate's business."""
    slsa = "https://slsa.dev/provenance/v1"
    forged = json.loads(envelope(slsa, A))["payload"]
    signed = json.loads(envelope(slsa, B))["payload"]
    twin = json.dumps({"payload": forged, "Payload": signed, "payloadType": "x"})
    assert subjects(twin, slsa) == set()
    assert not one_each(twin, [A], slsa)
    repeated = f'{{"payload": "{signed}", "payload": "{forged}"}}'
    assert subjects(repeated, slsa) == set()
    statement = {"predicateType": slsa, "subject": [{"digest": {"sha256": A[7:]}}]}
    cased = dict(statement, Subject=[{"digest": {"sha256": B[7:]}}])
    assert subjects(json.dumps({"payload": b64(cased)}), slsa) == set()
    digest_twice = {"predicateType": slsa, "subject": [{"digest": {"sha256": A[7:]}, "Digest": {}}]}
    assert subjects(json.dumps({"payload": b64(digest_twice)}), slsa) == set()
    proxies = dict(statement, predicate={"args": {"http_proxy": "a", "HTTP_PROXY": "b"}})
    assert one_each(json.dumps({"payload": b64(proxies)}), [A], slsa)
    deep = f'{{"payload": "{b64(statement)}", "x": {"[" * 100_000}{"]" * 100_000}}}'
    assert subjects(deep, slsa) == set()  # too deep to read: no subject, no traceback


def b64(doc: object) -> str:
    return base64.b64encode(json.dumps(doc).encode()).decode()


def test_only_a_statement_about_the_image_itself_gives_its_predicate() -> None:
    def line(ptype: str, digests: list[str], predicate: object) -> str:
        statement = {
            "predicateType": ptype,
            "subject": [{"digest": {"sha256": d.removeprefix("sha256:")}} for d in digests],
            "predicate": predicate,
        }
        return json.dumps({"payload": b64(statement)})

    ptype = "https://slsa.dev/provenance/v1"
    out = "\n".join(
        [
            line(ptype, [A], {"n": 1}),
            line(ptype, [B], {"n": 2}),
            line(ptype, [A, B], {"n": 3}),  # about two images: neither's own
            line("https://spdx.dev/Document", [A], {"n": 4}),
            "not json",
        ]
    )
    assert predicates(out, ptype, A) == [{"n": 1}]
    assert predicates(out, ptype, B) == [{"n": 2}]
