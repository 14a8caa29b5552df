"""Build stage: permutations → buildx bake → OCI tarballs + smoke tests → manifest.json.

A build selects the permutations, resolves their bases and Features against the registry,
reuses what an earlier release holds unchanged (``--since``), bakes the rest — a
devcontainer.json through the Dev Containers CLI — checks and smoke-tests each archive,
stages it when a staging registry is set, and writes dist/manifest.json. What to build
is decided in :mod:`dcforge.core.build_plan` and :mod:`dcforge.core.bake`.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from dcforge.core import (
    bake,
    build_plan,
    devcontainer,
    oci_archive,
    permfile,
    release,
    staging,
    toolpins,
)
from dcforge.core import manifest as mf
from dcforge.core.bake import Target
from dcforge.core.build_plan import PlannedPermutation
from dcforge.core.errors import (
    BuildError,
    ConfigError,
    RegistryError,
    RollbackRefused,
    VerifyFailed,
)
from dcforge.core.files import atomic_write_json
from dcforge.core.hashing import file_sha256, input_hash
from dcforge.core.refs import at_digest
from dcforge.core.settings import Settings
from dcforge.infra import gitinfo, log
from dcforge.infra.context import Context
from dcforge.infra.release_store import Releases
from dcforge.infra.runner import Runner
from dcforge.infra.tools import buildx, devcontainer_cli, docker
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
    refresh = build_plan.refresh_names(settings, perms, options.refresh)
    git = _work_tree(ctx, perms)
    if options.prune if options.prune is not None else bool(env.get("CI")):
        docker.runner_hygiene(runner)
    releases = ctx.releases  # logged in: bases, cache, --since
    planned = _resolve(ctx, perms)
    for p in build_plan.left_out(perms, options.platform, bool(options.names)):
        log.step(p.name, f"left out: it does not build {options.platform}")
    planned = build_plan.platform_parts(planned, options.platform)
    reused = _reusable(releases, options.since, planned, git.sha, refresh) if options.since else {}
    to_build = [item for item in planned if item.perm.name not in reused]
    if options.since:
        log.info(f"--since {options.since}: {len(reused)} reused, {len(to_build)} to build")
    incoming = settings.dist_dir / f".incoming-{datetime.now(UTC):%Y%m%dT%H%M%S%f}"
    incoming.mkdir(parents=True)
    try:
        built = _build_all(ctx, to_build, incoming, git.sha, options, refresh) if to_build else []
        if settings.staging_registry and not runner.dry_run:
            built = _stage(settings, env, releases.registry, built, incoming)
        by_name = {e.name: e for e in [*built, *reused.values()]}
        entries = [by_name[item.perm.name] for item in planned if item.perm.name in by_name]
        if runner.dry_run:
            log.info("dry run: no manifest written")
            return mf.Manifest(mf.SCHEMA_VERSION, git.sha, "", settings.registry, [], git.dirty)
        manifest = _write_manifest(settings, git, entries, built, incoming)
    finally:
        shutil.rmtree(incoming, ignore_errors=True)
    log.info(f"wrote {settings.dist_dir / 'manifest.json'} ({len(entries)} permutation(s))")
    return manifest


def bake_targets(
    settings: Settings, runner: Runner, env: Mapping[str, str], out_dir: Path, git_sha: str
) -> list[Target]:
    """The bake targets dcforge builds for every permutation, writing archives to
    ``out_dir`` (``bake.bake_definition`` turns them into a bake file; the benchmark
    hands that file to plain ``docker buildx bake``)."""
    planned = resolve_plan(settings, runner, build_plan.load_permutations(settings))
    return bake.targets(settings, env, planned, out_dir, git_sha)


def _work_tree(ctx: Context, perms: Sequence[permfile.Permutation]) -> gitinfo.GitInfo:
    """The commit being built; a dirty tree is recorded in the manifest, and said now."""
    inputs = [ctx.settings.permutations_dir, *(p.context for p in perms)]
    git = gitinfo.current(ctx.runner, ctx.settings.root, ctx.env, inputs)
    if git.dirty:
        log.warn(
            "the work tree has uncommitted changes (or untracked files in a build context); "
            "the manifest records git_dirty=true and publish will refuse it without --allow-dirty"
        )
    return git


def _resolve(ctx: Context, perms: Sequence[permfile.Permutation]) -> list[PlannedPermutation]:
    with log.group(f"resolve {len(perms)} permutation(s)"):
        planned = resolve_plan(ctx.settings, ctx.runner, perms, base_configs=True)
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
    git_sha: str,
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
        for t in bake.targets(settings, ctx.env, planned, incoming, git_sha)
    ]
    started_at = _now()
    by_name = {item.perm.name: item for item in planned}
    baked = [t for t in targets if not t.devcontainer]
    metadata = _bake(settings, runner, baked, incoming, options, builder) if baked else {}
    cli_built = [(by_name[t.name], t) for t in targets if t.devcontainer]
    if cli_built:
        _devcontainer_builds(settings, runner, cli_built, builder)
    if runner.dry_run:
        return []
    built = (started_at, _now())
    reports = settings.dist_dir / "reports"

    def finish(target: Target) -> mf.Entry:
        with log.permutation(target.name):
            return _finish(
                runner, by_name[target.name], target, metadata, git_sha, built, options, reports
            )

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
            "a native node to the builder (README: Platforms)"
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
    runner: Runner,
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
    platforms = _archive_platforms(p, children, archived)
    if p.devcontainer:
        _check_devcontainer_image(item, target.output_tar, platforms)
    else:
        _check_metadata_label(item, target.output_tar, platforms)
    if options.smoke and p.smoke:
        _smoke(runner, p, target.output_tar, platforms)
    if options.smoke and p.test:
        _image_test(runner, p, target.output_tar, platforms, reports)
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
    )
    mf.write(settings.dist_dir / "manifest.json", manifest)
    return manifest


def resolve_plan(
    settings: Settings,
    runner: Runner,
    perms: Sequence[permfile.Permutation],
    *,
    base_configs: bool = False,
) -> list[PlannedPermutation]:
    """Resolve every base reference to a digest (once per ref) and hash the inputs;
    ``base_configs``: also fetch each base image's config (what a build checks against)."""
    refs = sorted({p.base_ref for p in perms})
    reg = Registry(runner, settings.insecure_hosts)

    def resolve(ref: str) -> tuple[str, dict[str, str]]:
        digest = reg.resolve(ref)
        if runner.dry_run:
            return digest, {}
        return digest, oci_archive.index_children(reg.manifest(at_digest(ref, digest)), ref)

    wanted = {p.name: build_plan.feature_refs(p) for p in perms}
    features = sorted({ref for refs in wanted.values() for ref in refs.values()})
    with ThreadPoolExecutor(max_workers=max(1, min(8, len(refs) + len(features)))) as pool:
        bases = dict(zip(refs, pool.map(resolve, refs), strict=True))
        digests = pool.map(lambda ref: _pin_feature(reg, ref), features)
        pinned = dict(zip(features, digests, strict=True))
    contexts: dict[Path, list[tuple[str, str, int]]] = {}
    configs: dict[str, Mapping[str, Any]] = {}  # base image digest → its config
    cli = devcontainer_cli.pinned_version(toolpins.PYPROJECT)
    planned = []
    for p in perms:
        digest, children = bases[p.base_ref]
        pins = {ref: pinned[to_pin] for ref, to_pin in wanted[p.name].items()}
        platforms = build_plan.base_platforms(p, digest, children, runner.dry_run)
        planned.append(
            PlannedPermutation(
                p,
                digest,
                input_hash(p, digest, contexts, pins, cli if p.devcontainer else ""),
                platforms,
                features=pins,
                base_configs=_base_configs(reg, p, platforms, configs)
                if base_configs and not runner.dry_run
                else {},
            )
        )
    return planned


