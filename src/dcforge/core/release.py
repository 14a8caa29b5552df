"""Release records (pure): the manifest plus what was pushed, stored in the registry.

A release record is a small JSON document pushed as an OCI artifact to
``<registry>/dcforge-releases:<git sha>.<n>`` (publish ``n`` of that SHA; ``<git sha>``
follows the newest) and signed. Rollback and verify read it back; ``parse`` refuses anything
malformed, whatever its source. The pin ``last-known-good`` is a signed statement of its
own. Which record a name means — the one SHA a short one starts, the newest publish, never
one below the pin's — is decided here; reading the registry is
:mod:`dcforge.infra.release_store`'s.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from dcforge.core import manifest as mf
from dcforge.core.errors import ManifestError, PublishRefused, RollbackRefused, VerifyFailed

ARTIFACT_TYPE = "application/vnd.dcforge.release.v1+json"
FILE_NAME = "release.json"
REPOSITORY = "dcforge-releases"
LAST_KNOWN_GOOD = "last-known-good"
PIN_ARTIFACT_TYPE = "application/vnd.dcforge.pin.v1+json"
PIN_FILE_NAME = "pin.json"
SCHEMA_VERSION = 1
GATE_FIELDS = ("trivy_version", "syft_version", "db_repository", "db_updated_at", "sample_db")
DIGEST_RE = re.compile(r"^sha256:[0-9a-f]{64}$")
SHA256_RE = re.compile(r"^[0-9a-f]{64}$")


def repository(registry: str) -> str:
    return f"{registry}/{REPOSITORY}"


def names_a_release(target: str) -> bool:
    """Whether ``target`` has the form of a release's name: last-known-good, a git SHA (4 to
    40 hex digits: a short one is enough) or the sha256: digest of its record. Whether that
    release exists only the registry can say."""
    return target == LAST_KNOWN_GOOD or bool(
        re.fullmatch(r"[0-9a-f]{4,40}", target) or DIGEST_RE.match(target)
    )


@dataclass(frozen=True)
class Image:
    name: str
    repository: str
    digest: str
    immutable_tag: str
    floating_tags: tuple[str, ...]
    # platform → image digest: what is attested (one entry, ``digest`` itself, unless the
    # image is an index of several platforms)
    platforms: tuple[tuple[str, str], ...] = ()
    # What publish left in the registry, bound by the signed record: image digest → the
    # digest of its cosign signature manifest (``sha256-….sig``) and of its attestation
    # manifest (``sha256-….att``). A check that finds exactly these manifests has what
    # publish signed and verified, byte for byte, without running cosign again.
    signatures: tuple[tuple[str, str], ...] = ()
    attestations: tuple[tuple[str, str], ...] = ()
    # Image digest → sha256 of the OpenVEX document of its waived findings, for each image
    # the gate waived findings of: each of them must carry that document as an attestation.
    vex: tuple[tuple[str, str], ...] = ()
    # A multi-platform image's index carries an SBOM and a provenance of its own (records
    # written before it was attested: only its platform images do).
    index_attested: bool = False

    def ref(self) -> str:
        return f"{self.repository}@{self.digest}"

    def signed_refs(self) -> list[str]:
        """Every manifest that carries a signature: the image (or index) and each child."""
        refs = [self.ref()]
        refs += [f"{self.repository}@{d}" for _, d in self.platforms if d != self.digest]
        return refs

    def attested(self) -> list[tuple[str, str]]:
        """(platform, digest) of every image with its own SBOM and provenance."""
        return list(self.platforms) or [("", self.digest)]

    def attestation_subjects(self) -> list[tuple[str, str]]:
        """(platform, digest) of every manifest with attestations: each platform's image
        and, when it is attested, the index (platform "index")."""
        index = [("index", self.digest)] if self.index_attested and len(self.platforms) > 1 else []
        return [*self.attested(), *index]

    def vex_digests(self) -> set[str]:
        """The images that carry an OpenVEX attestation (the gate waived their findings)."""
        return {digest for digest, _ in self.vex}

    def bound(self) -> bool:
        """The record binds every signature and attestation manifest of this image."""
        signed = {ref.rsplit("@", 1)[1] for ref in self.signed_refs()}
        attested = {digest for _, digest in self.attestation_subjects()}
        return bool(self.signatures) and (
            {d for d, _ in self.signatures} == signed
            and {d for d, _ in self.attestations} == attested
        )


def artifact_tag(digest: str, kind: str) -> str:
    """cosign's tag for the ``sig`` or ``att`` manifest of image ``digest``."""
    return f"sha256-{digest.split(':', 1)[1]}.{kind}"


