"""Build stage: permutations → buildx bake → OCI tarballs + smoke tests → manifest.json.

A build selects the permutations (``--platform`` and ``--refresh`` checked against them
before any process runs), resolves their bases and Features against the registry
(:mod:`dcforge.infra.build_inputs`), reuses what an earlier release holds unchanged
(``--since``), bakes the rest — a devcontainer.json through the Dev Containers CLI
(:mod:`dcforge.infra.devcontainer_build`) — checks and smoke-tests each archive
(:mod:`dcforge.infra.image_checks`), stages it when a staging registry is set, and writes
dist/manifest.json. What to build is decided in :mod:`dcforge.core.build_plan` and
:mod:`dcforge.core.bake`.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from dcforge.core import bake, build_plan, image_labels, oci_archive, permfile, release, staging
from dcforge.core import manifest as mf
from dcforge.core.bake import Target
from dcforge.core.build_plan import PlannedPermutation
from dcforge.core.errors import BuildError, ConfigError, RollbackRefused, VerifyFailed
from dcforge.core.hashing import file_sha256
from dcforge.core.settings import Settings
from dcforge.infra import (
    build_inputs,
    devcontainer_build,
    gitinfo,
    image_checks,
    log,
    reproducibility,
)
from dcforge.infra.context import Context
from dcforge.infra.release_store import Releases
from dcforge.infra.runner import Runner
from dcforge.infra.tools import buildx, docker
from dcforge.infra.tools.registry import Registry


@dataclass(frozen=True)
class BuildOptions:
    names: Sequence[str] = ()
    jobs: int = 0
    prune: bool | None = None  # None: prune when CI is set
    smoke: bool = True
    since: str = ""  # reuse what this release (git SHA / last-known-good) already published
    platform: str = ""  # build only this platform: a part for merge-manifests to join
    refresh: tuple[str, ...] = ()  # rebuild these with no cache, never reused (CVE drift)


def run(ctx: Context, options: BuildOptions) -> mf.Manifest:
    """Build the selected permutations and write ``dist/manifest.json``."""
    settings, runner, env = ctx.settings, ctx.runner, ctx.env
    perms = build_plan.load_permutations(settings, options.names)
    # Checked on the permutation files alone: a wrong option costs no git, prune or login.
    left_out = build_plan.left_out(perms, options.platform, bool(options.names))
    refresh = build_plan.refresh_names(settings, perms, options.refresh)
    git = _work_tree(ctx, perms)
    source = _source(ctx, git)
    if options.prune if options.prune is not None else bool(env.get("CI")):
        docker.runner_hygiene(ctx.engine)
    releases = ctx.releases  # logged in: bases, cache, --since
    planned = _resolve(ctx, perms)
    for p in left_out:
        log.step(p.name, f"left out: it does not build {options.platform}")
    planned = build_plan.platform_parts(planned, options.platform)
    reused = _reusable(releases, options.since, planned, git.sha, refresh) if options.since else {}
    to_build = [item for item in planned if item.perm.name not in reused]
    if options.since:
        log.info(f"--since {options.since}: {len(reused)} reused, {len(to_build)} to build")
    incoming = settings.dist_dir / f".incoming-{datetime.now(UTC):%Y%m%dT%H%M%S%f}"
    incoming.mkdir(parents=True)
    try:
        built = _build_all(ctx, to_build, incoming, source, options, refresh) if to_build else []
        if settings.staging_registry and not runner.dry_run:
            built = _stage(settings, env, ctx.registry, built, incoming)
        by_name = {e.name: e for e in [*built, *reused.values()]}
        entries = [by_name[item.perm.name] for item in planned if item.perm.name in by_name]
        if runner.dry_run:
            log.info("dry run: no manifest written")
            return mf.Manifest(mf.SCHEMA_VERSION, git.sha, "", settings.registry, [], git.dirty)
        manifest = _write_manifest(settings, git, source, entries, built, incoming)
    finally:
        shutil.rmtree(incoming, ignore_errors=True)
    log.info(f"wrote {settings.dist_dir / 'manifest.json'} ({len(entries)} permutation(s))")
    return manifest


def check_reproducible(ctx: Context, options: BuildOptions) -> mf.Manifest:
    """Build the selection twice, each time with the build cache bypassed (and ``--since``
    ignored), into ``dist/`` and then ``dist/reproduce/``; every permutation and platform's
    digest must be the same (:mod:`dcforge.infra.reproducibility` names what differs).
    Returns the first build's manifest, which stays in ``dist/`` like any build's."""
    if ctx.runner.dry_run:
        raise ConfigError("--check-reproducible builds twice and compares: it has no dry run")
    names = tuple(p.name for p in build_plan.load_permutations(ctx.settings, options.names))
    cold = replace(options, refresh=names, since="")
    # Archives on disk, never staged: the comparison reads both builds' tarballs.
    ctx = ctx.with_settings(replace(ctx.settings, staging_registry=""))
    second_dir = ctx.settings.dist_dir / "reproduce"
    shutil.rmtree(second_dir, ignore_errors=True)
    clock = time.perf_counter()
    with log.group("reproduce: first cold build"):
        first = run(ctx, cold)
    seconds = {"first build": time.perf_counter() - clock}
    with log.group("reproduce: second cold build"):
        second = run(
            ctx.with_settings(replace(ctx.settings, dist=str(second_dir))),
            replace(cold, smoke=False, prune=False),
        )
    seconds["second build"] = time.perf_counter() - clock - seconds["first build"]
    if (first.git_sha, first.source_date_epoch) != (second.git_sha, second.source_date_epoch):
        raise BuildError(
            f"the commit changed between the two builds ({first.git_sha[:12]} → "
            f"{second.git_sha[:12]}): they were not of the same inputs — run it again, and "
            "commit nothing while it runs"
        )
    pairs, explained = reproducibility.compare(first, ctx.settings.dist_dir, second, second_dir)
    seconds["compare"] = time.perf_counter() - clock - sum(seconds.values())
    result = reproducibility.Comparison(pairs, explained, seconds)
    reproducibility.report(result, ctx.settings.dist_dir / "reports")
    shutil.rmtree(second_dir, ignore_errors=True)  # identical: the first build is the build
    return first


def bake_targets(ctx: Context, out_dir: Path, source: image_labels.Source) -> list[Target]:
    """The bake targets dcforge builds for every permutation from ``source`` (a commit),
    writing archives to ``out_dir`` (``bake.bake_definition`` turns them into a bake file;
    the benchmark hands that file to plain ``docker buildx bake``)."""
    perms = build_plan.load_permutations(ctx.settings)
    planned = build_inputs.resolve(ctx.registry, perms, dry_run=ctx.runner.dry_run)
    return bake.targets(ctx.settings, ctx.env, planned, out_dir, source)


def _work_tree(ctx: Context, perms: Sequence[permfile.Permutation]) -> gitinfo.GitInfo:
    """The commit being built; a dirty tree is recorded in the manifest, and said now."""
    inputs = [ctx.settings.permutations_dir, *(p.context for p in perms)]
    git = gitinfo.current(ctx.runner, ctx.settings.root, ctx.env, inputs)
    if git.dirty:
        log.warn(
            "the work tree has uncommitted changes (or untracked files in a build context); "
            "the manifest records git_dirty=true and publish will refuse it without --allow-dirty"
            " (the images are dated by the HEAD commit's time all the same)"
        )
    return git


def _source(ctx: Context, git: gitinfo.GitInfo) -> image_labels.Source:
    """The commit the images say they come from, dated by its committer time (every
    build's SOURCE_DATE_EPOCH), and the repository's URL."""
    if git.commit_time is None:
        raise ConfigError(
            f"cannot tell the time of commit {git.sha[:12]} (no checkout here holds it) — "
            "set SOURCE_DATE_EPOCH to its committer time (git log -1 --format=%ct "
            f"{git.sha[:12]}), the time every image of this build is dated by"
        )
    url = image_labels.source_url(ctx.env, gitinfo.origin_url(ctx.runner, ctx.settings.root))
    return image_labels.Source(git.sha, git.commit_time, url)


def _resolve(ctx: Context, perms: Sequence[permfile.Permutation]) -> list[PlannedPermutation]:
    with log.group(f"resolve {len(perms)} permutation(s)"):
        planned = build_inputs.resolve(
            ctx.registry, perms, dry_run=ctx.runner.dry_run, base_configs=True
        )
        for item in planned:
            log.step(
                item.perm.name,
                f"base {item.perm.base_ref} → {item.base_digest[:19]}  "
                f"input {item.input_hash[:19]}",
            )
    return planned


def _reusable(
    releases: Releases,
    since: str,
    planned: Sequence[PlannedPermutation],
    git_sha: str,
    refresh: Sequence[str] = (),
) -> dict[str, mf.Entry]:
    """Entries whose input_hash equals the reference release's: not rebuilt, reused by digest."""
    try:
        record_digest, rel = releases.fetch(since)
    except (RollbackRefused, VerifyFailed) as err:
        if since == release.LAST_KNOWN_GOOD:
            log.warn(f"--since {since}: no usable release yet ({err}); building everything")
            return {}
        raise ConfigError(f"--since {since}: {err}") from None
    previous = {e.name: e for e in rel.manifest.permutations}
    reused_from = {"git_sha": rel.git_sha, "record_digest": record_digest}
    out: dict[str, mf.Entry] = {}
    for item in planned:
        p = item.perm
        old = build_plan.unchanged(item, previous)
        if old is None:
            continue
        if p.name in refresh:
            log.step(p.name, "unchanged, but --refresh: rebuilt from scratch")
            continue
        ref = f"{p.repository}@{old.image_digest}"
        if releases.registry.digest_or_none(ref) != old.image_digest:
            log.step(p.name, f"not reusable: {ref} is gone from the registry")
            continue
        out[p.name] = build_plan.reused_entry(item, old, git_sha, reused_from)
        log.step(p.name, f"unchanged since {rel.git_sha[:12]}: reusing {old.image_digest[:19]}")
    return out


def _build_all(
    ctx: Context,
    planned: Sequence[PlannedPermutation],
    incoming: Path,
    source: image_labels.Source,
    options: BuildOptions,
    refresh: Sequence[str] = (),
) -> list[mf.Entry]:
    """Bake the Dockerfile permutations, build the devcontainer.json ones with the Dev
    Containers CLI, then check, smoke-test and enter each archive (in parallel)."""
    settings, runner = ctx.settings, ctx.runner
    builder = buildx.Builder.resolve(runner, settings.builder)
    _check_builder(runner, planned, builder)
    targets = [
        replace(t, no_cache=t.name in refresh)
        for t in bake.targets(settings, ctx.env, planned, incoming, source)
    ]
    started_at = _now()
    by_name = {item.perm.name: item for item in planned}
    baked = [t for t in targets if not t.devcontainer]
    metadata = _bake(settings, runner, baked, incoming, options, builder) if baked else {}
    cli_built = [(by_name[t.name], t) for t in targets if t.devcontainer]
    if cli_built:
        devcontainer_build.build_all(settings, runner, cli_built, builder)
    if runner.dry_run:
        return []
    built = (started_at, _now())
    reports = settings.dist_dir / "reports"
    engine = ctx.engine  # one client, made here: the threads below share it

    def finish(target: Target) -> mf.Entry:
        with log.permutation(target.name):
            item = by_name[target.name]
            return _finish(engine, item, target, metadata, source.revision, built, options, reports)

    with log.group("verify and smoke-test"):
        jobs = options.jobs or settings.effective_jobs
        with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
            return list(pool.map(finish, targets))


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _check_builder(
    runner: Runner, planned: Sequence[PlannedPermutation], builder: buildx.Builder
) -> None:
    """Every platform to build is one the builder offers (natively or emulated): a missing
    arm64 emulator is one clear line now, not a bake error minutes in."""
    wanted = {pl for item in planned for pl in item.perm.platforms}
    if runner.dry_run:
        return
    offered = buildx.builder_platforms(runner, builder)
    missing = sorted(wanted - offered)
    if missing:
        raise BuildError(
            f"the buildx builder cannot build {', '.join(missing)} (it offers "
            f"{', '.join(sorted(offered)) or 'nothing it reports'}) — register emulation "
            "(scripts/bootstrap as root; docker/setup-qemu-action in GitHub Actions) or add "
            "a native node to the builder (docs/permutations.md, Platforms)"
        )


def _bake(
    settings: Settings,
    runner: Runner,
    targets: list[Target],
    incoming: Path,
    options: BuildOptions,
    builder: buildx.Builder,
) -> dict[str, Any]:
    """Run the bake sessions; returns buildx's metadata of every target."""
    # One BuildKit session for everything by default: BuildKit parallelises the targets
    # itself and shares work between them; --jobs N splits them over N bake sessions.
    groups = bake.groups(targets, options.jobs or settings.jobs or 1)
    metadata: dict[str, Any] = {}

    def bake_group(index: int, group: list[Target]) -> dict[str, Any]:
        meta: dict[str, Any] = {}
        for start in range(0, len(group), bake.BAKE_MAX_TARGETS):
            chunk = group[start : start + bake.BAKE_MAX_TARGETS]
            for t in chunk:
                log.step(t.name, f"building (bake session {index + 1}/{len(groups)})")
            found, build_log = buildx.bake(
                runner,
                bake.bake_definition(chunk),
                incoming / f"bake-{index}-{start // bake.BAKE_MAX_TARGETS}",
                timeout=settings.build_timeout,
                builder=builder,
            )
            meta.update(found)
            for t in chunk:
                if runner.dry_run:
                    log.step(t.name, "would be built (dry run)")
                else:
                    cached = build_log.count("CACHED")
                    log.step(t.name, f"built ({cached} cached step(s) in its session)")
        return meta

    with (
        log.group(f"build {len(targets)} permutation(s), {len(groups)} bake session(s)"),
        ThreadPoolExecutor(max_workers=len(groups)) as pool,
    ):
        for meta in pool.map(bake_group, range(len(groups)), groups):
            metadata.update(meta)
    return metadata


def _finish(
    engine: docker.Engine,
    item: PlannedPermutation,
    target: Target,
    metadata: dict[str, Any],
    git_sha: str,
    built: tuple[str, str],
    options: BuildOptions,
    reports: Path,
) -> mf.Entry:
    """Check the archive holds what buildx built, smoke-test it, run its image test, make
    its manifest entry."""
    p = item.perm
    digest = str(buildx.target_metadata(metadata, target.name).get("containerimage.digest", ""))
    archived, children = oci_archive.oci_archive(target.output_tar)
    if digest and digest != archived:
        raise BuildError(f"{p.name}: buildx reported {digest} but the tarball holds {archived}")
    platforms = image_checks.archive_platforms(p, children, archived)
    image_checks.check_archive(item, target.output_tar, platforms)
    if options.smoke and p.smoke:
        image_checks.smoke(engine, p, target.output_tar, platforms)
    if options.smoke and p.test:
        image_checks.image_test(engine, p, target.output_tar, platforms, reports)
    return build_plan.entry(
        item,
        git_sha,
        digest=archived,
        tarball=f"{p.name}.tar",
        tarball_sha256=file_sha256(target.output_tar),
        built=built,
        platform_digests=platforms,
    )


def _stage(
    settings: Settings,
    env: Mapping[str, str],
    reg: Registry,
    built: Sequence[mf.Entry],
    incoming: Path,
) -> list[mf.Entry]:
    """Push each archive byte for byte, by digest and untagged, to this run's staging
    repository (dcforge.core.staging); the registry must then serve exactly that digest."""
    out = []
    for entry in built:
        if entry.is_part:  # the merge joins the parts' archives
            out.append(entry)
            continue
        repo = staging.repository(settings, env, entry.repository)
        ref = f"{repo}@{entry.image_digest}"
        reg.push_oci_archive(incoming / entry.tarball, ref)
        if reg.digest_or_none(ref) != entry.image_digest:
            raise BuildError(f"{entry.name}: staged {ref}, but the registry does not serve it")
        log.step(entry.name, f"staged {ref}")
        out.append(replace(entry, staged=repo))
    return out


def _write_manifest(
    settings: Settings,
    git: gitinfo.GitInfo,
    source: image_labels.Source,
    entries: list[mf.Entry],
    built: list[mf.Entry],
    incoming: Path,
) -> mf.Manifest:
    """Move the new tarballs into dist/ and write the manifest naming them (atomically).
    A staged image's tarball is not kept: the staging repository holds it by digest."""
    for entry in built:
        if entry.staged:
            (settings.dist_dir / entry.tarball).unlink(missing_ok=True)
        else:
            (incoming / entry.tarball).replace(settings.dist_dir / entry.tarball)
    manifest = mf.Manifest(
        schema_version=mf.SCHEMA_VERSION,
        git_sha=git.sha,
        created_at=_now(),
        registry=settings.registry,
        permutations=entries,
        git_dirty=git.dirty,
        builder="docker buildx bake (dcforge)",
        source_date_epoch=source.epoch,
    )
    mf.write(settings.dist_dir / "manifest.json", manifest)
    return manifest
