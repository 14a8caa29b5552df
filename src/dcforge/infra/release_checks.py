"""Checks against the registry: a signed document of the release repository (a record, the
pin) is exactly one file of its type, signed by the configured key/identity; every image a
release names is served as recorded, its floating tags point at it, and its signatures and
SBOM + provenance attestations verify.

Verify runs the release checks on the release asked for, rollback before any tag moves,
publish before its record binds what it signed and again before it moves
``last-known-good``. A record that binds an image's signature and attestation manifests
(see :class:`dcforge.core.release.Image`) is taken at its word while the registry serves
exactly those manifests and its bindings were verified under today's verification policy
(the key or keyless identity, the trust root, the predicate types); anything else is
verified by cosign — a release's images in a few runs side by side, one image at a time
only to name what failed.
"""

from __future__ import annotations

import copy
import json
import tempfile
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from dcforge.core import manifest as mf
from dcforge.core import release, vex
from dcforge.core.attestations import (
    ALL_TYPES,
    PREDICATE_TYPES,
    VEX_TYPE,
    one_each,
    predicates,
    subjects,
)
from dcforge.core.errors import (
    PublishRefused,
    RegistryError,
    RollbackRefused,
    ToolError,
    VerifyFailed,
)
from dcforge.infra import log
from dcforge.infra.tools.cosign import ATTESTATION_BATCH, Cosign
from dcforge.infra.tools.registry import Registry

# cosign processes per image, and images, verified at once (reads only; they wait on the
# registry more than on the CPU).
VERIFY_WORKERS = 4


