"""Rollback, pin and the release list: move tags back to a verified release, no rebuild.

Only tags move. The target release's record must verify and be the release asked for, and
every image it names must still exist and verify, before any tag is touched. Every rollback
leaves an audit record next to the release records. Fetching, checking and moving releases
is :mod:`dcforge.infra.release_store`.
"""

from __future__ import annotations

from typing import Any

from rich.table import Table

from dcforge.core import release
from dcforge.core.errors import RollbackRefused, VerifyFailed
from dcforge.core.tag_moves import Move
from dcforge.infra import locks, log
from dcforge.infra.context import Context
from dcforge.infra.release_store import Releases

__all__ = ["RollbackRefused", "pin", "releases", "rollback", "show_releases"]


def _checked(rel: Releases, target: str) -> tuple[str, release.Release]:
    try:
        digest, found = rel.fetch(target)
    except VerifyFailed as err:
        raise RollbackRefused(str(err)) from None
    rel.check_images(found)
    return digest, found


def _show(moves: list[Move]) -> None:
    table = Table(title="rollback plan")
    for col in ("floating tag", "current", "target", ""):
        table.add_column(col)
    for m in moves:
        cur = (m.current or "(none)")[:19]
        table.add_row(m.tag, cur, m.target[:19], "unchanged" if m.current == m.target else "move")
    log.table(table)


def rollback(ctx: Context, target: str) -> list[Move]:
    """Move every floating tag back to the release ``target`` names."""
    settings, runner = ctx.settings, ctx.runner
    rel = ctx.releases
    with log.group(f"check {target}"):
        record_digest, found = _checked(rel, target)
        log.info(
            f"release {found.git_sha[:12]} verified: record + {len(found.images)} image "
            "signature(s)"
        )
    moves = [Move(*m) for m in rel.floating(found)]
    _show(moves)
    changing = [m for m in moves if m.current != m.target]
    if not changing:
        log.info(f"nothing to do: the floating tags already point at release {found.git_sha[:12]}")
        return []
    if runner.dry_run:
        log.info(f"dry run: {len(changing)} tag(s) would move; nothing changed")
        return changing
    with locks.registry_lock(settings.registry):
        # Re-read under the lock: what moves is what the tags show now.
        moves = [Move(*m) for m in rel.floating(found)]
        changing = [m for m in moves if m.current != m.target]
        rel.move_tags(list(found.images), {m.tag: m.current for m in moves})
    audit = rel.audit(found, record_digest, moves)
    log.info(f"rolled back {len(changing)} tag(s) to {found.git_sha[:12]}; audit record {audit}")
    return changing


def pin(ctx: Context, target: str) -> str:
    """Point ``last-known-good`` at a verified release (a signed pin statement)."""
    settings, runner = ctx.settings, ctx.runner
    rel = ctx.releases
    record_digest, found = _checked(rel, target)
    if runner.dry_run:
        log.info(f"dry run: would pin {release.LAST_KNOWN_GOOD} → {found.git_sha[:12]}")
        return found.git_sha
    with locks.registry_lock(settings.registry):
        moved = rel.set_pin(found, record_digest)
    log.info(
        f"{release.LAST_KNOWN_GOOD} → {found.git_sha[:12]} ({'pinned' if moved else 'already'})"
    )
    return found.git_sha


def releases(ctx: Context) -> list[dict[str, Any]]:
    """Every release, newest first, with whether it is pinned and current."""
    return ctx.releases.listing()


def show_releases(rows: list[dict[str, Any]]) -> None:
    table = Table(title="releases (newest first)")
    for col in ("git sha", "created", "permutations", "pinned", "current"):
        table.add_column(col)
    for r in rows:
        table.add_row(
            r["git_sha"][:12],
            r["created"],
            r["permutations"],
            "pinned" if r["pinned"] else "",
            "current" if r["current"] else "",
        )
    log.table(table)