def _base_configs(
    reg: Registry,
    perm: permfile.Permutation,
    platforms: Mapping[str, str],
    seen: dict[str, Mapping[str, Any]],
) -> dict[str, Mapping[str, Any]]:
    """platform → the base image's config (fetched once per base image): the layers a
    devcontainer.json image must start with, the label it inherits."""
    out = {}
    for platform, digest in platforms.items():
        if digest not in seen:
            ref = at_digest(perm.base_ref, digest)
            config_digest = str(reg.manifest(ref).get("config", {}).get("digest", ""))
            seen[digest] = reg.blob_json(at_digest(perm.base_ref, config_digest))
        out[platform] = seen[digest]
    return out


def _pin_feature(reg: Registry, ref: str) -> str:
    """``repository@sha256:…`` of a Feature reference, as the registry serves it now (a
    digest reference must exist with that digest)."""
    name = ref.split("@", 1)[0]
    tagged = "@" in ref or ":" in name.rsplit("/", 1)[-1]
    try:
        digest = reg.resolve(ref if tagged else f"{ref}:latest")
    except RegistryError as err:
        raise ConfigError(f"Feature {ref}: {err}") from None
    if "@" in ref and ref.split("@", 1)[1] != digest:
        raise ConfigError(f"Feature {ref}: the registry serves {digest} for it")
    return f"{devcontainer.feature_repository(ref)}@{digest}"


