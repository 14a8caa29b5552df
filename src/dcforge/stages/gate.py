"""Gate stage: verify, scan (Trivy) and SBOM (syft) every permutation, decide, report.

Writes ``dist/gate.json`` (the verdict bound to each tarball's sha256, the manifest, the
Trivy version, the DB's UpdatedAt and the policy) and ``dist/reports/``. Every failure
path blocks; none reports "no vulnerabilities".
"""

from __future__ import annotations

import contextvars
import datetime as dt
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from importlib import resources
from pathlib import Path
from typing import Any

from dcforge.core import manifest as mf
from dcforge.core import oci_archive, policy, reports, scan_cache, staging
from dcforge.core.errors import DcforgeError, GateBlocked, RegistryError
from dcforge.core.files import append_line, atomic_write_bytes, atomic_write_json
from dcforge.core.hashing import file_sha256
from dcforge.core.settings import Settings
from dcforge.core.verdict import GATE_SCHEMA_VERSION, SCANNED_TOOLS, policy_json
from dcforge.infra import image_vex, log, scan_setup, toolchain
from dcforge.infra.context import Context
from dcforge.infra.runner import Runner
from dcforge.infra.scan_setup import GateContext, check_scanner_env, check_tools, gate_context
from dcforge.infra.tools import buildx, syft, trivy
from dcforge.infra.tools.registry import Registry
from dcforge.infra.vulndb import prepare_db


@dataclass(frozen=True)
class GateOptions:
    self_test: bool = False
    scan_cache: bool = True  # reuse scanner outputs by image digest + DB + policy + tools
    now: dt.datetime | None = None  # injectable clock (DB age, waiver expiry)


def _tarball_problems(tar: Path, entry: mf.Entry) -> list[str]:
    if not tar.is_file():
        return [f"tarball {tar} is missing — rebuild"]
    if (actual := file_sha256(tar)) != entry.tarball_sha256:
        return [
            f"tarball checksum mismatch: {entry.tarball} is {actual[:16]}…, the manifest says "
            f"{entry.tarball_sha256[:16]}… — rebuild; a changed tarball is never scanned"
        ]
    return []


@dataclass(frozen=True)
class Scanned:
    """A permutation's verdict and, for a multi-platform image, each platform's."""

    verdict: policy.Verdict
    platforms: tuple[tuple[str, str, policy.Verdict], ...] = ()  # (platform, digest, verdict)

    def report_verdicts(self) -> list[policy.Verdict]:
        return [v for _, _, v in self.platforms] or [self.verdict]


def _scan_all(ctx: Context, manifest: mf.Manifest, gctx: GateContext) -> list[Scanned]:
    """Every permutation scanned on the pool, with a usable DB."""
    with (
        log.group(f"gate {len(manifest.permutations)} permutation(s)"),
        ThreadPoolExecutor(ctx.settings.effective_jobs) as pool,
    ):
        return list(pool.map(lambda e: _scan_for(ctx, e, gctx), manifest.permutations))


def _blocked_by_the_db(manifest: mf.Manifest, gctx: GateContext) -> list[Scanned]:
    """Every permutation blocked by the DB's problem, none scanned: the verdicts record
    it, the error says it once (not once per permutation)."""
    return [
        Scanned(_verdict(e, "", None, None, [gctx.db.problem], gctx)) for e in manifest.permutations
    ]


def _scan_for(ctx: Context, entry: mf.Entry, gctx: GateContext) -> Scanned:
    """One permutation's scan on a pool thread: its tool output is its own (log groups)."""
    with log.permutation(entry.name):
        if entry.reused:
            return _scan_remote(ctx.registry, entry, gctx, entry.repository)
        if entry.staged:
            return _scan_staged(ctx, entry, gctx)
        return _scan_tarball(ctx.settings, ctx.runner, entry, gctx)


def _scan_staged(ctx: Context, entry: mf.Entry, gctx: GateContext) -> Scanned:
    """A staged image, by digest, from this run's own staging repository only."""
    settings = ctx.settings
    own = settings.staging_registry and staging.repository(settings, ctx.env, entry.repository)
    if entry.staged != own:
        problem = (
            f"staged in {entry.staged}, but this run's staging repository is "
            f"{own or '(none: staging_registry is not set)'} — gate the run that built it"
        )
        return _combine(entry, [_decide(entry, "", None, None, [problem], gctx)])
    return _scan_remote(ctx.registry, entry, gctx, entry.staged)


