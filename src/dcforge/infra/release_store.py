"""Releases in the registry: the one place where release records are fetched, checked and
moved. Publish, verify, rollback, ``build --since`` and retention all go through here.

- A **record** (``dcforge-releases:<git sha>``, see :mod:`dcforge.core.release`) is fetched by
  digest, its signature verified, and it must be the release that was asked for: a record
  whose ``git_sha`` is not the SHA of the tag it was found under is refused (someone copied
  another release's validly signed record onto that tag).
- The **pin** ``last-known-good`` is a signed statement of its own (git SHA + record
  digest), not a tag on a record: the record it names must be that release.
- Records are signed by the digest their push wrote, never by one read back through a tag.
- **Tag moves** are all or nothing: moves already made are put back if one fails.
- Rollbacks leave **audit records** next to the records.
"""

from __future__ import annotations

import datetime as dt
import getpass
import json
import tempfile
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from dcforge.core import manifest as mf
from dcforge.core import release
from dcforge.core import tag_moves as tm
from dcforge.core.attestations import PREDICATE_TYPES, one_each, subjects
from dcforge.core.errors import (
    DcforgeError,
    ManifestError,
    PublishRefused,
    RegistryError,
    RollbackRefused,
    ToolError,
    VerifyFailed,
)
from dcforge.core.settings import Settings
from dcforge.infra import log
from dcforge.infra.tools.cosign import ATTESTATION_BATCH, Cosign
from dcforge.infra.tools.registry import ABSENT, Registry

# cosign processes per image, and images, verified at once (reads only; they wait on the
# registry more than on the CPU).
VERIFY_WORKERS = 4


