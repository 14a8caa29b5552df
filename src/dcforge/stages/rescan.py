"""Rescan stage: CVE drift of what is live.

Every image users pull now — each platform's image of the last-known-good release, and
whatever a floating tag of it serves instead — is scanned by digest with today's DB under
the gate's policy and waivers. Writes ``dist/rescan/`` (``rescan.json``, SARIF, summary);
blocks when a live image now has a finding the policy blocks that a rebuild could fix, and
names those permutations (``affected``) for ``build --refresh``.
"""

from __future__ import annotations

import datetime as dt
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from dcforge.core import policy, release, reports
from dcforge.core.errors import (
    ConfigError,
    DcforgeError,
    GateBlocked,
    RollbackRefused,
    VerifyFailed,
)
from dcforge.core.files import append_line, atomic_write_bytes, atomic_write_json
from dcforge.core.settings import Settings
from dcforge.infra import log, toolchain
from dcforge.infra.context import Context
from dcforge.infra.release_store import Releases
from dcforge.infra.scan_setup import GateContext, check_scanner_env, check_tools, gate_context
from dcforge.infra.tools import github, trivy
from dcforge.infra.tools.registry import Registry

GITHUB_API = "https://api.github.com"


@dataclass(frozen=True)
class LiveImage:
    """An image users pull now: one platform's image of a live release, or of a tag."""

    name: str  # permutation (and platform) as reports name it
    permutation: str
    repository: str
    digest: str
    why: str  # "last-known-good <sha>" or "floating tag <ref>"
    os_mode: str = "required"

    @property
    def stem(self) -> str:
        """Its reports' file name: a floating tag's image is named as the pinned image it
        stands in for, so its digest tells them apart (two scans never share a file)."""
        stem = self.name.replace(" (", "@").replace("/", "-").rstrip(")")
        pinned = self.why.startswith("last-known-good")
        return stem if pinned else f"{stem}+{self.digest.removeprefix('sha256:')[:12]}"


@dataclass(frozen=True)
class RescanOptions:
    now: dt.datetime | None = None
    github_output: bool = False
    dispatch_refresh: str = ""  # a workflow to start with refresh=<affected> (default branch)
    scan_cache: bool = True  # reuse Trivy reports by image digest + DB + policy + Trivy


def live_images(rels: Releases, pinned: release.Release) -> list[LiveImage]:
    """Every image of the pinned release, per platform, and whatever a floating tag of it
    serves instead (a tag moved by hand, or a rollback elsewhere)."""
    out: list[LiveImage] = []
    seen: set[tuple[str, str]] = set()

    modes = {e.name: e.os for e in pinned.manifest.permutations}

    def add(name: str, repository: str, images: Mapping[str, str], why: str) -> None:
        for platform, digest in images.items():
            if (repository, digest) not in seen:
                seen.add((repository, digest))
                label = f"{name} ({platform})" if len(images) > 1 else name
                mode = modes.get(name, "required")
                out.append(LiveImage(label, name, repository, digest, why, mode))

    sha = pinned.git_sha[:12]
    for image in pinned.images:
        add(image.name, image.repository, dict(image.attested()), f"last-known-good {sha}")
    by_ref = {f"{i.repository}:{t}": i for i in pinned.images for t in i.floating_tags}
    for ref, current, target in rels.floating(pinned):
        if current and current != target:
            image = by_ref[ref]
            served = rels.registry.served_platforms(f"{image.repository}@{current}")
            add(image.name, image.repository, served or {"": current}, f"floating tag {ref}")
    return out