def _scan_tarball(
    settings: Settings, runner: Runner, entry: mf.Entry, gctx: GateContext
) -> Scanned:
    tar = settings.dist_dir / entry.tarball
    problems = _tarball_problems(tar, entry)
    if problems:
        return _combine(entry, [_decide(entry, "", None, None, problems, gctx)])
    with tempfile.TemporaryDirectory(prefix=f"dcforge-gate-{entry.name}-") as tmp:
        try:
            archived, children = oci_archive.oci_archive(tar)
            if archived != entry.image_digest:
                problems.append(
                    f"the tarball holds {archived}, the manifest says {entry.image_digest}"
                )
            if children != (entry.platform_images() if entry.multi_platform else {}):
                problems.append("the tarball's images per platform are not the manifest's")
            cached = _cached(entry, problems, gctx)
            if cached is not None:
                return _combine(entry, cached)
            layout = trivy.unpack_oci_archive(tar, Path(tmp) / "layout")
        except DcforgeError as err:
            failed = [f"the vulnerability scan failed: {err}", f"SBOM generation failed: {err}"]
            return _combine(entry, [_decide(entry, "", None, None, [*problems, *failed], gctx)])
        return _combine(
            entry,
            [
                _scan_platform(runner, entry, platform, digest, layout, list(problems), gctx)
                for platform, digest in entry.platform_images().items()
            ],
        )


def _scan_platform(
    runner: Runner,
    entry: mf.Entry,
    platform: str,
    digest: str,
    layout: Path,
    problems: list[str],
    gctx: GateContext,
) -> policy.Verdict:
    """Trivy and syft on one platform's image (its own layout over the shared blobs)."""
    report = None
    stem = entry.report_stem(platform)
    try:
        image = trivy.platform_layout(layout, digest) if entry.multi_platform else layout
        found = trivy.image_platform(layout, digest)
    except DcforgeError as err:
        return _decide(entry, platform, None, None, [*problems, str(err)], gctx)
    if not oci_archive.same_platform(found, platform):
        problems.append(f"the {platform} image {digest[:19]} is a {found} image")
    rescan = partial(trivy.scan, runner, image, gctx.reports_dir / f"{stem}.trivy.json")
    make = partial(syft.sbom_layout, runner, image)
    said: list[str] = []  # syft's problems, after Trivy's (as when they ran in turn)
    with ThreadPoolExecutor(1) as side:  # syft beside Trivy: both only read the layout
        sbom = side.submit(
            contextvars.copy_context().run, scan_setup.sbom, stem, said, make, gctx, digest, found
        )
        try:
            report = rescan(gctx.db.options)
            log.step(entry.name, "scanned" + f" {platform}" * entry.multi_platform)
        except DcforgeError as err:
            problems.append(f"the vulnerability scan failed: {err}")
        doc = sbom.result()
    problems += said
    if gctx.cache is not None and report is not None and doc is not None and not problems:
        gctx.cache.put(digest, stem, gctx.reports_dir, found)  # without the VEX: its findings
    vexed = image_vex.apply(entry, platform, digest, report, rescan, gctx, problems)
    return _decide(entry, platform, vexed.report, doc, problems, gctx, vexed.document)


def _cached(entry: mf.Entry, problems: list[str], gctx: GateContext) -> list[policy.Verdict] | None:
    """Verdicts from reused scanner outputs when every platform's image was scanned
    before with this DB, policy, Trivy config and scanners (scan_cache), and no waiver
    needs Trivy to hide a finding (that takes the image); else None. The verdict itself is
    decided again (today's waivers and date)."""
    if gctx.cache is None or problems:
        return None
    hits = {}
    for platform, digest in entry.platform_images().items():
        hit = scan_setup.reused(gctx, digest, entry.report_stem(platform))
        if hit is None or not hit.platform:  # a registry scan never read the config
            return None
        if image_vex.hides(hit.report, entry, gctx):
            return None
        hits[platform] = (digest, hit)
    verdicts = []
    for platform, (digest, hit) in hits.items():
        found = []
        if not oci_archive.same_platform(hit.platform, platform):
            found.append(f"the {platform} image {digest[:19]} is a {hit.platform} image")
        verdicts.append(_decide_reused(entry, platform, digest, hit, found, gctx))
    return verdicts