def _devcontainer_builds(
    settings: Settings,
    runner: Runner,
    work: Sequence[tuple[PlannedPermutation, Target]],
    builder: buildx.Builder,
) -> None:
    """Build the devcontainer.json permutations with the Dev Containers CLI, each from a
    rendered copy of its folder (base and Features pinned by digest) into its archive."""
    cli = devcontainer_cli.executable(runner, settings.state_root, toolpins.PYPROJECT)

    def one(item: PlannedPermutation, target: Target) -> None:
        with log.permutation(item.perm.name):
            build_one(item, target)

    def build_one(item: PlannedPermutation, target: Target) -> None:
        p = item.perm
        workspace, config_file, features = _render_workspace(item, target)
        log.step(p.name, f"building (Dev Containers CLI, {features} Feature(s))")
        devcontainer_cli.build(
            runner,
            cli,
            workspace=workspace,
            config=config_file,
            output_tar=target.output_tar,
            image_name=target.tags[0],
            platforms=target.platforms,
            labels=target.labels,
            cache_from=[] if target.no_cache else target.cache_from,
            cache_to=target.cache_to,
            no_cache=target.no_cache,
            builder=builder,
            timeout=settings.build_timeout,
        )
        log.step(p.name, "built")

    with (
        log.group(f"build {len(work)} devcontainer.json permutation(s) (Dev Containers CLI)"),
        ThreadPoolExecutor(max_workers=max(1, min(len(work), settings.jobs or 2))) as pool,
    ):
        list(pool.map(lambda w: one(*w), work))


def _render_workspace(item: PlannedPermutation, target: Target) -> tuple[Path, Path, int]:
    """A copy of the permutation's devcontainer.json folder next to its archive, with the
    devcontainer.json rendered: base and Features pinned by digest, the permutation's
    Feature options and build args merged in. (workspace, config file, Feature count)"""
    p = item.perm
    # The CLI finds local Features next to a devcontainer.json in a .devcontainer folder.
    workspace = target.output_tar.with_suffix(".workspace")
    folder = workspace / ".devcontainer"
    shutil.copytree(p.context, folder, symlinks=True)
    devcontainer.lock_file(folder / p.dockerfile.name).unlink(missing_ok=True)  # pinned below
    data = devcontainer.read_config(p.dockerfile)
    rendered = devcontainer.render(
        data,
        devcontainer.check_config(p.dockerfile, data),
        base=at_digest(p.base_ref, item.base_digest),
        build_args=dict(p.build_args),
        feature_options={ref: json.loads(opts) for ref, opts in p.features},
        pins=item.features,
    )
    config_file = folder / p.dockerfile.name
    _replace(folder, config_file, json.dumps(rendered, indent=2))
    if "build" in rendered:  # the CLI drops --label for the build form: the Dockerfile says them
        dockerfile = folder / rendered["build"]["dockerfile"]
        labels = " ".join(f"{json.dumps(k)}={json.dumps(v)}" for k, v in target.labels.items())
        _replace(folder, dockerfile, f"{dockerfile.read_text()}\n\nLABEL {labels}\n")
    return workspace, config_file, len(rendered["features"])


def _replace(folder: Path, path: Path, text: str) -> None:
    """Write a file of the rendered copy as a new file. A symlink there (copied as a link)
    must never carry the write back into the repository: the file itself is replaced, and
    a path through a linked directory that leads out of the copy is refused."""
    if not path.parent.resolve().is_relative_to(folder.resolve()):
        raise BuildError(
            f"{path.relative_to(folder)}: reached through a symlinked directory that points "
            "out of the devcontainer folder — use a real directory"
        )
    path.unlink(missing_ok=True)
    path.write_text(text)


def _check_metadata_label(
    item: PlannedPermutation, tarball: Path, platforms: Mapping[str, str]
) -> None:
    """A Dockerfile permutation's devcontainer.metadata label, when its build set one (its
    own LABEL, not the base's), is what the spec says — checked like 'metadata'."""
    for platform, digest in platforms.items():
        label = oci_archive.config_labels(oci_archive.image_config(tarball, digest)).get(
            "devcontainer.metadata", ""
        )
        base = oci_archive.config_labels(item.base_configs.get(platform, {}))
        if not label or label == base.get("devcontainer.metadata"):
            continue
        try:
            problems = devcontainer.metadata_errors(json.loads(label))
        except json.JSONDecodeError as err:
            problems = [("", f"is not JSON ({err.msg})")]
        if problems:
            raise BuildError(
                "\n".join(
                    f"{item.perm.source}: '{item.perm.name}' ({platform}): the image's "
                    f"devcontainer.metadata label{' ' + loc if loc else ''}: {why} — set it "
                    "with 'metadata' in the permutation, not a LABEL"
                    for loc, why in problems
                )
            )


