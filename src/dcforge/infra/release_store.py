"""Releases in the registry: the one place where release records are fetched, checked and
moved. Publish, verify, rollback, ``build --since`` and retention all go through here.

- A **record** (``dcforge-releases:<git sha>``, see :mod:`dcforge.core.release`) is fetched by
  digest, its signature verified, and it must be the release that was asked for: a record
  whose ``git_sha`` is not the SHA of the tag it was found under is refused (someone copied
  another release's validly signed record onto that tag).
- The **pin** ``last-known-good`` is a signed statement of its own (git SHA + record
  digest), not a tag on a record: the record it names must be that release
  (:mod:`dcforge.infra.pin_store`).
- Records are signed by the digest their push wrote, never by one read back through a tag.
- **Tag moves** are all or nothing: moves already made are put back if one fails
  (:mod:`dcforge.infra.floating_tags`).
- A release's images, signatures and attestations are checked by
  :mod:`dcforge.infra.release_checks`.
- Rollbacks leave **audit records** next to the records.

Which record a name means (a short SHA, the newest publish, the pin's floor) is decided in
:mod:`dcforge.core.release`.
"""

from __future__ import annotations

import datetime as dt
import getpass
import json
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property, partial
from pathlib import Path
from typing import Any

from dcforge.core import manifest as mf
from dcforge.core import release
from dcforge.core import tag_moves as tm
from dcforge.core.errors import (
    DcforgeError,
    ManifestError,
    PublishRefused,
    RegistryError,
    ToolError,
    VerifyFailed,
)
from dcforge.core.settings import Settings
from dcforge.infra import log
from dcforge.infra.floating_tags import FloatingTags
from dcforge.infra.pin_store import PinStore
from dcforge.infra.release_checks import ReleaseChecks
from dcforge.infra.tools.cosign import Cosign
from dcforge.infra.tools.registry import Registry, is_absent