def run(ctx: Context, options: RescanOptions) -> dict[str, Any]:
    """Scan every live image by digest with today's DB; GateBlocked when one now has a
    finding the policy blocks that a rebuild could fix (``affected`` names the permutations)."""
    settings, env = ctx.settings, ctx.env
    now = options.now or dt.datetime.now(dt.UTC)
    check_scanner_env(env)
    tools = check_tools(ctx.runner, ("trivy",), settings.state_root / toolchain.SEEN)
    rels = ctx.releases
    try:
        _, pinned = rels.fetch(release.LAST_KNOWN_GOOD)
    except (VerifyFailed, RollbackRefused) as err:
        raise GateBlocked(
            f"rescan: no verified {release.LAST_KNOWN_GOOD} to rescan ({err})"
        ) from None
    live = live_images(rels, pinned)
    out_dir = settings.dist_dir / "rescan"
    shutil.rmtree(out_dir, ignore_errors=True)
    cached = tools if options.scan_cache else None
    with tempfile.TemporaryDirectory(prefix="dcforge-db-") as tmp:
        gctx = gate_context(settings, ctx.registry, Path(tmp), now, cached)
    gctx = replace(gctx, reports_dir=out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if gctx.db.problem:
        raise GateBlocked(f"rescan: {gctx.db.problem}")
    with log.group(f"rescan {len(live)} live image(s)"), ThreadPoolExecutor(4) as pool:
        verdicts = list(pool.map(lambda i: _rescan_one(ctx.registry, i, gctx), live))
    doc = _rescan_doc(settings, pinned, live, verdicts, gctx, tools, now)
    _write_rescan(pinned, verdicts, doc, gctx, env, options)
    if doc["affected"] and options.dispatch_refresh:
        _dispatch_refresh(settings, env, options.dispatch_refresh, doc["affected"])
    if doc["failed"]:
        raise GateBlocked(
            f"rescan: {', '.join(doc['failed'])} could not be rescanned, or the scan no longer "
            f"sees the image (see {out_dir / 'summary.md'}) — nothing is known about them"
        )
    if doc["affected"]:
        raise GateBlocked(
            f"{len(doc['affected'])} live permutation(s) have blocking findings a rebuild can "
            f"fix: {', '.join(doc['affected'])} — rebuild them with "
            f"'build --refresh {','.join(doc['affected'])}' (the fix is in the package mirror)"
        )
    unfixed = sum(len(v.unfixed) for v in verdicts)
    log.info(
        f"rescan: {len(live)} live image(s), nothing a rebuild can fix blocks"
        + (f"; {unfixed} blocking-severity finding(s) have no fix yet" if unfixed else "")
    )
    return doc


def _dispatch_refresh(
    settings: Settings, env: Mapping[str, str], workflow: str, affected: Sequence[str]
) -> None:
    """On the default branch only: start ``workflow`` with refresh=<affected>, which
    rebuilds just those permutations from scratch (a PR or a branch never publishes)."""
    ref = env.get("GITHUB_REF", "")
    if ref != f"refs/heads/{settings.default_branch}":
        log.info(f"not on {settings.default_branch} ({ref or 'no GITHUB_REF'}): no refresh build")
        return
    if not env.get("GITHUB_REPOSITORY"):
        raise ConfigError("--dispatch-refresh: GITHUB_REPOSITORY is not set (owner/repo)")
    client = github.GitHub(env.get("GITHUB_TOKEN", ""), env.get("GITHUB_API_URL", GITHUB_API))
    client.dispatch_workflow(
        env.get("GITHUB_REPOSITORY", ""),
        workflow,
        settings.default_branch,
        {"refresh": ",".join(affected)},
    )
    log.info(f"started {workflow} on {settings.default_branch} with refresh={','.join(affected)}")


def _rescan_one(reg: Registry, image: LiveImage, gctx: GateContext) -> policy.Verdict:
    stem, ref = image.stem, f"{image.repository}@{image.digest}"
    hit = gctx.cache.report(image.digest, stem, gctx.reports_dir) if gctx.cache else None
    if hit is not None:  # this image, this DB, policy, config and Trivy: by a gate or a rescan
        report: Any = hit.report
        log.step(image.name, f"scan reused ({image.digest[:19]}: same image, DB, policy, Trivy)")
    else:
        try:
            report = trivy.scan_remote(
                reg, ref, gctx.reports_dir / f"{stem}.trivy.json", gctx.db.options
            )
        except DcforgeError as err:
            failed = policy.Verdict(image.name, reasons=[f"the vulnerability scan failed: {err}"])
            log.step(image.name, f"BLOCKED: {failed.reasons[0]}")
            return failed
        if gctx.cache is not None:
            gctx.cache.put(image.digest, stem, gctx.reports_dir, "")  # read from the registry
    verdict = policy.drift(
        image.name,
        report,
        policy=gctx.rules,
        waivers=gctx.waivers,
        today=gctx.today,
        scope=image.permutation,
        os_mode=image.os_mode,
        db_platforms=gctx.db.platforms,
    )
    log.step(image.name, "ok" if verdict.passed else f"NEW: {'; '.join(verdict.reasons)}")
    return verdict


def _rescan_doc(
    settings: Settings,
    pinned: release.Release,
    live: Sequence[LiveImage],
    verdicts: Sequence[policy.Verdict],
    gctx: GateContext,
    tools: Mapping[str, toolchain.Tool],
    now: dt.datetime,
) -> dict[str, Any]:
    pairs = list(zip(live, verdicts, strict=True))
    affected = sorted({i.permutation for i, v in pairs if v.blocking})
    failed = sorted({i.permutation for i, v in pairs if not v.passed and not v.blocking})
    return {
        "created_at": now.isoformat(timespec="seconds").replace("+00:00", "Z"),
        "registry": settings.registry,
        "git_sha": pinned.git_sha,
        "release_gate_db_updated_at": pinned.gate.get("db_updated_at"),
        "db_repository": gctx.db.repository,
        "db_digest": gctx.db.digest,
        "db_updated_at": gctx.db.updated_at,
        "sample_db": gctx.db.sample,
        "tools": {name: tool.to_json() for name, tool in tools.items()},
        "blocking_severities": list(gctx.rules.blocking),
        "affected": affected,  # new blocking findings with a fix: rebuild these
        "failed": failed,  # could not be rescanned: nothing is known about them
        "images": [
            {**v.to_json(), "permutation": i.permutation, "digest": i.digest, "live_as": i.why}
            for i, v in zip(live, verdicts, strict=True)
        ],
    }


def _write_rescan(
    pinned: release.Release,
    verdicts: Sequence[policy.Verdict],
    doc: Mapping[str, Any],
    gctx: GateContext,
    env: Mapping[str, str],
    options: RescanOptions,
) -> None:
    summary = reports.markdown(verdicts, doc, gctx.waivers, gctx.today).replace(
        "# dcforge gate", "# dcforge rescan of what is live", 1
    )
    atomic_write_bytes(gctx.reports_dir / "summary.md", summary.encode())
    families = {e.name: f"permutations/{e.family}.yaml" for e in pinned.manifest.permutations}
    sources = {v.name: families.get(v.name.split(" (")[0], "permutations") for v in verdicts}
    atomic_write_json(gctx.reports_dir / "rescan.sarif", reports.sarif(verdicts, sources, doc))
    atomic_write_json(gctx.reports_dir / "rescan.json", dict(doc))
    if env.get("GITHUB_STEP_SUMMARY"):
        append_line(env["GITHUB_STEP_SUMMARY"], summary, "GITHUB_STEP_SUMMARY")
    if options.github_output:
        if not env.get("GITHUB_OUTPUT"):
            raise ConfigError("--github-output: GITHUB_OUTPUT is not set")
        append_line(
            env["GITHUB_OUTPUT"], f"affected={','.join(doc['affected'])}\n", "GITHUB_OUTPUT"
        )