def _check_devcontainer_image(
    item: PlannedPermutation, tarball: Path, platforms: Mapping[str, str]
) -> None:
    """What the CLI built is on the pinned base (its layers come first), and every Feature
    it installed is local or one dcforge pinned: a Feature another one ``dependsOn`` is
    resolved by the CLI itself, by tag, unrecorded — refused. (The base's own label may
    name Features: those entries come first in the merged label and are the base's.)"""
    perm, pins = item.perm, item.features
    for platform, digest in platforms.items():
        config = oci_archive.image_config(tarball, digest)
        base = item.base_configs.get(platform, {})
        base_layers = oci_archive.config_layers(base)
        if oci_archive.config_layers(config)[: len(base_layers)] != base_layers:
            raise BuildError(
                f"{perm.source}: '{perm.name}' ({platform}) is not built on its base "
                f"{perm.base_ref}@{item.base_platforms.get(platform, '')[:19]} (its layers do "
                "not start with the base's) — the Dockerfile must build FROM ${BASE_IMAGE}"
            )
        label = oci_archive.config_labels(config).get("devcontainer.metadata", "")
        base_label = oci_archive.config_labels(base).get("devcontainer.metadata", "")
        unpinned = devcontainer.unpinned_features(label, pins, base_label)
        if unpinned:
            raise BuildError(
                f"{perm.source}: '{perm.name}' ({platform}) got Feature(s) "
                f"{', '.join(unpinned)} that dcforge did not pin (another Feature's dependsOn, "
                "resolved by the CLI by tag) — declare each in the devcontainer.json so that "
                "it is pinned by digest and recorded"
            )


def _image_test(
    runner: Runner,
    perm: permfile.Permutation,
    tarball: Path,
    platforms: Mapping[str, str],
    reports: Path,
) -> None:
    """Run the permutation's image test in each platform's image (as its remote user, no
    network); the results go to dist/reports/NAME.image-test.json; a failed check fails
    the build with its name."""
    if perm.test is None:
        return
    results = docker.image_test(runner, tarball, platforms, perm.test, perm.name)
    if runner.dry_run:
        return
    reports.mkdir(parents=True, exist_ok=True)
    atomic_write_json(
        reports / f"{perm.name}.image-test.json",
        {"permutation": perm.name, "test": perm.test.name, "platforms": results},
    )
    for result in results:
        failed = [c["name"] for c in result["checks"] if not c["passed"]]
        where = f"on {result['platform']} as {result['user']}"
        if failed:
            raise BuildError(
                f"{perm.name}: image test check {failed[0]!r} failed {where}"
                + (f" (and {len(failed) - 1} more: {', '.join(failed[1:])})" if failed[1:] else "")
                + f" — see {reports / (perm.name + '.image-test.json')}"
            )
        if result["exit_code"] != 0:
            lines = [ln for ln in result["output"].splitlines() if ln.strip()]
            last = lines[-1:] or ["(no output)"]
            raise BuildError(
                f"{perm.name}: image test {perm.test.name} exited {result['exit_code']} {where}: "
                f"{last[0][:300]}"
            )
    checks = sum(len(r["checks"]) for r in results)
    log.step(perm.name, f"image test ok ({checks} check(s) on {', '.join(platforms)})")


def _archive_platforms(
    perm: permfile.Permutation, children: Mapping[str, str], digest: str
) -> dict[str, str]:
    """platform → image digest in the archive, which must hold exactly the declared ones."""
    if len(perm.platforms) == 1 and not children:
        return {perm.platforms[0]: digest}
    if len(perm.platforms) == 1 or set(children) != set(perm.platforms):
        raise BuildError(
            f"{perm.name}: the archive holds images for {', '.join(sorted(children)) or 'one'} "
            f"platform(s), the permutation declares {', '.join(perm.platforms)}"
        )
    return {pl: children[pl] for pl in perm.platforms}


def _smoke(
    runner: Runner, perm: permfile.Permutation, tarball: Path, platforms: Mapping[str, str]
) -> None:
    """Load each platform's image of the archive and run every smoke command in it (foreign
    platforms under emulation), first checking that the container really runs that
    architecture. The engine's image store may be either of Docker's."""
    store = docker.smoke_archive(runner, tarball, platforms, list(perm.smoke), perm.name)
    log.step(
        perm.name,
        f"smoke ok ({len(perm.smoke)} command(s) on {', '.join(platforms)}, {store} image store)",
    )
