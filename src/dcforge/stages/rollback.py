"""Rollback, pin and the release list: move tags back to a verified release, no rebuild.

Only tags move. The target release's record must verify, and every image it names must
still exist and verify, before any tag is touched. Every rollback leaves an audit record
next to the release records.
"""

from __future__ import annotations

import datetime as dt
import getpass
import json
import re
import tempfile
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.table import Table

from dcforge import locks, log, release, signing
from dcforge.errors import DcforgeError, RegistryError, ToolError
from dcforge.runner import Runner
from dcforge.settings import Settings
from dcforge.stages import publish, verify
from dcforge.tools import cosign, registry

AUDIT_ARTIFACT_TYPE = "application/vnd.dcforge.rollback.v1+json"
SHA_TAG = re.compile(r"^[0-9a-f]{40}$")
DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")


class RollbackRefused(DcforgeError):
    exit_code = 10
    kind = "rollback refused"


def _repo(settings: Settings) -> tuple[str, bool]:
    repo = release.repository(settings.registry)
    return repo, settings.is_plain_http(repo)


def release_tags(settings: Settings, runner: Runner) -> list[str]:
    repo, plain = _repo(settings)
    try:
        return [t for t in registry.tags(runner, repo, plain_http=plain) if SHA_TAG.match(t)]
    except ToolError as err:
        if "not found" in str(err).lower() or "name unknown" in str(err).lower():
            return []
        raise RegistryError(f"cannot list releases in {repo}: {err}") from None


def resolve_target(settings: Settings, runner: Runner, target: str) -> str:
    """``target`` (full/short git SHA, record digest, or a pointer tag) → a reference."""
    repo, _ = _repo(settings)
    if DIGEST.match(target):
        return f"{repo}@{target}"
    if target == release.LAST_KNOWN_GOOD:
        return f"{repo}:{target}"
    if not re.fullmatch(r"[0-9a-f]{4,40}", target):
        raise RollbackRefused(
            f"'{target}' is neither a git SHA (4 to 40 hex digits) nor a sha256: record digest"
        )
    matches = [t for t in release_tags(settings, runner) if t.startswith(target)]
    if not matches:
        raise RollbackRefused(f"no published release for git SHA {target} in {repo}")
    if len(matches) > 1:
        shown = ", ".join(m[:12] for m in sorted(matches))
        raise RollbackRefused(f"git SHA {target} is ambiguous: {shown} — give more digits")
    return f"{repo}:{matches[0]}"


def check_release(
    settings: Settings, runner: Runner, env: Mapping[str, str], reference: str
) -> tuple[str, release.Release]:
    """The record verifies; every image still exists and its signature verifies."""
    signer = signing.signer(settings, env)
    try:
        digest, rel = verify.fetch_release(settings, runner, signer, reference)
    except verify.VerifyFailed as err:
        raise RollbackRefused(str(err)) from None

    def check(image: release.Image) -> None:
        plain = settings.is_plain_http(image.repository)
        if registry.digest_or_none(runner, image.ref(), plain_http=plain) is None:
            raise RollbackRefused(
                f"release {rel.git_sha[:12]}: image {image.name} ({image.digest[:19]}) no longer "
                "exists in the registry — pick another release"
            )
        try:
            cosign.verify(runner, signer, image.ref(), plain_http=plain)
        except ToolError as err:
            raise RollbackRefused(
                f"release {rel.git_sha[:12]}: image {image.name} signature does not verify ({err})"
            ) from None

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(check, rel.images))
    return digest, rel


@dataclass(frozen=True)
class Move:
    tag: str
    current: str | None
    target: str


def plan(settings: Settings, runner: Runner, rel: release.Release) -> list[Move]:
    wanted = [(f"{i.repository}:{t}", i.digest) for i in rel.images for t in i.floating_tags]

    def current(ref: str) -> str | None:
        return registry.digest_or_none(runner, ref, plain_http=settings.is_plain_http(ref))

    with ThreadPoolExecutor(max_workers=8) as pool:
        found = list(pool.map(current, [ref for ref, _ in wanted]))
    return [Move(ref, cur, target) for (ref, target), cur in zip(wanted, found, strict=True)]


def _show(moves: list[Move]) -> None:
    table = Table(title="rollback plan")
    for col in ("floating tag", "current", "target", ""):
        table.add_column(col)
    for m in moves:
        cur = (m.current or "(none)")[:19]
        table.add_row(m.tag, cur, m.target[:19], "unchanged" if m.current == m.target else "move")
    log.table(table)