def sequence_tag(git_sha: str, sequence: int) -> str:
    """The tag of publish number ``sequence`` of ``git_sha`` (``<sha>.<n>``); ``<sha>``
    itself names the newest."""
    return f"{git_sha}.{sequence}"


SEQUENCE_TAG = re.compile(r"^([0-9a-f]{40})\.([1-9][0-9]*)$")
SHA_TAG = re.compile(r"^[0-9a-f]{40}$")


def sequences(tags: Iterable[str], git_sha: str) -> list[int]:
    """The publish numbers of ``git_sha`` the tags name."""
    found = (SEQUENCE_TAG.match(t) for t in tags)
    return sorted(int(m.group(2)) for m in found if m and m.group(1) == git_sha)


@dataclass(frozen=True)
class Release:
    git_sha: str
    manifest: mf.Manifest
    images: tuple[Image, ...]
    gate: dict[str, Any]
    # Each publish of a SHA is its own record: number ``sequence`` (1, 2, … — a refresh or a
    # re-run that changed what is published adds one), naming the record it replaces.
    # Signed with the rest, so a reader can tell an earlier publish from the newest.
    sequence: int = 1
    supersedes: str = ""
    # The verification policy the images' bindings were verified under (policy_digest):
    # they stand for cosign only while today's policy is that one.
    bindings_policy: str = ""


Bindings = dict[str, dict[str, dict[str, str]]]  # name → {signatures|attestations → {d: d}}


def build(
    manifest: mf.Manifest,
    gate_doc: dict[str, Any],
    bindings: Bindings | None = None,
    *,
    sequence: int = 1,
    supersedes: str = "",
    bindings_policy: str = "",
) -> dict[str, Any]:
    """The record for ``manifest`` (deterministic: the same manifest, bindings and
    sequence give the same bytes); ``bindings``: per image, the signature and attestation
    manifests publish left (see :class:`Image`), verified under ``bindings_policy``
    (:func:`policy_digest`); ``sequence``/``supersedes``: which publish of this SHA it
    is, and the record it replaces."""
    return {
        "schema_version": SCHEMA_VERSION,
        "kind": "dcforge-release",
        "git_sha": manifest.git_sha,
        "publish": {"sequence": sequence, "supersedes": supersedes or None},
        **({"bindings_policy": bindings_policy} if bindings and bindings_policy else {}),
        "images": [
            {
                "name": e.name,
                "repository": e.repository,
                "digest": e.image_digest,
                "immutable_tag": e.immutable_tag,
                "floating_tags": list(e.floating_tags),
                **(bindings or {}).get(e.name, {}),
                **({"vex": vex} if (vex := vex_documents(gate_doc, e)) else {}),
                **({"index_attested": True} if e.multi_platform else {}),
            }
            for e in manifest.permutations
        ],
        "gate": {
            **{k: gate_doc.get(k) for k in GATE_FIELDS},
            "vulnerabilities": {
                v.get("name"): v.get("counts", {})
                for v in gate_doc.get("permutations", [])
                if isinstance(v, dict)
            },
        },
        "manifest": manifest.to_json(),
    }


def vex_documents(gate_doc: Mapping[str, Any], entry: mf.Entry) -> dict[str, str]:
    """Image digest → sha256 of its OpenVEX document, as the gate verdict records them for
    ``entry``'s platform images (:func:`dcforge.core.verdict.check_publishable` checked
    that those verdicts are this manifest's)."""
    verdicts = [v for v in gate_doc.get("permutations") or [] if isinstance(v, dict)]
    found = next((v for v in verdicts if v.get("name") == entry.name), {})
    images = entry.platform_images()
    out = {}
    for p in found.get("platforms") or []:
        doc = p.get("vex") if isinstance(p, dict) else None
        if isinstance(doc, dict) and images.get(p.get("platform")) == p.get("digest"):
            out[str(p["digest"])] = str(doc.get("sha256"))
    return out