def _decide_reused(
    entry: mf.Entry,
    platform: str,
    digest: str,
    hit: scan_cache.Hit,
    problems: list[str],
    gctx: GateContext,
    rescan: image_vex.Rescan | None = None,
) -> policy.Verdict:
    """The verdict on one platform's image from reused scanner outputs (and, when a waiver
    hides a finding, Trivy's scan with the VEX: ``rescan``)."""
    on = f" {platform}" * entry.multi_platform
    log.step(entry.name, f"scan reused{on} ({digest[:19]}: same image, DB, policy, scanners)")
    vexed = image_vex.apply(entry, platform, digest, hit.report, rescan, gctx, problems)
    return _decide(entry, platform, vexed.report, hit.sbom, problems, gctx, vexed.document)


def _combine(entry: mf.Entry, verdicts: Sequence[policy.Verdict]) -> Scanned:
    """One verdict per permutation: it passes only when every platform passes. (One
    verdict for a multi-platform image: it failed before any platform was scanned.)"""
    images = entry.platform_images()
    if not entry.multi_platform or len(verdicts) != len(images):
        return Scanned(verdicts[0])
    merged = policy.Verdict(
        entry.name,
        passed=all(v.passed for v in verdicts),
        reasons=[r for v in verdicts for r in v.reasons],
        counts=policy.add_counts(v.counts for v in verdicts),
        blocking=[f for v in verdicts for f in v.blocking],
        waived=[fw for v in verdicts for fw in v.waived],
        sbom_packages=sum(v.sbom_packages for v in verdicts),
        unfixed=[f for v in verdicts for f in v.unfixed],
    )
    return Scanned(merged, tuple(zip(images, images.values(), verdicts, strict=True)))


def _decide(
    entry: mf.Entry,
    platform: str,
    report: Any | None,
    sbom: dict[str, Any] | None,
    problems: list[str],
    gctx: GateContext,
    vex: dict[str, str] | None = None,
) -> policy.Verdict:
    """The verdict on one platform's image (or the permutation's), said in its log line."""
    verdict = _verdict(entry, platform, report, sbom, problems, gctx)
    verdict.vex = vex
    log.step(verdict.name, "pass" if verdict.passed else f"BLOCKED: {'; '.join(verdict.reasons)}")
    return verdict


def _verdict(
    entry: mf.Entry,
    platform: str,
    report: Any | None,
    sbom: dict[str, Any] | None,
    problems: list[str],
    gctx: GateContext,
) -> policy.Verdict:
    os_names = None if sbom is None else syft.os_package_names(sbom)
    name = f"{entry.name} ({platform})" if entry.multi_platform and platform else entry.name
    return policy.decide(
        name,
        report=report,
        sbom_packages=None if sbom is None else len(syft.package_names(sbom)),
        sbom_os_packages=None if os_names is None else len(os_names),
        sbom_os_names=os_names or (),
        os_mode=entry.os,
        policy=gctx.rules,
        waivers=gctx.waivers,
        today=gctx.today,
        problems=problems,
        scope=entry.name,
        db_platforms=gctx.db.platforms,
    )


def _scan_remote(reg: Registry, entry: mf.Entry, gctx: GateContext, repository: str) -> Scanned:
    """A reused image (in its release repository) or a staged one (in its staging
    repository) is scanned from the registry by digest with today's DB."""
    ref = f"{repository}@{entry.image_digest}"
    try:
        served = reg.served_platforms(ref)
    except RegistryError as err:
        return _combine(entry, [_decide(entry, "", None, None, [str(err)], gctx)])
    if served != (entry.platform_images() if entry.multi_platform else {}):
        problem = f"the registry serves {ref} with other images than the manifest names"
        return _combine(entry, [_decide(entry, "", None, None, [problem], gctx)])
    verdicts = []
    for platform, digest in entry.platform_images().items():
        ref, stem, problems = f"{repository}@{digest}", entry.report_stem(platform), []
        rescan = partial(trivy.scan_remote, reg, ref, gctx.reports_dir / f"{stem}.trivy.json")
        hit = scan_setup.reused(gctx, digest, stem)
        if hit is not None:
            verdicts.append(_decide_reused(entry, platform, digest, hit, [], gctx, rescan))
            continue
        report: dict[str, Any] | None = None
        try:
            report = rescan(gctx.db.options)
            how = "scanned staged" if entry.staged else "re-scanned"
            on = f" {platform}" * entry.multi_platform
            log.step(entry.name, f"{how}{on} from the registry ({ref[-19:]})")
        except DcforgeError as err:
            problems.append(f"the vulnerability scan failed: {err}")
        make = partial(syft.sbom_remote, reg, ref)
        doc = scan_setup.sbom(stem, problems, make, gctx, digest, "")
        if gctx.cache is not None and report is not None and doc is not None and not problems:
            gctx.cache.put(digest, stem, gctx.reports_dir, "")  # platform not read from its config
        vexed = image_vex.apply(entry, platform, digest, report, rescan, gctx, problems)
        verdicts.append(_decide(entry, platform, vexed.report, doc, problems, gctx, vexed.document))
    return _combine(entry, verdicts)


