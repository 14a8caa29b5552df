"""A release's floating tags in the registry: read what they serve, move them all or
nothing, put them back.

A move writes each image's tags side by side, then reads every tag back; if a write fails,
a tag reads back wrong, or the run is interrupted, every planned tag is put back to where
it was, so the registry shows the old release or the new one, never a mix. What to move
and the report of a put-back are :mod:`dcforge.core.tag_moves`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from dcforge.core import release
from dcforge.core import tag_moves as tm
from dcforge.core.errors import DcforgeError
from dcforge.infra.tools.registry import Registry


@dataclass(frozen=True)
class FloatingTags:
    registry: Registry

    def served(self, images: Sequence[release.Image]) -> list[tuple[str, str | None, str]]:
        """(tag, digest it serves now, digest the release names) for every floating tag."""
        wanted = [(f"{i.repository}:{t}", i.digest) for i in images for t in i.floating_tags]
        with ThreadPoolExecutor(max_workers=8) as pool:
            found = list(pool.map(self.registry.digest_or_none, [ref for ref, _ in wanted]))
        return [(ref, cur, target) for (ref, target), cur in zip(wanted, found, strict=True)]

    def move(
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
            current = {ref: cur for ref, cur, _ in self.served(images)}
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

    def restore(self, moved: Mapping[str, str]) -> str:
        """Put tags moved by :meth:`move` back where they were."""
        return self._put_back(tm.undo_plan(moved), dict(moved))

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
