"""``last-known-good``: the pin, a signed statement of its own (git SHA, publish number and
record digest; :func:`dcforge.core.release.pin_statement`), not a tag on a record.

Verify, rollback and ``build --since`` read it (a statement that does not verify is no pin);
its publish number is the floor of its release (an earlier publish of the pinned SHA is
refused even when a later one's tags are hidden). Publish orders by it: it moves the pin
only forward, and a statement that no longer verifies (a rotated key) still says which
commit is live. Writing it is all or nothing: a statement whose signing fails is taken off
the tag, and it and a replaced statement are deleted so neither can be tagged again (best
effort: some registries, GHCR among them, refuse manifest deletes; retention removes them).
"""

from __future__ import annotations

import datetime as dt
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

from dcforge.core import release
from dcforge.core.errors import DcforgeError, ManifestError, VerifyFailed
from dcforge.infra import log
from dcforge.infra.release_checks import ReleaseChecks
from dcforge.infra.tools.cosign import Cosign
from dcforge.infra.tools.registry import Registry


@dataclass(frozen=True)
class PinStore:
    registry: Registry
    cosign: Cosign
    checks: ReleaseChecks
    repository: str  # the release repository

    def fetch(self) -> tuple[str, release.Pin]:
        """(digest, pin) of the signed statement; VerifyFailed when there is none, or it is
        not one signed by the configured key/identity."""
        reference = f"{self.repository}:{release.LAST_KNOWN_GOOD}"
        digest, data = self.checks.signed_document(
            self.repository,
            reference,
            release.PIN_FILE_NAME,
            "pin statement",
            release.PIN_ARTIFACT_TYPE,
        )
        try:
            return digest, release.parse_pin(data, reference)
        except ManifestError as err:
            raise VerifyFailed(f"{err} — re-pin a release: invoke pin --sha X") from None

    def fetch_or_none(self) -> release.Pin | None:
        """The signed pin, or None when there is none (or it does not verify)."""
        if self.registry.digest_or_none(f"{self.repository}:{release.LAST_KNOWN_GOOD}") is None:
            return None
        try:
            return self.fetch()[1]
        except VerifyFailed:
            return None

    def stated_if_unverified(self) -> release.Pin | None:
        """What ``last-known-good`` states when it is there but does not verify (None when
        it is absent or says nothing readable), with a warning. Its publish number still
        counts as a floor: an unverified statement can only make a reader refuse more, and
        breaking the pin must not reopen an earlier publish of the pinned release."""
        if self.registry.digest_or_none(f"{self.repository}:{release.LAST_KNOWN_GOOD}") is None:
            return None
        stated = self._as_stated()
        log.warn(
            f"{self.repository}:{release.LAST_KNOWN_GOOD} does not verify: "
            + (
                f"it states publish {stated.sequence} of {stated.git_sha[:12]}, kept as a floor"
                if stated is not None
                else "it states nothing readable"
            )
            + " — re-pin a release: invoke pin --sha X"
        )
        return stated

    def _as_stated(self) -> release.Pin | None:
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

    def for_ordering(self) -> release.Pin | None:
        """The pin publish must not go back from: the signed statement, or — when it does
        not verify (a rotated key, say) — what it states, which still says which commit is
        live. None when nothing is published yet or no statement is readable. (The order is
        a guard against runs finishing out of order, not against registry writers.)"""
        if self.registry.digest_or_none(f"{self.repository}:{release.LAST_KNOWN_GOOD}") is None:
            return None  # nothing published yet
        try:
            return self.fetch()[1]
        except VerifyFailed as err:
            stated = self._as_stated()
            if stated is None:
                log.warn(f"{release.LAST_KNOWN_GOOD} is not a readable pin statement ({err})")
                return None
            log.warn(
                f"{release.LAST_KNOWN_GOOD} does not verify ({err}); its commit is still "
                "the one publish must not go back from"
            )
            return stated

    def point_at(self, rel: release.Release, record_digest: str) -> bool:
        """Point ``last-known-good`` at a signed statement naming this release; False when
        it already did. The statement it replaces is deleted, so it cannot be re-tagged."""
        reference = f"{self.repository}:{release.LAST_KNOWN_GOOD}"
        previous = self.registry.digest_or_none(reference)
        if previous is not None:
            try:
                _, pin = self.fetch()
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

    def _is_pin(self, digest: str) -> bool:
        at = f"{self.repository}@{digest}"
        return self.checks.is_artifact(at, release.PIN_ARTIFACT_TYPE, release.PIN_FILE_NAME)