@dataclass(frozen=True)
class Releases:
    settings: Settings
    registry: Registry
    cosign: Cosign
    env: Mapping[str, str] = field(repr=False)  # credentials: never in a repr

    @property
    def repository(self) -> str:
        return release.repository(self.settings.registry)

    @property
    def dry_run(self) -> bool:
        return self.registry.runner.dry_run

    def login(self) -> None:
        """Log in with credentials from the environment, never files (``oras login
        --password-stdin``: the password is in no argv and no log): the staging registry
        with ``DCFORGE_STAGING_USERNAME``/``_PASSWORD`` (a build job holds only those), then
        the release registry with ``DCFORGE_REGISTRY_USERNAME``/``_PASSWORD`` (GHCR:
        ``GITHUB_TOKEN``) — on one host, the release credential is the one that stays."""
        env = self.env
        actor = env.get("GITHUB_ACTOR") or "dcforge"
        host = self.settings.registry.split("/", 1)[0]
        logins = []
        if self.settings.staging_registry and env.get("DCFORGE_STAGING_PASSWORD"):
            logins.append(
                (
                    self.settings.staging_registry.split("/", 1)[0],
                    env.get("DCFORGE_STAGING_USERNAME") or actor,
                    env["DCFORGE_STAGING_PASSWORD"],
                )
            )
        password = env.get("DCFORGE_REGISTRY_PASSWORD") or (
            env.get("GITHUB_TOKEN", "") if host == "ghcr.io" else ""
        )
        if password:
            logins.append((host, env.get("DCFORGE_REGISTRY_USERNAME") or actor, password))
        for where, username, secret in logins:
            self.registry.login(where, username, secret)

    # -- reading -------------------------------------------------------------------------

    def tags(self) -> list[str]:
        """Every tag of the release repository (none while it does not exist)."""
        try:
            return self.registry.tags(self.repository)
        except ToolError as err:
            if ABSENT.search(f"{err} {err.details}"):
                return []
            raise RegistryError(f"cannot list releases in {self.repository}: {err}") from None

    def newest_publish(
        self, sha: str, tags: Sequence[str], above: int = 0
    ) -> tuple[int, str, release.Release] | None:
        """(number, digest, record) of the newest publish of ``sha`` above ``above`` whose
        record at ``<sha>.<n>`` verifies and states that SHA and number; None if none does.
        Tags that fail are named in a warning and passed over: a publish cut off before
        signing must not lock readers out of the release before it."""
        for n in sorted((n for n in release.sequences(tags, sha) if n > above), reverse=True):
            reference = f"{self.repository}:{release.sequence_tag(sha, n)}"
            try:
                digest, found = self._record_at(reference)
            except VerifyFailed as err:
                log.warn(f"{reference} is not a valid publish of {sha[:12]}, passed over: {err}")
                continue
            if (found.git_sha, found.sequence) == (sha, n):
                return n, digest, found
            log.warn(
                f"{reference} holds publish {found.sequence} of {found.git_sha[:12]}, not "
                f"publish {n} of {sha[:12]}: passed over"
            )
        return None

    def fetch(self, target: str) -> tuple[str, release.Release]:
        """The verified record for ``target`` (a git SHA or a short one, a record digest, or
        last-known-good)."""
        pin = self._pin_or_none()
        if target == release.LAST_KNOWN_GOOD:
            if pin is None:
                pin = self.fetch_pin()[1]  # raises: says why there is no valid pin
            log.info(
                f"{release.LAST_KNOWN_GOOD}: release {pin.git_sha[:12]}, pinned "
                f"{pin.pinned_at or '(time not recorded)'}"
            )
            return self.fetch_record(
                f"{self.repository}@{pin.record_digest}", pin.git_sha, pinned=True
            )
        if release.DIGEST_RE.match(target):
            return self.fetch_record(f"{self.repository}@{target}", "", pin=pin)
        tags = self.tags()
        sha = release.released_sha(target, tags, self.repository)
        # The newest valid publish of the SHA, by its own tag: ``<sha>`` moving does not
        # matter, and a publish that never got signed (cut off, or junk) is passed over.
        newest = self.newest_publish(sha, tags)
        if newest is None:  # a record from before publish numbers: ``<sha>`` names it
            return self.fetch_record(f"{self.repository}:{sha}", sha, tags=tags, pin=pin)
        number, digest, rel = newest
        reference = f"{self.repository}:{release.sequence_tag(sha, number)}"
        release.refuse_superseded(
            self.repository, reference, digest, rel, release.pinned_number(pin, sha)
        )
        return digest, rel

    def _pin_or_none(self) -> release.Pin | None:
        """The signed pin, or None when there is none (or it does not verify)."""
        if self.registry.digest_or_none(f"{self.repository}:{release.LAST_KNOWN_GOOD}") is None:
            return None
        try:
            return self.fetch_pin()[1]
        except VerifyFailed:
            return None

    def _signed_json(
        self, reference: str, file_name: str, what: str, artifact_type: str
    ) -> tuple[str, Any]:
        """Resolve ``reference``, check the artifact is exactly one ``file_name`` of
        ``artifact_type``, verify the signature on that digest, read the file."""
        digest = self.registry.digest_or_none(reference)
        if digest is None:
            raise VerifyFailed(f"no {what} at {reference}")
        at = f"{self.repository}@{digest}"
        if not self._is_artifact(at, artifact_type, file_name):
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
                return digest, json.loads((files / file_name).read_text())
            except (OSError, ValueError) as err:
                raise VerifyFailed(
                    f"{reference} ({digest[:19]}) holds no readable {what} ({err})"
                ) from None

    def fetch_record(
        self,
        reference: str,
        expected_sha: str,
        *,
        tags: Sequence[str] | None = None,
        pin: release.Pin | None = None,
        pinned: bool = False,
    ) -> tuple[str, release.Release]:
        """Resolve, signature-check and parse the record; it must be release ``expected_sha``
        and the newest publish of its SHA — no valid later publish, and none below what the
        signed ``pin`` states for that SHA (``tags``: the release repository's, when known).
        ``pinned``: the record the pin names, taken as pinned (a later publish that was
        never pinned — its publish failed after the record — is only warned about)."""
        digest, rel = self._record_at(reference)
        if expected_sha and rel.git_sha != expected_sha:
            raise VerifyFailed(
                f"{reference} ({digest[:19]}) holds the record of release {rel.git_sha[:12]}, not "
                f"of {expected_sha[:12]} — refused: another release's record was put under "
                "this name; re-publish or restore the right record"
            )
        listed = self.tags() if tags is None else tags
        later = self.newest_publish(rel.git_sha, listed, rel.sequence)
        if pinned and later:
            log.warn(
                f"release {rel.git_sha[:12]} has a later publish ({later[0]}) than the pinned "
                f"one ({rel.sequence}): re-run its publish, or pin it (invoke pin --sha "
                f"{rel.git_sha[:12]})"
            )
        elif not pinned:
            newest = max(later[0] if later else 0, release.pinned_number(pin, rel.git_sha))
            release.refuse_superseded(self.repository, reference, digest, rel, newest)
        return digest, rel

    def _record_at(self, reference: str) -> tuple[str, release.Release]:
        """The signed release record at ``reference``: (digest, record); VerifyFailed for
        anything else."""
        digest, data = self._signed_json(
            reference, release.FILE_NAME, "release record", release.ARTIFACT_TYPE
        )
        try:
            return digest, release.parse(data, reference)
        except ManifestError as err:
            raise VerifyFailed(str(err)) from None

    def fetch_pin(self) -> tuple[str, release.Pin]:
        reference = f"{self.repository}:{release.LAST_KNOWN_GOOD}"
        digest, data = self._signed_json(
            reference, release.PIN_FILE_NAME, "pin statement", release.PIN_ARTIFACT_TYPE
        )
        try:
            return digest, release.parse_pin(data, reference)
        except ManifestError as err:
            raise VerifyFailed(f"{err} — re-pin a release: invoke pin --sha X") from None

    def pin_as_stated(self) -> release.Pin | None:
        """What ``last-known-good`` says, signature unchecked (None: no readable statement).
        Only for ordering (publish moves forward): after a key rotation the pin does not
        verify with the new key, yet still says which commit is live."""
        with tempfile.TemporaryDirectory(prefix="dcforge-pin-") as tmp:
            try:
                at = f"{self.repository}:{release.LAST_KNOWN_GOOD}"
                files = self.registry.fetch_artifact(at, Path(tmp))
                data = json.loads((files / release.PIN_FILE_NAME).read_text())
                return release.parse_pin(data, at)
            except (OSError, ValueError, DcforgeError):
                return None

    def check_images(self, rel: release.Release) -> None:
        """Every image still exists, its signature and attestations verify (before any tag
        moves): a release whose publish stopped before verify is not one to go back to."""

        def check(image: release.Image) -> None:
            problems = self.verify_image(image, check_tags=False)
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

        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(check, rel.images))

    def verify_image(
        self,
        image: release.Image,
        check_tags: bool,
        *,
        bound: bool | None = None,
        signatures_verified: bool = False,
        attestations_verified: bool = False,
    ) -> list[str]:
        """Problems with one image of a release (empty: tags, the signatures of the image
        and of each platform's image, and each platform's attestations all verify).
        ``bound``: whether :meth:`_bound` holds, when the caller knows already;
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
        if self._bound(image) if bound is None else bound:  # the signed record names them
            log.step(
                image.name, "signatures and attestations: the manifests its signed record names"
            )
            return problems
        # Every signature and attestation check is a read of its own: run them at once.
        checks = [
            partial(self._check_signature, ref)
            for ref in ([] if signatures_verified else image.signed_refs())
        ]
        checks += [
            partial(self._check_attestation, image, platform, digest, ptype)
            for platform, digest in ([] if attestations_verified else image.attested())
            for ptype in PREDICATE_TYPES
        ]
        with ThreadPoolExecutor(max_workers=VERIFY_WORKERS) as pool:
            for found in pool.map(lambda check: check(), checks):
                problems += found
        return problems

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
        problem = self.attestation_problem(f"{image.repository}@{digest}", ptype)
        return [f"{image.name} {platform}".strip() + f": {problem}"] if problem else []

    def attestation_problem(self, ref_at_digest: str, ptype: str) -> str:
        """Why the image has no verified ``ptype`` attestation naming it as its subject
        ("" when it has one: a verified statement about another image does not count)."""
        digest = ref_at_digest.rsplit("@", 1)[1]
        try:
            out = self.cosign.verify_attestation(ref_at_digest, ptype)
        except ToolError as err:
            return f"{ptype} attestation does not verify ({err})"
        if digest not in subjects(out, PREDICATE_TYPES[ptype]):
            return f"no {ptype} attestation names {digest} as subject"
        return ""

    def _tag_problems(self, image: release.Image) -> list[str]:
        problems = []
        for tag in image.floating_tags:
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

    def verify_release(self, rel: release.Release, check_tags: bool) -> list[str]:
        """Problems with a release. The signatures and attestations of every image its
        record does not bind are verified in a few cosign runs side by side first; only
        what fails there is checked image by image (to name the one that fails)."""
        problems: list[str] = []
        with ThreadPoolExecutor(max_workers=VERIFY_WORKERS) as pool:
            bound = list(pool.map(self._bound, rel.images))
            unbound = [i for i, b in zip(rel.images, bound, strict=True) if not b]
            signed, attested = self._batches_verify(unbound, pool) if unbound else (False, False)
            results = list(
                pool.map(
                    lambda i, b: self.verify_image(
                        i,
                        check_tags,
                        bound=b,
                        signatures_verified=signed,
                        attestations_verified=attested,
                    ),
                    rel.images,
                    bound,
                )
            )
        for image, found in zip(rel.images, results, strict=True):
            problems += found
            each = (
                f" (index + {len(image.platforms)} platforms)" if len(image.platforms) > 1 else ""
            )
            log.step(
                image.name,
                f"ok: tags, signatures, SBOM + provenance{each}"
                if not found
                else f"FAILED: {'; '.join(found)}",
            )
        return problems

    def _batches_verify(
        self, images: Sequence[release.Image], pool: ThreadPoolExecutor
    ) -> tuple[bool, bool]:
        """(every signature verifies, every attestation verifies) of ``images``, their
        cosign runs side by side: one for the signatures, one per predicate type and
        ATTESTATION_BATCH images for the attestations (each accepted only when one_each
        holds). False says only that something did not: the caller checks one by one."""
        signed_refs = [r for i in images for r in i.signed_refs()]
        signed = pool.submit(self.cosign.verify_all, signed_refs, VERIFY_WORKERS)
        refs = [(f"{i.repository}@{d}", d) for i in images for _, d in i.attested()]
        if len({bool(self.registry.plain(ref)) for ref, _ in refs}) != 1:
            return signed.result(), False
        size = ATTESTATION_BATCH
        runs = [
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
        return one_each(out, [d for _, d in chunk], PREDICATE_TYPES[ptype])

    def floating(self, rel: release.Release) -> list[tuple[str, str | None, str]]:
        """(tag, digest it serves now, digest the release names) for every floating tag."""
        return self._floating(rel.images)

    def _floating(self, images: Sequence[release.Image]) -> list[tuple[str, str | None, str]]:
        wanted = [(f"{i.repository}:{t}", i.digest) for i in images for t in i.floating_tags]
        with ThreadPoolExecutor(max_workers=8) as pool:
            found = list(pool.map(self.registry.digest_or_none, [ref for ref, _ in wanted]))
        return [(ref, cur, target) for (ref, target), cur in zip(wanted, found, strict=True)]

    # -- writing -------------------------------------------------------------------------

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
                ("attestations", "att", [d for _, d in image.attested()]),
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

    def _bound(self, image: release.Image) -> bool:
        """Every signature and attestation manifest of ``image`` is, byte for byte, the one
        its signed record names (what publish signed and verified)."""
        if not image.bound():
            return False
        wanted = [(d, a, "sig") for d, a in image.signatures]
        wanted += [(d, a, "att") for d, a in image.attestations]
        for digest, artifact, kind in wanted:
            ref = f"{image.repository}:{release.artifact_tag(digest, kind)}"
            if self.registry.digest_or_none(ref) != artifact:
                return False  # changed since (re-attested, say): cosign decides
        return True

    def store_record(
        self,
        manifest: mf.Manifest,
        gate_doc: dict[str, Any],
        work: Path,
        bindings: release.Bindings | None = None,
    ) -> tuple[str, str, int]:
        """Push (or find) this publish's record and sign that digest; (reference, digest,
        publish number). Each publish of a SHA that changes the record is a record of its
        own at ``<sha>.<n>``, naming the one it supersedes; ``<sha>`` follows the newest.

        The newest record is reused only when its bytes are exactly what this publish would
        write as that number; it is then signed if its signature does not verify yet (a
        publish cut off between push and sign).
        """
        sha = manifest.git_sha
        newest, existing, previous = self._latest(sha)
        if existing and previous:
            body = release.encode(
                release.build(
                    manifest, gate_doc, bindings, sequence=previous[0], supersedes=previous[1]
                )
            )
            at = f"{self.repository}@{existing}"
            if self._is_artifact(at, release.ARTIFACT_TYPE, release.FILE_NAME, body):
                # The newest valid publish was verified finding it; another may need signing.
                verified = newest > 0
                return self._signed_record(manifest, existing, previous[0], "already", verified)
        sequence = release.next_sequence(newest, existing, previous)
        body = release.encode(
            release.build(
                manifest, gate_doc, bindings, sequence=sequence, supersedes=existing or ""
            )
        )
        (work / release.FILE_NAME).write_bytes(body)
        digest = self.registry.push_artifact(
            f"{self.repository}:{release.sequence_tag(sha, sequence)}",
            work,
            release.FILE_NAME,
            artifact_type=release.ARTIFACT_TYPE,
            annotations=release.record_annotations(manifest, sequence),
        )
        return self._signed_record(manifest, digest, sequence, "done", verified=False)

    def _latest(self, sha: str) -> tuple[int, str | None, tuple[int, str] | None]:
        """(newest valid publish number or 0, the record a new publish supersedes, its
        (number, supersedes)): the newest valid publish, or (none yet) whatever ``<sha>``
        holds — a record from before publish numbers, or one never signed (cut off)."""
        valid = self.newest_publish(sha, self.tags())
        if valid:
            return valid[0], valid[1], (valid[0], valid[2].supersedes)
        existing = self.registry.digest_or_none(f"{self.repository}:{sha}")
        return 0, existing, self._publish_of(existing) if existing else None

    def _publish_of(self, digest: str) -> tuple[int, str] | None:
        """(publish number, what it supersedes) a stored record says (None: unreadable —
        it is superseded all the same; what counts is verified when read)."""
        with tempfile.TemporaryDirectory(prefix="dcforge-record-") as tmp:
            try:
                files = self.registry.fetch_artifact(f"{self.repository}@{digest}", Path(tmp))
                found = release.parse(json.loads((files / release.FILE_NAME).read_text()), digest)
            except (OSError, ValueError, DcforgeError):
                return None
        return found.sequence, found.supersedes

    def _signed_record(
        self, manifest: mf.Manifest, digest: str, sequence: int, state: str, verified: bool
    ) -> tuple[str, str, int]:
        """Sign the record ``digest`` (unless its signature verifies: ``verified`` when that
        was checked already), then point ``<sha>`` at it: the tag names only a signed
        record."""
        at = f"{self.repository}@{digest}"
        # A record pushed just now has no signature of its own to check first.
        if state == "done" or not (verified or self.cosign.verified(at)):
            problem = self.cosign.sign_checked(at)
            if problem:
                raise PublishRefused(
                    f"the release record {at} was signed but {problem} — no tag moved"
                )
        reference = f"{self.repository}:{manifest.git_sha}"
        if self.registry.digest_or_none(reference) != digest:
            self.registry.tag(at, [manifest.git_sha])
        log.info(f"release record {reference} {digest[:19]}, publish {sequence} ({state})")
        return reference, digest, sequence

    def move_tags(
        self,
        images: Sequence[release.Image],
        current: Mapping[str, str | None] | None = None,
    ) -> dict[str, str]:
        """Point every floating tag at its image's digest; returns tag → previous digest.
        ``current``: what every ``repository:tag`` serves, as the caller just read it under
        the registry lock (else read here).

        All or nothing: if a move fails, the tags already moved are put back to their
        previous digests before the error is raised, so the registry shows the old release
        or the new one, never a mix.
        """
        if current is None:
            current = {ref: cur for ref, cur, _ in self._floating(images)}
        plan, moved = tm.plan(images, current)

        # Each image's tags are one write of their own: made side by side (a release of
        # hundreds of images), then all read back. Any failure puts back every planned tag
        # — a failed write of several tags may have moved some of them.
        try:
            with ThreadPoolExecutor(max_workers=8) as pool:
                errors = list(pool.map(self._write_tags, plan))
            failed = [err for err in errors if err is not None]
            if failed:
                undone = self._put_back(plan, moved)
                raise DcforgeError(
                    f"moving floating tags failed ({failed[0]}); {undone} — re-run to complete"
                )
            wrong = self._read_back(images)
        except DcforgeError:
            raise
        except BaseException:  # interrupted, or no thread to run on: put back, then stop
            self._put_back(plan, moved)
            raise
        if wrong:
            undone = self._put_back(plan, moved)
            raise DcforgeError(f"{wrong} (another writer?); {undone} — re-run to complete")
        return moved

    def _read_back(self, images: Sequence[release.Image]) -> str:
        """The first floating tag not serving its image's digest now, or ''."""
        wanted = [(f"{i.repository}:{t}", i.digest) for i in images for t in i.floating_tags]
        with ThreadPoolExecutor(max_workers=8) as pool:
            after = list(pool.map(self._served_or_error, [ref for ref, _ in wanted]))
        for (ref, digest), found in zip(wanted, after, strict=True):
            if found != digest:
                return f"{ref} serves {found}, expected {digest}"
        return ""

    def _write_tags(self, item: tuple[release.Image, list[str]]) -> DcforgeError | None:
        try:
            self.registry.tag(item[0].ref(), item[1])
        except DcforgeError as err:
            return err
        return None

    def _served_or_error(self, ref: str) -> str:
        try:
            return self.registry.resolve(ref)
        except DcforgeError as err:
            return f"nothing readable ({err})"

    def restore(self, moved: Mapping[str, str]) -> str:
        """Put tags moved by :meth:`move_tags` back where they were."""
        return self._put_back(tm.undo_plan(moved), dict(moved))

    def _put_back(self, done: tm.Plan, previous: dict[str, str]) -> str:
        """Every tag of ``done`` back at its ``previous`` digest: a tag already there (a
        write that never happened) is left alone; a tag that did not exist before can only
        be reported (the registry API has no tag delete)."""
        tags = [f"{image.repository}:{tag}" for image, todo in done for tag in todo]
        with ThreadPoolExecutor(max_workers=8) as pool:
            outcomes = list(pool.map(lambda ref: self._put_back_one(ref, previous[ref]), tags))
        return tm.put_back_report(tags, outcomes)

    def _put_back_one(self, ref: str, old: str) -> str:
        """'kept' (already at ``old``), 'restored', 'new' (moved, none before) or 'failed'."""
        repository, tag = ref.rsplit(":", 1)
        try:
            now = self.registry.digest_or_none(ref)
            if now == (None if old == tm.NO_TAG else old):
                return "kept"
            if old == tm.NO_TAG:
                return "new"
            self.registry.tag(f"{repository}@{old}", [tag])
        except DcforgeError:
            return "failed"
        return "restored"

    def set_pin(self, rel: release.Release, record_digest: str) -> bool:
        """Point ``last-known-good`` at a signed statement naming this release; False when
        it already did. The statement it replaces is deleted, so it cannot be re-tagged."""
        reference = f"{self.repository}:{release.LAST_KNOWN_GOOD}"
        previous = self.registry.digest_or_none(reference)
        if previous is not None:
            try:
                _, pin = self.fetch_pin()
                if pin.record_digest == record_digest and pin.git_sha == rel.git_sha:
                    return False
            except VerifyFailed:
                pass  # no valid pin yet (or a pre-statement tag): write one
        now = dt.datetime.now(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
        with tempfile.TemporaryDirectory(prefix="dcforge-pin-") as tmp:
            (Path(tmp) / release.PIN_FILE_NAME).write_bytes(
                release.pin_statement(rel.git_sha, record_digest, now, rel.sequence)
            )
            digest = self.registry.push_artifact(
                reference,
                Path(tmp),
                release.PIN_FILE_NAME,
                artifact_type=release.PIN_ARTIFACT_TYPE,
                annotations={"dev.dcforge.pin.git_sha": rel.git_sha},
            )
        # The push moved the tag: until the statement is signed, a failure puts it back.
        try:
            problem = self.cosign.sign_checked(f"{self.repository}@{digest}")
        except DcforgeError as err:
            raise err.adding(f"; {self._unpin(previous, digest)}") from None
        except BaseException:
            self._unpin(previous, digest)
            raise
        if problem:
            raise VerifyFailed(
                f"the new {release.LAST_KNOWN_GOOD} statement was signed but {problem}; "
                + self._unpin(previous, digest)
            )
        if previous is not None and previous != digest and self._is_pin(previous):
            self._retire_pin(previous)
        return True

    def _unpin(self, previous: str | None, digest: str) -> str:
        """Take ``last-known-good`` off the statement ``digest`` whose signing failed: back
        to ``previous`` (when there was one), and the statement (and any signature) deleted,
        so it cannot be tagged again. Says what it did, for the error."""
        if previous is not None:
            try:
                self.registry.tag(f"{self.repository}@{previous}", [release.LAST_KNOWN_GOOD])
            except DcforgeError as err:
                return (
                    f"{release.LAST_KNOWN_GOOD} could not be put back ({err}): it names a "
                    "statement verify and rollback refuse — re-run"
                )
        retired = previous == digest or self._retire_pin(digest)
        if previous is not None:
            return f"{release.LAST_KNOWN_GOOD} was put back"
        if retired:
            return f"the unsigned {release.LAST_KNOWN_GOOD} statement was deleted"
        return (
            f"{release.LAST_KNOWN_GOOD} names an unsigned statement, which verify and "
            "rollback refuse — re-run"
        )

    def _retire_pin(self, digest: str) -> bool:
        """Delete a replaced pin statement and its signature, so it is not simply re-tagged.
        Best effort (False, with a warning): some registries (GHCR) refuse manifest deletes;
        retention removes it."""
        signature = f"{self.repository}:{release.artifact_tag(digest, 'sig')}"
        try:
            sig_digest = self.registry.digest_or_none(signature)
            self.registry.delete(f"{self.repository}@{digest}")
            if sig_digest:
                self.registry.delete(f"{self.repository}@{sig_digest}")
        except DcforgeError as err:
            log.warn(f"the replaced pin statement {digest[:19]} stays in the registry ({err})")
            return False
        return True

    def _is_artifact(
        self, ref_at_digest: str, artifact_type: str, file_name: str, body: bytes | None = None
    ) -> bool:
        """The manifest at ``ref_at_digest`` is exactly one file ``file_name`` of
        ``artifact_type`` (see :func:`dcforge.core.release.is_artifact`)."""
        doc = self.registry.manifest(ref_at_digest)
        return release.is_artifact(doc, artifact_type, file_name, body)

    def _is_pin(self, digest: str) -> bool:
        at = f"{self.repository}@{digest}"
        return self._is_artifact(at, release.PIN_ARTIFACT_TYPE, release.PIN_FILE_NAME)

    def audit(self, rel: release.Release, record_digest: str, moves: Sequence[tm.Move]) -> str:
        """An audit record of a rollback, next to the release records."""
        now = dt.datetime.now(dt.UTC)
        who = self.env.get("GITHUB_ACTOR") or self.env.get("USER") or getpass.getuser()
        run = self.env.get("GITHUB_RUN_ID", "")
        tag, doc = tm.audit_record(rel, record_digest, moves, who, now, run)
        with tempfile.TemporaryDirectory(prefix="dcforge-audit-") as tmp:
            (Path(tmp) / tm.AUDIT_FILE_NAME).write_text(json.dumps(doc, indent=2))
            self.registry.push_artifact(
                f"{self.repository}:{tag}",
                Path(tmp),
                tm.AUDIT_FILE_NAME,
                artifact_type=tm.AUDIT_ARTIFACT_TYPE,
                annotations={
                    "org.opencontainers.image.created": doc["when"],
                    "dev.dcforge.rollback.to": rel.git_sha,
                    "dev.dcforge.rollback.who": who,
                },
            )
        return f"{self.repository}:{tag}"

    # -- listing -------------------------------------------------------------------------

    def listing(self) -> list[dict[str, Any]]:
        """Every release, newest first, with whether it is pinned and current."""
        try:
            pinned = self.fetch_pin()[1].record_digest
        except VerifyFailed:
            pinned = ""
        rows = []
        for sha in release.released_shas(self.tags()):
            # ``<sha>`` names the newest signed publish; a first publish cut off before its
            # signature has only ``<sha>.1``: not (yet) a release.
            digest = self.registry.digest_or_none(f"{self.repository}:{sha}")
            if digest is None:
                continue
            notes = self.registry.manifest(f"{self.repository}@{digest}").get("annotations")
            rows.append(release.listing_row(sha, digest, notes, pinned))
        rows.sort(key=lambda r: str(r["created"]), reverse=True)
        for row in rows:
            row["current"] = self._is_current(f"{self.repository}@{row['digest']}")
        return rows

    def _is_current(self, ref_at_digest: str) -> bool:
        with tempfile.TemporaryDirectory(prefix="dcforge-rel-") as tmp:
            files = self.registry.fetch_artifact(ref_at_digest, Path(tmp))
            try:
                data = json.loads((files / release.FILE_NAME).read_text())
                rel = release.parse(data, ref_at_digest)
            except (OSError, ValueError, DcforgeError):
                return False
        return all(cur == target for _, cur, target in self.floating(rel))