def encode(record: dict[str, Any]) -> bytes:
    return (json.dumps(record, indent=2, sort_keys=True) + "\n").encode()


def parse(data: Any, source: str) -> Release:
    """Validate a decoded record; a ManifestError names what is wrong."""
    if not isinstance(data, dict) or data.get("kind") != "dcforge-release":
        raise ManifestError(f"{source}: not a dcforge release record")
    if data.get("schema_version") != SCHEMA_VERSION:
        raise ManifestError(
            f"{source}: release schema_version {data.get('schema_version')!r} unsupported"
        )
    manifest = mf.parse(data.get("manifest"), f"{source} (manifest)")
    if data.get("git_sha") != manifest.git_sha:
        raise ManifestError(f"{source}: git_sha differs from its manifest's")
    raw_images = data.get("images")
    if not isinstance(raw_images, list) or not raw_images:
        raise ManifestError(f"{source}: no images")
    images = [_image(raw, manifest, source) for raw in raw_images]
    raw_gate = data.get("gate")
    gate: dict[str, Any] = raw_gate if isinstance(raw_gate, dict) else {}
    sequence, supersedes = _publish(data.get("publish"), source)
    policy = data.get("bindings_policy", "")
    if policy != "" and not (isinstance(policy, str) and DIGEST_RE.match(policy)):
        raise ManifestError(f"{source}: 'bindings_policy' is not a sha256: digest")
    return Release(manifest.git_sha, manifest, tuple(images), gate, sequence, supersedes, policy)


def policy_digest(policy: Mapping[str, Any], predicate_types: Iterable[str]) -> str:
    """A verification policy as one digest: what a signature must verify with (the key
    or keyless identity, the trust root, the transparency log) and the predicate types
    every image must be attested with. A record's bindings were verified under the
    policy it names; under any other, cosign checks again."""
    text = json.dumps(
        {"signatures": dict(policy), "predicate_types": sorted(predicate_types)},
        sort_keys=True,
        separators=(",", ":"),
    )
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def _publish(raw: Any, source: str) -> tuple[int, str]:
    """(sequence, supersedes) of a record; a record written before sequences is number 1."""
    if raw is None:
        return 1, ""
    sequence = raw.get("sequence") if isinstance(raw, dict) else None
    supersedes = raw.get("supersedes") if isinstance(raw, dict) else None
    if not isinstance(sequence, int) or isinstance(sequence, bool) or sequence < 1:
        raise ManifestError(f"{source}: 'publish.sequence' is not a publish number (1, 2, …)")
    if sequence == 1 and supersedes is None:
        return 1, ""
    if not isinstance(supersedes, str) or not DIGEST_RE.match(supersedes) or sequence == 1:
        raise ManifestError(
            f"{source}: publish {sequence} must name the record it supersedes (and only "
            "a later publish can)"
        )
    return sequence, supersedes


def _image(raw: Any, manifest: mf.Manifest, source: str) -> Image:
    """One image entry of a record: in its manifest, with the manifest's digest."""
    if not isinstance(raw, dict):
        raise ManifestError(f"{source}: an image entry is not an object")
    try:
        entry = manifest.entry(str(raw.get("name")))
    except ManifestError:
        raise ManifestError(f"{source}: image {raw.get('name')!r} is not in its manifest") from None
    digest = raw.get("digest")
    if not isinstance(digest, str) or not DIGEST_RE.match(digest) or digest != entry.image_digest:
        raise ManifestError(
            f"{source}: image {entry.name} digest {digest!r} does not match its manifest"
        )
    image = Image(
        entry.name,
        entry.repository,
        digest,
        entry.immutable_tag,
        tuple(entry.floating_tags),
        tuple(entry.platform_images().items()),
        _binding(raw, "signatures", source),
        _binding(raw, "attestations", source),
        _vex(raw, source),
        _index_attested(raw, entry, source),
    )
    if not image.vex_digests() <= {d for _, d in image.attested()}:
        raise ManifestError(f"{source}: image {entry.name}: 'vex' names an image it does not have")
    if (image.signatures or image.attestations) and not image.bound():
        raise ManifestError(
            f"{source}: image {entry.name}: its signature/attestation bindings do not "
            "name exactly its images"
        )
    return image