def _audit(
    settings: Settings,
    runner: Runner,
    env: Mapping[str, str],
    rel: release.Release,
    record_digest: str,
    moves: list[Move],
) -> str:
    repo, plain = _repo(settings)
    now = dt.datetime.now(dt.UTC)
    who = env.get("GITHUB_ACTOR") or env.get("USER") or getpass.getuser()
    doc: dict[str, Any] = {
        "kind": "dcforge-rollback",
        "schema_version": 1,
        "who": who,
        "when": now.isoformat(timespec="seconds").replace("+00:00", "Z"),
        "to": {"git_sha": rel.git_sha, "record_digest": record_digest},
        "moves": [{"tag": m.tag, "from": m.current, "to": m.target} for m in moves],
        "run": env.get("GITHUB_RUN_ID", ""),
    }
    tag = f"rollback-{now:%Y%m%dT%H%M%S}-{rel.git_sha[:12]}"
    with tempfile.TemporaryDirectory(prefix="dcforge-audit-") as tmp:
        (Path(tmp) / "rollback.json").write_text(json.dumps(doc, indent=2))
        registry.push_artifact(
            runner,
            f"{repo}:{tag}",
            Path(tmp),
            "rollback.json",
            artifact_type=AUDIT_ARTIFACT_TYPE,
            annotations={
                "org.opencontainers.image.created": doc["when"],
                "dev.dcforge.rollback.to": rel.git_sha,
                "dev.dcforge.rollback.who": who,
            },
            plain_http=plain,
        )
    return f"{repo}:{tag}"


def rollback(settings: Settings, runner: Runner, env: Mapping[str, str], target: str) -> list[Move]:
    """Move every floating tag back to the release ``target`` names."""
    publish.login_if_configured(settings, runner, env)
    reference = resolve_target(settings, runner, target)
    with log.group(f"check {reference}"):
        record_digest, rel = check_release(settings, runner, env, reference)
        log.info(
            f"release {rel.git_sha[:12]} verified: record + {len(rel.images)} image signature(s)"
        )
    moves = plan(settings, runner, rel)
    _show(moves)
    changing = [m for m in moves if m.current != m.target]
    if not changing:
        log.info(f"nothing to do: the floating tags already point at release {rel.git_sha[:12]}")
        return []
    if runner.dry_run:
        log.info(f"dry run: {len(changing)} tag(s) would move; nothing changed")
        return changing
    with locks.registry_lock(settings.registry):
        publish.move_tags(settings, runner, list(rel.images))
    audit = _audit(settings, runner, env, rel, record_digest, moves)
    log.info(f"rolled back {len(changing)} tag(s) to {rel.git_sha[:12]}; audit record {audit}")
    return changing


def pin(settings: Settings, runner: Runner, env: Mapping[str, str], target: str) -> str:
    """Point ``last-known-good`` at a verified release."""
    publish.login_if_configured(settings, runner, env)
    reference = resolve_target(settings, runner, target)
    record_digest, rel = check_release(settings, runner, env, reference)
    if runner.dry_run:
        log.info(f"dry run: would pin {release.LAST_KNOWN_GOOD} → {rel.git_sha[:12]}")
        return rel.git_sha
    moved = publish.set_pointer(settings, runner, record_digest, release.LAST_KNOWN_GOOD)
    log.info(f"{release.LAST_KNOWN_GOOD} → {rel.git_sha[:12]} ({'pinned' if moved else 'already'})")
    return rel.git_sha


def releases(settings: Settings, runner: Runner) -> list[dict[str, Any]]:
    """Every release, newest first, with whether it is pinned and current."""
    repo, plain = _repo(settings)
    pinned = registry.digest_or_none(runner, f"{repo}:{release.LAST_KNOWN_GOOD}", plain_http=plain)
    rows = []
    tag_digests: dict[str, str | None] = {}
    for sha in release_tags(settings, runner):
        raw = runner.run(
            ["oras", "manifest", "fetch", *(["--plain-http"] if plain else []), f"{repo}:{sha}"],
            timeout=60,
            mutates=False,
        ).stdout
        try:
            annotations = json.loads(raw).get("annotations") or {}
        except ValueError:
            annotations = {}
        digest = registry.resolve(runner, f"{repo}:{sha}", plain_http=plain)
        rows.append(
            {
                "git_sha": sha,
                "digest": digest,
                "created": annotations.get("org.opencontainers.image.created", ""),
                "permutations": annotations.get("dev.dcforge.permutations", ""),
                "pinned": digest == pinned,
            }
        )
    rows.sort(key=lambda r: r["created"], reverse=True)
    for row in rows:
        row["current"] = _is_current(settings, runner, f"{repo}:{row['git_sha']}", tag_digests)
    return rows


def _is_current(
    settings: Settings, runner: Runner, reference: str, cache: dict[str, str | None]
) -> bool:
    with tempfile.TemporaryDirectory(prefix="dcforge-rel-") as tmp:
        plain = settings.is_plain_http(reference)
        files = registry.fetch_artifact(runner, reference, Path(tmp), plain_http=plain)
        try:
            rel = release.parse(json.loads((files / release.FILE_NAME).read_text()), reference)
        except (OSError, ValueError, DcforgeError):
            return False
    for image in rel.images:
        for tag in image.floating_tags:
            ref = f"{image.repository}:{tag}"
            if ref not in cache:
                cache[ref] = registry.digest_or_none(
                    runner, ref, plain_http=settings.is_plain_http(ref)
                )
            if cache[ref] != image.digest:
                return False
    return True


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