def run(ctx: Context, options: GateOptions) -> dict[str, Any]:
    """Gate ``dist/manifest.json``; raises GateBlocked unless every permutation passes."""
    settings = ctx.settings
    now = options.now or dt.datetime.now(dt.UTC)
    check_scanner_env(ctx.env)
    if options.self_test:
        return self_test(ctx, now)
    manifest_path = settings.dist_dir / "manifest.json"
    manifest = mf.load(manifest_path)
    manifest.check_complete(str(manifest_path))
    (settings.dist_dir / "gate.json").unlink(missing_ok=True)  # no old verdict behind a failure
    tools = check_tools(ctx.runner, SCANNED_TOOLS, ctx.settings.state_root / toolchain.SEEN)
    # Logged in (when credentials are set) before the DB download and any re-scan of a
    # reused image: either may live on the authenticated registry.
    ctx.releases  # noqa: B018 — logs in
    with tempfile.TemporaryDirectory(prefix="dcforge-db-") as tmp:
        cached = tools if options.scan_cache else None
        gctx = gate_context(settings, ctx.registry, Path(tmp), now, cached)
    return _judge(ctx, manifest, manifest_path, gctx, tools, now)


def _judge(
    ctx: Context,
    manifest: mf.Manifest,
    manifest_path: Path,
    gctx: GateContext,
    tools: Mapping[str, toolchain.Tool],
    now: dt.datetime,
) -> dict[str, Any]:
    """Scan every permutation — or none, when the DB is unusable — then write the verdict
    (``dist/gate.json``, the reports) and raise GateBlocked unless every permutation passed.
    A DB problem is the error, said once: it blocked every permutation alike."""
    settings = ctx.settings
    if gctx.db.problem:
        scanned = _blocked_by_the_db(manifest, gctx)
    else:
        scanned = _scan_all(ctx, manifest, gctx)
    doc = _verdict_doc(settings, manifest, manifest_path, scanned, gctx, tools, now)
    _write_reports(settings, manifest, scanned, doc, gctx, ctx.env)
    gate_path = settings.dist_dir / "gate.json"
    atomic_write_json(gate_path, doc)
    if gctx.db.sample:
        log.warn("SAMPLE vulnerability data: this gate is a demonstration, not a real scan")
    verdicts = [s.verdict for s in scanned]
    if gctx.db.problem:
        raise GateBlocked(
            f"{gctx.db.problem}; no permutation was scanned (all {len(verdicts)} blocked, "
            f"verdict in {gate_path})"
        )
    if not doc["passed"]:
        blocked = [v for v in verdicts if not v.passed]
        detail = "; ".join(f"{v.name}: {', '.join(v.reasons)}" for v in blocked)
        raise GateBlocked(f"{len(blocked)} of {len(verdicts)} permutation(s) blocked — {detail}")
    log.info(f"gate passed: {len(verdicts)} permutation(s); verdict in {gate_path}")
    return doc


def _meta(
    settings: Settings,
    manifest: mf.Manifest,
    gctx: GateContext,
    tools: Mapping[str, toolchain.Tool],
) -> dict[str, Any]:
    return {
        "git_sha": manifest.git_sha,
        "registry": settings.registry,
        "trivy_version": tools["trivy"].version,
        "syft_version": tools["syft"].version,
        "tools": {name: tool.to_json() for name, tool in tools.items()},
        "db_repository": gctx.db.repository,
        "db_digest": gctx.db.digest,
        "db_updated_at": gctx.db.updated_at,
        "sample_db": gctx.db.sample,
        "blocking_severities": list(gctx.rules.blocking),
        "ignore_unfixed": gctx.rules.ignore_unfixed,
        "skip_dirs": list(gctx.rules.skip_dirs),
        "waivers": [w.to_json(gctx.today) for w in gctx.waivers],
    }