def _binding(raw: dict[str, Any], key: str, source: str) -> tuple[tuple[str, str], ...]:
    value = raw.get(key, {})
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) and DIGEST_RE.match(k) and DIGEST_RE.match(v)
        for k, v in value.items()
    ):
        raise ManifestError(f"{source}: image {raw.get('name')!r}: '{key}' is not digest → digest")
    return tuple(sorted(value.items()))


def _index_attested(raw: dict[str, Any], entry: mf.Entry, source: str) -> bool:
    value = raw.get("index_attested", False)
    if not isinstance(value, bool) or (value and not entry.multi_platform):
        raise ManifestError(
            f"{source}: image {entry.name}: 'index_attested' is true or false, and true only "
            "for a multi-platform image"
        )
    return value


def _vex(raw: dict[str, Any], source: str) -> tuple[tuple[str, str], ...]:
    value = raw.get("vex", {})
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) and DIGEST_RE.match(k) and SHA256_RE.match(v)
        for k, v in value.items()
    ):
        raise ManifestError(f"{source}: image {raw.get('name')!r}: 'vex' is not digest → sha256")
    return tuple(sorted(value.items()))


REPRODUCED_ARTIFACT_TYPE = "application/vnd.dcforge.reproduced.v1+json"
REPRODUCED_FILE_NAME = "reproduced.json"


def same_images(rel: Release, manifest: mf.Manifest) -> bool:
    """Whether ``manifest`` built exactly the images ``rel`` published: the same
    permutations, repositories, digests and platform images, every one of them built (not
    reused from a release) from a clean tree — a reproduction."""
    if rel.git_sha != manifest.git_sha or manifest.git_dirty:
        return False
    if any(e.reused for e in manifest.permutations):
        return False
    published = {(i.name, i.repository, i.digest, i.platforms) for i in rel.images}
    built = {
        (e.name, e.repository, e.image_digest, tuple(e.platform_images().items()))
        for e in manifest.permutations
    }
    return published == built


def same_verdict(rel: Release, manifest: mf.Manifest, gate_doc: dict[str, Any]) -> bool:
    """Whether ``rel``'s record says what a publish under ``gate_doc`` would: the gate's
    fields and counts, and each image's VEX (a newer verdict is a new record)."""
    again = build(manifest, gate_doc)
    vex = {i["name"]: i.get("vex", {}) for i in again["images"]}
    return again["gate"] == rel.gate and all(dict(i.vex) == vex.get(i.name) for i in rel.images)


def is_record_of(
    rel: Release, manifest: mf.Manifest, gate_doc: dict[str, Any], bindings_policy: str
) -> bool:
    """Whether ``rel`` is the record a publish of ``manifest`` under ``gate_doc`` and the
    verification policy ``bindings_policy`` would write (its own bindings, number and
    predecessor kept): that publish has nothing to add. Under another policy it has: a
    record whose bindings stand under today's."""
    bindings: Bindings = {
        i.name: {"signatures": dict(i.signatures), "attestations": dict(i.attestations)}
        for i in rel.images
    }
    again = build(
        manifest,
        gate_doc,
        bindings,
        sequence=rel.sequence,
        supersedes=rel.supersedes,
        bindings_policy=bindings_policy,
    )
    return parse(again, "this publish") == rel