@dataclass(frozen=True)
class ReleaseChecks:
    registry: Registry
    cosign: Cosign
    # Documents whose signature verified, by digest: a record or pin read several times in
    # one run (publish reads the pin three times) is verified once. Tags are resolved again
    # on every read; only what a digest names is reused.
    verified: dict[tuple[str, str, str], Any] = field(
        default_factory=dict, compare=False, repr=False
    )
    # What cosign verified in this run, by the digest of the manifest it read: an image's
    # signature manifest (image ref -> its digest), and its attestation manifest per
    # predicate type ((image ref, type) -> its digest). Each digest was read before and
    # after the cosign run and did not change. The record binds an image without running
    # cosign again only when what it binds is exactly that manifest (verified_bindings).
    signed_as: dict[str, str] = field(default_factory=dict, compare=False, repr=False)
    attested_as: dict[tuple[str, str], str] = field(default_factory=dict, compare=False, repr=False)
    _policy: list[str] = field(default_factory=list, init=False, compare=False, repr=False)

    def policy(self) -> str:
        """Today's verification policy (:func:`dcforge.core.release.policy_digest`): what
        a record's bindings must have been verified under to stand for cosign; "" when it
        cannot be named (a key by reference): then no bindings stand, and none are
        written with one."""
        if not self._policy:
            found = self.cosign.policy()
            types = PREDICATE_TYPES.values()
            self._policy.append("" if found is None else release.policy_digest(found, types))
        return self._policy[0]

    def trusts_bindings(self, rel: release.Release) -> bool:
        """Whether ``rel``'s bindings were verified under today's policy: a record signed
        again with a new key, or read under a tighter identity, says nothing of what its
        manifests would verify under now."""
        trusted = bool(rel.bindings_policy) and rel.bindings_policy == self.policy()
        if not trusted and any(image.bound() for image in rel.images):
            why = "another key/identity or policy" if rel.bindings_policy else "an unnamed policy"
            log.step(
                rel.git_sha[:12],
                f"its record's bindings were verified under {why}: cosign checks every image",
            )
        return trusted

    def signed_document(
        self, repository: str, reference: str, file_name: str, what: str, artifact_type: str
    ) -> tuple[str, Any]:
        """Resolve ``reference``, check the artifact is exactly one ``file_name`` of
        ``artifact_type``, verify the signature on that digest (in ``repository``), read the
        file: (digest, its JSON); VerifyFailed for anything else."""
        digest = self.registry.digest_or_none(reference)
        if digest is None:
            raise VerifyFailed(f"no {what} at {reference}")
        at = f"{repository}@{digest}"
        key = (at, artifact_type, file_name)
        if key in self.verified:  # this digest verified before, in this run
            return digest, copy.deepcopy(self.verified[key])
        found = self._signed_document(reference, at, digest, file_name, what, artifact_type)
        self.verified[key] = copy.deepcopy(found)
        return digest, found

    def _signed_document(
        self,
        reference: str,
        at: str,
        digest: str,
        file_name: str,
        what: str,
        artifact_type: str,
    ) -> Any:
        if not self.is_artifact(at, artifact_type, file_name):
            raise VerifyFailed(
                f"{reference} ({digest[:19]}) is not a dcforge {what} (another artifact type, "
                "or other files in it) — refused"
            )
        try:
            self.cosign.verify(at)
        except ToolError as err:
            raise VerifyFailed(
                f"the {what} {reference} ({digest[:19]}) is not signed by the configured "
                f"key/identity ({self.cosign.signer.describe()}): {err}"
            ) from None
        with tempfile.TemporaryDirectory(prefix="dcforge-release-") as tmp:
            files = self.registry.fetch_artifact(at, Path(tmp))
            try:
                return json.loads((files / file_name).read_text())
            except (OSError, ValueError) as err:
                raise VerifyFailed(
                    f"{reference} ({digest[:19]}) holds no readable {what} ({err})"
                ) from None

    def is_artifact(
        self, ref_at_digest: str, artifact_type: str, file_name: str, body: bytes | None = None
    ) -> bool:
        """The manifest at ``ref_at_digest`` is exactly one file ``file_name`` of
        ``artifact_type`` (see :func:`dcforge.core.release.is_artifact`)."""
        doc = self.registry.manifest(ref_at_digest)
        return release.is_artifact(doc, artifact_type, file_name, body)

    def check_images(self, rel: release.Release) -> None:
        """Every image still exists, its signature and attestations verify (before any tag
        moves): a release whose publish stopped before verify is not one to go back to.
        What the record's bindings do not stand for is verified in batches, as verify does."""
        for image, problems in self._image_problems(rel, check_tags=False):
            if problems and self.registry.digest_or_none(image.ref()) is None:
                raise RollbackRefused(
                    f"release {rel.git_sha[:12]}: image {image.name} ({image.digest[:19]}) no "
                    "longer exists in the registry — pick another release"
                )
            if problems:
                raise RollbackRefused(
                    f"release {rel.git_sha[:12]}: image {image.name} does not verify "
                    f"({problems[0]})"
                )

    def verify_image(
        self,
        image: release.Image,
        check_tags: bool,
        *,
        bound: bool,
        signatures_verified: bool = False,
        attestations_verified: bool = False,
    ) -> list[str]:
        """Problems with one image of a release (empty: tags, the signatures of the image
        and of each platform's image, and each platform's attestations all verify).
        ``bound``: the signed record's bindings stand for cosign (:meth:`_bound`, under
        today's policy: :meth:`trusts_bindings`);
        ``signatures_verified``/``attestations_verified``: cosign verified those already
        (a run over the whole release)."""
        problems = self._tag_problems(image) if check_tags else []
        try:
            served = self.registry.served_platforms(image.ref())
        except RegistryError as err:
            served = {"(unreadable)": str(err)}
        expected = dict(image.platforms) if len(image.platforms) > 1 else {}
        if served != expected:
            problems.append(
                f"{image.ref()}: the registry serves it with images "
                f"{sorted(served.items()) or 'none'}, the release names {sorted(expected.items())}"
            )
        problems += self._missing_children(image)
        if bound:  # the signed record names them, verified under today's policy
            log.step(
                image.name, "signatures and attestations: the manifests its signed record names"
            )
            return problems
        # Every signature and attestation check is a read of its own: run them at once.
        checks = self._checks(image, signatures_verified, attestations_verified)
        with ThreadPoolExecutor(max_workers=VERIFY_WORKERS) as pool:
            for found in pool.map(lambda check: check(), checks):
                problems += found
        return problems

    def _checks(
        self, image: release.Image, signatures_verified: bool, attestations_verified: bool
    ) -> list[Callable[[], list[str]]]:
        checks: list[Callable[[], list[str]]] = [
            partial(self._check_signature, ref)
            for ref in ([] if signatures_verified else image.signed_refs())
        ]
        checks += [
            partial(self._check_attestation, image, platform, digest, ptype)
            for platform, digest in ([] if attestations_verified else image.attestation_subjects())
            for ptype in PREDICATE_TYPES
        ]
        # The VEX by its content, always: one image can carry several (each release that
        # waived findings of it attested its own), and this release's must be among them.
        checks += [
            partial(self._check_attestation, image, platform, digest, VEX_TYPE)
            for platform, digest in image.attestation_subjects()
            if digest in image.vex_digests()
        ]
        return checks

    def _missing_children(self, image: release.Image) -> list[str]:
        """Each platform's image of an index, read by digest: an index whose child a
        registry clean-up deleted lists it still, and nothing else reads the child."""
        children = [(p, d) for p, d in image.platforms if d != image.digest]
        with ThreadPoolExecutor(max_workers=VERIFY_WORKERS) as pool:
            refs = [f"{image.repository}@{digest}" for _, digest in children]
            found = list(pool.map(self.registry.digest_or_none, refs))
        return [
            f"{image.repository}@{digest}: the {platform} image of {image.name} is gone from the "
            "registry (deleted as untagged?) — pick another release or re-publish"
            for (platform, digest), got in zip(children, found, strict=True)
            if got != digest
        ]

    def _check_signature(self, ref: str) -> list[str]:
        try:
            self.cosign.verify(ref)
        except ToolError as err:
            return [f"{ref}: signature does not verify ({err})"]
        return []

    def _check_attestation(
        self, image: release.Image, platform: str, digest: str, ptype: str
    ) -> list[str]:
        vex = dict(image.vex).get(digest, "") if ptype == VEX_TYPE else ""
        problem = self.attestation_problem(f"{image.repository}@{digest}", ptype, vex)
        return [f"{image.name} {platform}".strip() + f": {problem}"] if problem else []

    def attestation_problem(self, ref_at_digest: str, ptype: str, sha256: str = "") -> str:
        """Why the image has no verified ``ptype`` attestation naming it as its subject
        ("" when it has one: a verified statement about another image does not count);
        ``sha256``: of a VEX document, the one the record names
        (:func:`dcforge.core.vex.document_sha256`)."""
        digest = ref_at_digest.rsplit("@", 1)[1]
        try:
            out = self.cosign.verify_attestation(ref_at_digest, ptype)
        except ToolError as err:
            return f"{ptype} attestation does not verify ({err})"
        if digest not in subjects(out, ALL_TYPES[ptype]):
            return f"no {ptype} attestation names {digest} as subject"
        found = [vex.document_sha256(p) for p in predicates(out, ALL_TYPES[ptype], digest)]
        if sha256 and sha256 not in found:
            return (
                f"none of its {len(found)} verified {ptype} document(s) is the one the release "
                f"record names (sha256 {sha256[:12]}…)"
            )
        return ""

    def attested(self, ref_at_digest: str, ptypes: list[str], vex: str = "") -> set[str]:
        """Which of the types the image already has a verified attestation of, naming the
        image as subject (a re-run of a publish); none when it has no attestation manifest.
        ``vex``: the sha256 its VEX must have to count (another release's does not)."""
        found = self.registry.digest_or_none(_attestations_tag(ref_at_digest))
        if found is None:
            return set()  # (also when a batch proved them, and they are gone since)
        # What a batch verified counts while the manifest is the one it read.
        known = {p for p in ptypes if self.attested_as.get((ref_at_digest, p)) == found}
        return known | {
            ptype
            for ptype in ptypes
            if ptype not in known
            and not self.attestation_problem(ref_at_digest, ptype, vex if ptype == VEX_TYPE else "")
        }

    def prefetch_attested(self, refs_at_digest: Sequence[str]) -> None:
        """Verify the SBOM and provenance attestations of every image in ``refs_at_digest``
        that has attestations, in cosign runs of ATTESTATION_BATCH images per type, side by
        side, so that :meth:`attested` need not verify them one image at a time (a release
        reusing 999 images: 2,000 cosign runs). A batch that does not verify as one
        statement per image proves nothing: its images are checked one by one."""
        with ThreadPoolExecutor(max_workers=VERIFY_WORKERS) as pool:
            tags = [_attestations_tag(r) for r in refs_at_digest]
            read = dict(
                zip(refs_at_digest, pool.map(self.registry.digest_or_none, tags), strict=True)
            )
            refs = [(r, r.partition("@")[2]) for r, found in read.items() if found]
            if len({bool(self.registry.plain(ref)) for ref, _ in refs}) != 1:
                return
            size = ATTESTATION_BATCH
            runs = {
                (ptype, i): pool.submit(self._attestation_batch, ptype, refs[i : i + size])
                for ptype in PREDICATE_TYPES
                for i in range(0, len(refs), size)
            }
            verified = [key for key, run in runs.items() if run.result()]
            unchanged = self._unchanged(pool, read, "att")
        for ptype, i in verified:  # the manifest cosign read: the same before and after
            for ref, _ in refs[i : i + size]:
                if ref in unchanged:
                    self.attested_as[(ref, ptype)] = unchanged[ref]

    def verify_signatures(self, refs_at_digest: Sequence[str], runs: int = 1) -> bool:
        """``cosign verify`` of every image in ``refs_at_digest`` (see Cosign.verify_all),
        remembering the signature manifests it verified (read before and after, unchanged)
        for :meth:`verified_bindings`."""
        with ThreadPoolExecutor(max_workers=VERIFY_WORKERS) as pool:
            tags = [_artifact_tag(r, "sig") for r in refs_at_digest]
            read = dict(
                zip(refs_at_digest, pool.map(self.registry.digest_or_none, tags), strict=True)
            )  # (an image of two permutations is read twice, kept once)
            if not self.cosign.verify_all(refs_at_digest, runs):
                return False
            self.signed_as.update(self._unchanged(pool, read, "sig"))
        return True

    def _unchanged(
        self, pool: ThreadPoolExecutor, read: Mapping[str, str | None], kind: str
    ) -> dict[str, str]:
        """Of the images ``read`` (ref -> the digest of its ``kind`` manifest, sig or att,
        before a cosign run), those whose manifest reads the same again: ref -> digest."""
        again = pool.map(self.registry.digest_or_none, [_artifact_tag(r, kind) for r in read])
        return {
            ref: was
            for (ref, was), now in zip(read.items(), again, strict=True)
            if was is not None and now == was
        }

    def _tag_problems(self, image: release.Image) -> list[str]:
        """Every tag the release gives the image, the immutable one too (what a publish
        that had nothing to do trusts), resolves to it."""
        problems = []
        for tag in [*image.floating_tags, image.immutable_tag]:
            try:
                served = self.registry.digest_or_none(f"{image.repository}:{tag}")
            except RegistryError as err:
                problems.append(str(err))
                continue
            if served != image.digest:
                problems.append(
                    f"{image.repository}:{tag} resolves to {served}, the release names "
                    f"{image.digest}"
                )
        return problems

    def verify_release(
        self, rel: release.Release, check_tags: bool, read: release.Bindings | None = None
    ) -> list[str]:
        """Problems with a release. The signatures and attestations of every image its
        record does not bind are verified in a few cosign runs side by side first; only
        what fails there is checked image by image (to name the one that fails). ``read``:
        the signature and attestation manifests just read for each image (a new release's,
        verified_bindings); an image whose every one cosign verified earlier in this run is
        not verified again."""
        problems: list[str] = []
        for image, found in self._image_problems(rel, check_tags, read):
            problems += found
            each = (
                f" (index + {len(image.platforms)} platforms)" if len(image.platforms) > 1 else ""
            )
            log.step(
                image.name,
                f"ok: tags, signatures, SBOM + provenance{' + VEX' * bool(image.vex)}{each}"
                if not found
                else f"FAILED: {'; '.join(found)}",
            )
        return problems

    def _image_problems(
        self, rel: release.Release, check_tags: bool, read: release.Bindings | None = None
    ) -> list[tuple[release.Image, list[str]]]:
        """Each image of ``rel`` with its problems (verify_release)."""
        with ThreadPoolExecutor(max_workers=VERIFY_WORKERS) as pool:
            trusted = self.trusts_bindings(rel)
            bound = list(pool.map(lambda i: trusted and self._bound(i), rel.images))
            earlier = [
                not b and self._verified_earlier(i, read)
                for i, b in zip(rel.images, bound, strict=True)
            ]
            unbound = [
                i for i, b, e in zip(rel.images, bound, earlier, strict=True) if not (b or e)
            ]
            for image in (i for i, e in zip(rel.images, earlier, strict=True) if e):
                log.step(image.name, "signatures and attestations: verified earlier in this run")
            signed, attested = self._batches_verify(unbound, pool) if unbound else (False, False)
            results = list(
                pool.map(
                    lambda i, b, e: self.verify_image(
                        i,
                        check_tags,
                        bound=b,
                        signatures_verified=signed or e,
                        attestations_verified=attested or e,
                    ),
                    rel.images,
                    bound,
                    earlier,
                )
            )
        return list(zip(rel.images, results, strict=True))

    def _batches_verify(
        self, images: Sequence[release.Image], pool: ThreadPoolExecutor
    ) -> tuple[bool, bool]:
        """(every signature verifies, every attestation verifies) of ``images``, their
        cosign runs side by side: one for the signatures, one per predicate type and
        ATTESTATION_BATCH images for the attestations (each accepted only when one_each
        holds). False says only that something did not: the caller checks one by one."""
        signed_refs = [r for i in images for r in i.signed_refs()]
        signed = pool.submit(self.cosign.verify_all, signed_refs, VERIFY_WORKERS)
        refs = [(f"{i.repository}@{d}", d) for i in images for _, d in i.attestation_subjects()]
        if len({bool(self.registry.plain(ref)) for ref, _ in refs}) != 1:
            return signed.result(), False
        size = ATTESTATION_BATCH
        runs = [  # (each VEX is checked by its content, image by image: verify_image)
            pool.submit(self._attestation_batch, ptype, refs[i : i + size])
            for ptype in PREDICATE_TYPES
            for i in range(0, len(refs), size)
        ]
        attested = [run.result() for run in runs]
        return signed.result(), all(attested)

    def _attestation_batch(self, ptype: str, chunk: Sequence[tuple[str, str]]) -> bool:
        try:
            out = self.cosign.verify_attestations([ref for ref, _ in chunk], ptype)
        except ToolError:
            return False
        return one_each(out, [d for _, d in chunk], ALL_TYPES[ptype])

    def verified_bindings(
        self, manifest: mf.Manifest, gate_doc: dict[str, Any]
    ) -> release.Bindings:
        """The signature and attestation manifests publish left, verified by cosign before
        the record binds them (a record names only what was verified): read their digests,
        verify every signature and attestation, read the digests again."""
        before = self.bindings(manifest)
        problems = self.verify_release(
            release.parse(release.build(manifest, gate_doc), "new release"),
            check_tags=False,
            read=before,
        )
        if problems:
            raise PublishRefused(
                f"the new release does not verify ({len(problems)} problem(s): {problems[0]}) — "
                f"nothing was recorded and no tag moved; {release.LAST_KNOWN_GOOD} was NOT "
                "moved; fix and re-run publish"
            )
        if self.bindings(manifest) != before:
            raise PublishRefused(
                "a signature or attestation manifest changed while it was being verified — "
                f"nothing was recorded; {release.LAST_KNOWN_GOOD} was NOT moved; re-run publish"
            )
        return before

    def bindings(self, manifest: mf.Manifest) -> release.Bindings:
        """What publish left for each image: the digest of the signature manifest of the
        image and each child, and of each platform's attestation manifest (for the record:
        see release.Image)."""
        images = release.parse(release.build(manifest, {}), "new release").images
        wanted = [
            (image.name, kind, digest, f"{image.repository}:{release.artifact_tag(digest, tag)}")
            for image in images
            for kind, tag, digests in (
                ("signatures", "sig", [r.rsplit("@", 1)[1] for r in image.signed_refs()]),
                ("attestations", "att", [d for _, d in image.attestation_subjects()]),
            )
            for digest in digests
        ]
        with ThreadPoolExecutor(max_workers=8) as pool:
            found = list(pool.map(lambda w: self.registry.digest_or_none(w[3]), wanted))
        out: release.Bindings = {}
        for (name, kind, digest, ref), artifact in zip(wanted, found, strict=True):
            if artifact is None:
                raise VerifyFailed(f"{name}: {ref} is missing right after it was written")
            out.setdefault(name, {}).setdefault(kind, {})[digest] = artifact
        return out

    def _verified_earlier(self, image: release.Image, read: release.Bindings | None) -> bool:
        """Every signature and attestation manifest ``read`` names for ``image`` is exactly
        one cosign verified earlier in this run (verify_signatures, prefetch_attested), for
        each predicate type. An image with a VEX is not: its VEX is checked by content."""
        found = (read or {}).get(image.name)
        if not found or image.vex_digests():
            return False
        sigs = [r.rsplit("@", 1)[1] for r in image.signed_refs()]
        atts = [d for _, d in image.attestation_subjects()]
        signed = found.get("signatures", {})
        attested = found.get("attestations", {})
        return all(
            signed.get(d) is not None and self.signed_as.get(f"{image.repository}@{d}") == signed[d]
            for d in sigs
        ) and all(
            attested.get(d) is not None
            and self.attested_as.get((f"{image.repository}@{d}", ptype)) == attested[d]
            for d in atts
            for ptype in PREDICATE_TYPES
        )

    def _bound(self, image: release.Image) -> bool:
        """Every signature and attestation manifest of ``image`` is, byte for byte, the one
        its signed record names (what publish signed and verified: under today's policy
        only when :meth:`trusts_bindings` says so)."""
        if not image.bound():
            return False
        wanted = [(d, a, "sig") for d, a in image.signatures]
        wanted += [(d, a, "att") for d, a in image.attestations]
        for digest, artifact, kind in wanted:
            ref = f"{image.repository}:{release.artifact_tag(digest, kind)}"
            if self.registry.digest_or_none(ref) != artifact:
                return False  # changed since (re-attested, say): cosign decides
        return True


def _attestations_tag(ref_at_digest: str) -> str:
    """Where cosign keeps the attestations of the image ``repository@digest``."""
    return _artifact_tag(ref_at_digest, "att")


def _artifact_tag(ref_at_digest: str, kind: str) -> str:
    """Where cosign keeps the signatures (``sig``) or attestations (``att``) of the image
    ``repository@digest``."""
    repository, _, digest = ref_at_digest.partition("@")
    return f"{repository}:{release.artifact_tag(digest, kind)}"