def _verdict_doc(
    settings: Settings,
    manifest: mf.Manifest,
    manifest_path: Path,
    scanned: Sequence[Scanned],
    gctx: GateContext,
    tools: Mapping[str, toolchain.Tool],
    now: dt.datetime,
) -> dict[str, Any]:
    return {
        "schema_version": GATE_SCHEMA_VERSION,
        "created_at": now.isoformat(timespec="seconds").replace("+00:00", "Z"),
        "manifest_sha256": file_sha256(manifest_path),
        "passed": all(s.verdict.passed for s in scanned),
        **_meta(settings, manifest, gctx, tools),
        "policy": policy_json(settings),
        "permutations": [
            {
                **s.verdict.to_json(),
                "os_mode": e.os,
                "tarball_sha256": e.tarball_sha256,
                "image_digest": e.image_digest,
                # Every image that is scanned, signed and attested: one per platform.
                "platforms": [
                    {"platform": pl, "digest": d, **v.to_json()}
                    for pl, d, v in s.platforms
                    or ((e.platforms[0], e.image_digest, s.verdict),) * (not e.multi_platform)
                ],
            }
            for s, e in zip(scanned, manifest.permutations, strict=True)
        ],
    }


def _write_reports(
    settings: Settings,
    manifest: mf.Manifest,
    scanned: Sequence[Scanned],
    doc: Mapping[str, Any],
    gctx: GateContext,
    env: Mapping[str, str],
) -> None:
    verdicts = [v for s in scanned for v in s.report_verdicts()]
    summary = reports.markdown(verdicts, doc, gctx.waivers, gctx.today)
    atomic_write_bytes(gctx.reports_dir / "summary.md", summary.encode())
    sources = {
        v.name: f"permutations/{e.family}.yaml"
        for s, e in zip(scanned, manifest.permutations, strict=True)
        for v in s.report_verdicts()
    }
    atomic_write_json(gctx.reports_dir / "gate.sarif", reports.sarif(verdicts, sources, doc))
    if env.get("GITHUB_STEP_SUMMARY"):
        append_line(env["GITHUB_STEP_SUMMARY"], summary, "GITHUB_STEP_SUMMARY")


def self_test(ctx: Context, now: dt.datetime) -> dict[str, Any]:
    """Prove DB → Trivy → policy blocks a planted vulnerable package (the canary)."""
    settings, runner = ctx.settings, ctx.runner
    pol = settings.gate_policy
    with tempfile.TemporaryDirectory(prefix="dcforge-canary-") as tmp:
        work = Path(tmp)
        context = work / "canary"
        shutil.copytree(Path(str(resources.files("dcforge.resources") / "canary")), context)
        tar = work / "canary.tar"
        buildx.build_oci(runner, context, tar, buildx.Builder.resolve(runner, settings.builder))
        db = prepare_db(settings, ctx.registry, work, now)
        if db.problem:
            raise GateBlocked(f"gate self-test could not run: {db.problem}")
        layout = trivy.unpack_oci_archive(tar, work / "layout")
        report = trivy.scan(runner, layout, work / "canary.trivy.json", db.options)
    verdict = policy.decide(
        "canary",
        report=report,
        sbom_packages=1,
        sbom_os_packages=None,  # the canary proves the DB → Trivy → policy chain, not coverage
        policy=pol,
        waivers=(),
        today=now.date(),
    )
    if verdict.passed or not verdict.blocking:
        raise GateBlocked(
            "gate self-test FAILED: the canary's planted vulnerable packages were not blocked — "
            f"the scanner or the DB ({db.repository}) is broken; do not trust this gate"
        )
    found = ", ".join(sorted({f.id for f in verdict.blocking})[:5])
    log.info(f"gate self-test ok: the canary was blocked ({found}){' [SAMPLE DB]' * db.sample}")
    return {
        "self_test": "passed",
        "blocking": [f.id for f in verdict.blocking],
        "sample_db": db.sample,
    }