@dataclass(frozen=True)
class Releases:
    """The release store of one command. It reads and writes the records itself, and hands
    the pin, the checks and the floating tags to the parts it is made of (``pins``,
    ``checks``, ``floating_tags``): a stage needs only ``ctx.releases``."""

    settings: Settings
    registry: Registry
    cosign: Cosign
    env: Mapping[str, str] = field(repr=False)  # credentials: never in a repr

    @property
    def repository(self) -> str:
        return release.repository(self.settings.registry)

    @cached_property
    def checks(self) -> ReleaseChecks:
        return ReleaseChecks(self.registry, self.cosign)

    @cached_property
    def floating_tags(self) -> FloatingTags:
        return FloatingTags(self.registry)

    @cached_property
    def pins(self) -> PinStore:
        return PinStore(self.registry, self.cosign, self.checks, self.repository)

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
            if is_absent(err):
                return []
            raise RegistryError(f"cannot list releases in {self.repository}: {err}") from None

    def newest_publish(
        self, sha: str, tags: Sequence[str], above: int = 0, *, strict: bool = True
    ) -> tuple[int, str, release.Release] | None:
        """(number, digest, record) of the newest publish of ``sha`` above ``above``: the
        record at the highest ``<sha>.<n>``, which must verify and state that SHA and number;
        None when there is no such tag.

        ``strict`` (a reader asking for the release): a highest tag that does not verify, or
        holds another publish's signed record, is refused — it is a publish cut off before
        signing (re-running the publish signs or supersedes it) or a tag someone re-pointed,
        and passing over it would hand out an earlier publish. Not strict (publish finding
        the number to write, the pin's own record): such tags are warned about and passed
        over."""
        for n in sorted((n for n in release.sequences(tags, sha) if n > above), reverse=True):
            reference = f"{self.repository}:{release.sequence_tag(sha, n)}"
            try:
                digest, found = self._record_at(reference)
                release.check_publish_tag(reference, digest, found, sha, n)
            except VerifyFailed as err:
                if strict:
                    raise VerifyFailed(
                        f"{err} — the newest publish of {sha[:12]} is not valid: refused, an "
                        f"earlier one is not this release any more; re-run the publish of "
                        f"{sha[:12]} (it signs or supersedes publish {n})"
                    ) from None
                log.warn(f"{reference} is not a valid publish of {sha[:12]}, passed over: {err}")
                continue
            return n, digest, found
        return None

    def fetch(self, target: str) -> tuple[str, release.Release]:
        """The verified record for ``target`` (a git SHA or a short one, a record digest, or
        last-known-good)."""
        pin = self.pins.fetch_or_none()
        floor = pin if pin is not None else self.pins.stated_if_unverified()
        if target == release.LAST_KNOWN_GOOD:
            if pin is None:
                pin = self.pins.fetch()[1]  # raises: says why there is no valid pin
            log.info(
                f"{release.LAST_KNOWN_GOOD}: release {pin.git_sha[:12]}, pinned "
                f"{pin.pinned_at or '(time not recorded)'}"
            )
            return self.fetch_record(
                f"{self.repository}@{pin.record_digest}", pin.git_sha, pinned=True
            )
        if release.DIGEST_RE.match(target):
            return self.fetch_record(f"{self.repository}@{target}", "", pin=floor)
        tags = self.tags()
        sha = release.released_sha(target, tags, self.repository)
        # The newest valid publish of the SHA, by its own tag: ``<sha>`` moving does not
        # matter, and a publish that never got signed (cut off, or junk) is passed over.
        newest = self.newest_publish(sha, tags)
        if newest is None:  # a record from before publish numbers: ``<sha>`` names it
            return self.fetch_record(f"{self.repository}:{sha}", sha, tags=tags, pin=floor)
        number, digest, rel = newest
        reference = f"{self.repository}:{release.sequence_tag(sha, number)}"
        release.refuse_superseded(
            self.repository, reference, digest, rel, release.pinned_number(floor, sha)
        )
        return digest, rel

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
        later = self.newest_publish(rel.git_sha, listed, rel.sequence, strict=not pinned)
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
        digest, data = self.checks.signed_document(
            self.repository, reference, release.FILE_NAME, "release record", release.ARTIFACT_TYPE
        )
        try:
            return digest, release.parse(data, reference)
        except ManifestError as err:
            raise VerifyFailed(str(err)) from None

    # -- the pin (see PinStore) ----------------------------------------------------------

    def fetch_pin(self) -> tuple[str, release.Pin]:
        return self.pins.fetch()

    def ordering_pin(self) -> release.Pin | None:
        return self.pins.for_ordering()

    def set_pin(self, rel: release.Release, record_digest: str) -> bool:
        return self.pins.point_at(rel, record_digest)

    # -- checking (see ReleaseChecks) ----------------------------------------------------

    def verify_release(self, rel: release.Release, check_tags: bool) -> list[str]:
        return self.checks.verify_release(rel, check_tags)

    def check_images(self, rel: release.Release) -> None:
        self.checks.check_images(rel)

    def attested(self, ref_at_digest: str, ptypes: list[str], vex: str = "") -> set[str]:
        return self.checks.attested(ref_at_digest, ptypes, vex)

    def verified_bindings(
        self, manifest: mf.Manifest, gate_doc: dict[str, Any]
    ) -> release.Bindings:
        return self.checks.verified_bindings(manifest, gate_doc)

    # -- floating tags (see FloatingTags) ------------------------------------------------

    def floating(self, rel: release.Release) -> list[tuple[str, str | None, str]]:
        """(tag, digest it serves now, digest the release names) for every floating tag."""
        return self.floating_tags.served(rel.images)

    def move_tags(
        self,
        images: Sequence[release.Image],
        current: Mapping[str, str | None] | None = None,
    ) -> dict[str, str]:
        return self.floating_tags.move(images, current)

    def restore(self, moved: Mapping[str, str]) -> str:
        return self.floating_tags.restore(moved)

    # -- writing -------------------------------------------------------------------------

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
        record = partial(
            release.build, manifest, gate_doc, bindings, bindings_policy=self.checks.policy()
        )
        tags = self.tags()
        newest, existing, previous = self._latest(sha, tags)
        # A publish above the newest valid one (cut off before signing, or junk) makes
        # readers refuse the release: this publish goes above it, never reuses below it.
        highest = max(release.sequences(tags, sha), default=0)
        if existing and previous and highest <= newest:
            body = release.encode(record(sequence=previous[0], supersedes=previous[1]))
            at = f"{self.repository}@{existing}"
            if self.checks.is_artifact(at, release.ARTIFACT_TYPE, release.FILE_NAME, body):
                # The newest valid publish was verified finding it; another may need signing.
                verified = newest > 0
                return self._signed_record(manifest, existing, previous[0], "already", verified)
        sequence = max(release.next_sequence(newest, existing, previous), highest + 1)
        body = release.encode(record(sequence=sequence, supersedes=existing or ""))
        (work / release.FILE_NAME).write_bytes(body)
        digest = self.registry.push_artifact(
            f"{self.repository}:{release.sequence_tag(sha, sequence)}",
            work,
            release.FILE_NAME,
            artifact_type=release.ARTIFACT_TYPE,
            annotations=release.record_annotations(manifest, sequence),
        )
        return self._signed_record(manifest, digest, sequence, "done", verified=False)

    def _latest(
        self, sha: str, tags: Sequence[str]
    ) -> tuple[int, str | None, tuple[int, str] | None]:
        """(newest valid publish number or 0, the record a new publish supersedes, its
        (number, supersedes)): the newest valid publish, or (none yet) whatever ``<sha>``
        holds — a record from before publish numbers, or one never signed (cut off)."""
        valid = self.newest_publish(sha, tags, strict=False)
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

    def _pinned_newest(self, sha: str) -> tuple[str, release.Release] | None:
        """(record digest, release) of the newest publish of ``sha`` when the pin names
        exactly that record; None otherwise (or when there is none)."""
        if sha not in self.tags():
            return None
        pin = self.pins.fetch_or_none()
        if pin is None or pin.git_sha != sha:
            return None
        try:
            digest, rel = self.fetch(sha)
        except DcforgeError:
            return None
        return (digest, rel) if digest == pin.record_digest else None

    def settled(
        self, manifest: mf.Manifest, gate_doc: dict[str, Any]
    ) -> tuple[str, str, release.Release] | None:
        """Why this publish has nothing to push, sign or move, with the pinned newest record
        of its SHA (its digest and release), read once; None: there is work to do.

        - ``"published"``: the record is what this manifest and verdict would write, and
          the release verifies as users pull it (tags, and the signature and attestation
          manifests its record binds, read by digest) — this very publish is done.
        - ``"reproduced"``: another build (every image rebuilt, clean tree) made exactly
          its images under the same verdict, and the release verifies as pulled.

        Anything else (no release yet, a pin elsewhere, other or reused images, another
        verdict, a release that no longer verifies) takes the full path, which completes
        or supersedes it."""
        found = self._pinned_newest(manifest.git_sha)
        if found is None:
            return None
        digest, rel = found
        if release.is_record_of(rel, manifest, gate_doc, self.checks.policy()):
            kind = "published"
        elif (
            rel.manifest.to_json() != manifest.to_json()
            and release.same_images(rel, manifest)
            and release.same_verdict(rel, manifest, gate_doc)
        ):
            kind = "reproduced"
        else:
            return None
        return None if self.verify_release(rel, check_tags=True) else (kind, digest, rel)

    def note_reproduced(
        self, rel: release.Release, record_digest: str, manifest_sha256: str, builder: str
    ) -> str:
        """Store and sign the statement that ``rel`` was reproduced; its reference."""
        now = dt.datetime.now(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
        run = self.env.get("GITHUB_RUN_ID", "")
        tag, doc = release.reproduced_statement(
            rel, record_digest, manifest_sha256, builder, now, run
        )
        with tempfile.TemporaryDirectory(prefix="dcforge-reproduced-") as tmp:
            (Path(tmp) / release.REPRODUCED_FILE_NAME).write_text(json.dumps(doc, indent=2))
            digest = self.registry.push_artifact(
                f"{self.repository}:{tag}",
                Path(tmp),
                release.REPRODUCED_FILE_NAME,
                artifact_type=release.REPRODUCED_ARTIFACT_TYPE,
                annotations={
                    "org.opencontainers.image.created": now,
                    "dev.dcforge.reproduced.git-sha": rel.git_sha,
                },
            )
        at = f"{self.repository}@{digest}"
        problem = self.cosign.sign_checked(at)
        if problem:
            raise PublishRefused(f"the reproduction statement {at} was signed but {problem}")
        return f"{self.repository}:{tag}"

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
            pinned = self.pins.fetch()[1].record_digest
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