def reproduced_statement(
    rel: Release, record_digest: str, manifest_sha256: str, builder: str, when: str, run: str
) -> tuple[str, dict[str, Any]]:
    """(tag, document) of the statement that a rebuild of ``rel``'s commit gave exactly its
    images (signed and stored beside the records; the record itself never changes)."""
    doc: dict[str, Any] = {
        "kind": "dcforge-reproduced",
        "schema_version": 1,
        "git_sha": rel.git_sha,
        "record_digest": record_digest,
        "publish": rel.sequence,
        "images": {i.name: i.digest for i in rel.images},
        "rebuilt_manifest_sha256": manifest_sha256,
        "builder": builder,
        "when": when,
        "run": run,
    }
    stamp = when.replace("-", "").replace(":", "").removesuffix("Z")
    return f"reproduced-{stamp}-{rel.git_sha[:12]}", doc


@dataclass(frozen=True)
class Pin:
    """The signed statement behind ``last-known-good``: which release, by record digest."""

    git_sha: str
    record_digest: str
    pinned_at: str
    sequence: int = 1  # which publish of git_sha the record is


def pin_statement(git_sha: str, record_digest: str, pinned_at: str, sequence: int = 1) -> bytes:
    doc = {
        "kind": "dcforge-pin",
        "schema_version": SCHEMA_VERSION,
        "git_sha": git_sha,
        "record_digest": record_digest,
        "pinned_at": pinned_at,
        "sequence": sequence,
    }
    return (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode()


def parse_pin(data: Any, source: str) -> Pin:
    if not isinstance(data, dict) or data.get("kind") != "dcforge-pin":
        raise ManifestError(f"{source}: not a dcforge pin statement")
    sha, digest = data.get("git_sha"), data.get("record_digest")
    if not isinstance(sha, str) or not re.fullmatch(r"[0-9a-f]{40}", sha):
        raise ManifestError(f"{source}: pin names no git SHA")
    if not isinstance(digest, str) or not DIGEST_RE.match(digest):
        raise ManifestError(f"{source}: pin names no record digest")
    sequence = data.get("sequence", 1)
    if not isinstance(sequence, int) or isinstance(sequence, bool) or sequence < 1:
        raise ManifestError(f"{source}: pin names no publish number")
    return Pin(sha, digest, str(data.get("pinned_at", "")), sequence)


# -- the chain: which record a name means, and which way publish moves --------------------


def released_shas(tags: Sequence[str]) -> list[str]:
    """The git SHAs the release repository's ``tags`` hold a record of (``<sha>`` or
    ``<sha>.<n>``)."""
    seq = (SEQUENCE_TAG.match(t) for t in tags)
    return sorted({t for t in tags if SHA_TAG.match(t)} | {m.group(1) for m in seq if m})


def released_sha(target: str, tags: Sequence[str], repository: str) -> str:
    """The one released git SHA ``target`` (4 to 40 hex digits) starts, among those
    ``tags`` hold; RollbackRefused when it names none, or more than one."""
    if not re.fullmatch(r"[0-9a-f]{4,40}", target):
        raise RollbackRefused(
            f"'{target}' is neither a git SHA (4 to 40 hex digits) nor a sha256: record digest"
        )
    matches = [t for t in released_shas(tags) if t.startswith(target)]
    if not matches:
        raise RollbackRefused(f"no published release for git SHA {target} in {repository}")
    if len(matches) > 1:
        shown = ", ".join(m[:12] for m in sorted(matches))
        raise RollbackRefused(f"git SHA {target} is ambiguous: {shown} — give more digits")
    return matches[0]


def pinned_number(pin: Pin | None, sha: str) -> int:
    """The publish number the signed pin states for release ``sha`` (0: it pins another)."""
    return pin.sequence if pin is not None and pin.git_sha == sha else 0


def check_publish_tag(reference: str, digest: str, found: Release, sha: str, number: int) -> None:
    """The record at ``<sha>.<number>`` must be publish ``number`` of ``sha``: a signed record
    of another publish there was put there by someone moving tags."""
    if found.git_sha != sha:
        raise VerifyFailed(
            f"{reference} ({digest[:19]}) holds the record of release {found.git_sha[:12]}, "
            f"not of {sha[:12]} — refused: another release's record was put under this name; "
            "the tag was re-pointed"
        )
    if found.sequence != number:
        raise VerifyFailed(
            f"{reference} holds the signed record of publish {found.sequence} of "
            f"{found.git_sha[:12]} ({digest[:19]}), not publish {number} of {sha[:12]}: "
            "the tag was re-pointed"
        )


def refuse_superseded(
    repository: str, reference: str, digest: str, rel: Release, newest: int
) -> None:
    """Refuse ``rel`` (read at ``reference``) when ``newest`` — a later valid publish of its
    SHA, or the number the signed pin states for it (someone can hide a later publish's
    tags, not the pin's word) — is above its own number."""
    if rel.sequence < newest:
        raise VerifyFailed(
            f"{reference} ({digest[:19]}) is publish {rel.sequence} of release "
            f"{rel.git_sha[:12]}, superseded by publish {newest} "
            f"({repository}:{sequence_tag(rel.git_sha, newest)}) — refused: "
            "an earlier publish's images are not the release any more; use the newest "
            f"(rollback --sha {rel.git_sha[:12]})"
        )


def refuse_backwards(pinned: str, sha: str, descends: bool | None, outcome: str) -> None:
    """Publish moves the floating tags and the pin forward only: refuse ``sha`` unless it
    ``descends`` from ``pinned``, the pinned release's SHA (None: the checkout cannot tell).
    ``outcome``: what the refusal leaves done, for the message."""
    if descends is None:
        raise PublishRefused(
            f"cannot tell whether {sha[:12]} descends from the pinned release "
            f"{pinned[:12]}: this checkout does not hold both commits (a shallow clone? "
            "actions/checkout needs fetch-depth: 0; or DCFORGE_GIT_SHA names a commit this "
            "checkout does not have) — " + outcome
        )
    if not descends:
        raise PublishRefused(
            f"{sha[:12]} does not descend from the pinned release {pinned[:12]}: "
            f"publishing it would move the floating tags and {LAST_KNOWN_GOOD} "
            f"backwards — {outcome}; going back is rollback's job (invoke rollback --sha "
            f"{sha[:12]})"
        )


def next_sequence(newest: int, existing: str | None, previous: tuple[int, str] | None) -> int:
    """The number of a new publish of a SHA: one more than ``newest`` (the newest valid
    publish, or 0) and than ``previous`` (the publish number the record ``existing`` it
    supersedes states); a record from before publish numbers, or unreadable, counts as 1."""
    return max(newest, previous[0] if previous else 1 if existing else 0) + 1


# -- what a record looks like in the registry --------------------------------------------


def is_artifact(
    doc: dict[str, Any], artifact_type: str, file_name: str, body: bytes | None = None
) -> bool:
    """The manifest ``doc`` is exactly one file ``file_name`` of ``artifact_type`` (and, with
    ``body``, that file's digest is the digest of ``body``) — nothing else rides along."""
    layers = doc.get("layers")
    if doc.get("artifactType") != artifact_type or not isinstance(layers, list):
        return False
    if len(layers) != 1 or not isinstance(layers[0], dict):
        return False
    notes = layers[0].get("annotations")
    title = notes.get("org.opencontainers.image.title") if isinstance(notes, dict) else None
    if title != file_name:
        return False
    return body is None or layers[0].get("digest") == "sha256:" + hashlib.sha256(body).hexdigest()


def record_annotations(manifest: mf.Manifest, sequence: int) -> dict[str, str]:
    """The annotations of publish ``sequence``'s record manifest (what the listing shows)."""
    return {
        "org.opencontainers.image.created": manifest.created_at,
        "org.opencontainers.image.revision": manifest.git_sha,
        "dev.dcforge.permutations": ",".join(e.name for e in manifest.permutations),
        "dev.dcforge.publish.sequence": str(sequence),
    }


def listing_row(sha: str, digest: str, notes: Any, pinned: str) -> dict[str, Any]:
    """One row of the release list: release ``sha``, its record ``digest`` and the
    annotations ``notes`` of its manifest; ``pinned``: the record digest the pin names."""
    found = notes if isinstance(notes, dict) else {}
    return {
        "git_sha": sha,
        "digest": digest,
        "created": found.get("org.opencontainers.image.created", ""),
        "permutations": found.get("dev.dcforge.permutations", ""),
        "pinned": digest == pinned,
    }
