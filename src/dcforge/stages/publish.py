"""Publish stage: two-phase. Push by digest, sign, attest, store the signed release record;
only when all of that succeeded for every permutation move the floating tags and the
``last-known-good`` pointer. Idempotent: what the registry already has is skipped.
"""

from __future__ import annotations

import contextvars
import tempfile
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from dcforge.core import manifest as mf
from dcforge.core import provenance, release, staging, verdict
from dcforge.core.attestations import PROVENANCE_TYPE, SBOM_TYPE, VEX_TYPE
from dcforge.core.errors import DcforgeError, PublishRefused, RegistryError, ToolError
from dcforge.core.hashing import file_sha256
from dcforge.core.settings import Settings
from dcforge.infra import attestation_files, gitinfo, locks, log, publish_report, signing
from dcforge.infra.context import Context
from dcforge.infra.publish_report import Outcome
from dcforge.infra.release_store import Releases
from dcforge.infra.runner import Runner
from dcforge.infra.toolchain import SEEN

Settled = tuple[str, str, release.Release] | None  # Releases.settled: kind, record, release


@dataclass(frozen=True)
class PublishOptions:
    allow_dirty: bool = False  # publish a manifest built from a dirty tree (provenance says so)


@dataclass(frozen=True)
class _Run:
    """What every permutation's publish shares."""

    settings: Settings
    releases: Releases
    manifest: mf.Manifest
    files: attestation_files.Attesting  # what each image is attested with


def _push(run: _Run, entry: mf.Entry) -> str:
    """Push byte for byte; the registry must then serve exactly the built digest."""
    reg = run.releases.registry
    ref = f"{entry.repository}@{entry.image_digest}"
    immutable = f"{entry.repository}:{entry.immutable_tag}"
    if reg.digest_or_none(immutable) == entry.image_digest:
        return "already"
    if entry.reused:
        if reg.digest_or_none(ref) != entry.image_digest:
            raise PublishRefused(f"{entry.name}: reused image {ref} is gone — rebuild it")
        reg.tag(ref, [entry.immutable_tag])
        return "reused"
    if entry.staged:
        source = f"{entry.staged}@{entry.image_digest}"
        if reg.digest_or_none(source) != entry.image_digest:
            raise PublishRefused(f"{entry.name}: the staged image {source} is gone — rebuild")
        reg.copy_image(source, immutable)
    else:
        reg.push_oci_archive(run.settings.dist_dir / entry.tarball, immutable)
    served = reg.resolve(immutable)
    if served != entry.image_digest:
        raise PublishRefused(
            f"{entry.name}: the registry serves {served} for {immutable}, the manifest says "
            f"{entry.image_digest} — stopped before signing"
        )
    return "done"


def _push_for(run: _Run, entry: mf.Entry, shared: frozenset[str] = frozenset()) -> Outcome:
    """One permutation's push, then its attestations (and, signed here, its signatures at
    the same time), on a pool thread: its tool output is its own (log groups). An image of
    ``shared`` (another permutation's too) is left for ``_sign_all``: two attaches to one
    ``.sig`` would race."""
    with log.permutation(entry.name):
        out = Outcome(entry.name, entry.image_digest)
        clock = time.perf_counter()
        out.steps["push"] = _push(run, entry)
        _check_served(run, entry)
        log.step(entry.name, f"push {out.steps['push']} {entry.image_digest[:19]}")
        out.unsigned, out.to_verify = _unsigned(run, entry)
        out.steps["sign"] = "…"  # (the summary's column order)

        def lap(step: str) -> None:
            nonlocal clock
            now = time.perf_counter()
            out.seconds[step] = out.seconds.get(step, 0.0) + now - clock
            clock = now

        lap("push")
        here_too = shared.isdisjoint(out.unsigned)
        if not (out.unsigned and here_too and run.releases.cosign.signs_here()):
            _attest_all(run, entry, entry.platform_images(), out, lap)
            return out
        # Signed here: its signatures are attached while its attestations are (the
        # thread's tool output still this permutation's: the context is carried over).
        # When both fail, the attestation's error is the one raised.
        with ThreadPoolExecutor(1) as side:
            here = contextvars.copy_context()
            signing_ = side.submit(here.run, _timed, run.releases.cosign.sign_all, out.unsigned)
            _attest_all(run, entry, entry.platform_images(), out, lap)
            out.seconds["sign"] = signing_.result()
        out.steps["sign"], out.signed, out.unsigned = "done", len(out.unsigned), []
        return out


def _timed(fn: Callable[[list[str]], None], arg: list[str]) -> float:
    start = time.perf_counter()
    fn(arg)
    return time.perf_counter() - start


def _unsigned(run: _Run, entry: mf.Entry) -> tuple[list[str], list[str]]:
    """The images of one permutation (the index and each platform's): those with no
    signature yet, and those with one to verify."""
    reg = run.releases.registry
    digests = [entry.image_digest] * entry.multi_platform + list(entry.platform_images().values())
    unsigned: list[str] = []
    signed: list[str] = []
    for digest in digests:
        ref = f"{entry.repository}@{digest}"
        has_sig = reg.digest_or_none(f"{entry.repository}:{release.artifact_tag(digest, 'sig')}")
        (signed if has_sig else unsigned).append(ref)
    return unsigned, signed


def _not_verified(run: _Run, outcomes: list[Outcome]) -> None:
    """Images that have a signature (a re-run of a publish) keep it only when it verifies:
    all in one cosign run, one by one only when that run fails."""
    cosign_ = run.releases.cosign
    refs = [ref for out in outcomes for ref in out.to_verify]
    if not refs or run.releases.checks.verify_signatures(refs):
        return
    for out in outcomes:
        out.unsigned += [ref for ref in out.to_verify if not cosign_.verified(ref)]


def _sign_all(run: _Run, outcomes: list[Outcome], runs: int) -> float:
    """Every image of the release that is not signed yet, signed in a few cosign runs side
    by side (each reads and decrypts the key once, not once per image); returns the
    seconds it took."""
    start = time.perf_counter()
    run.releases.cosign.sign_all([ref for out in outcomes for ref in out.unsigned], runs)
    for out in outcomes:
        if out.steps["sign"] != "done":  # (not signed as it was pushed)
            out.steps["sign"] = "done" if out.unsigned else "already"
        out.signed += len(out.unsigned)
    log.info(f"signed {sum(o.signed for o in outcomes)} image(s)")
    return time.perf_counter() - start


def _phase_one(run: _Run, workers: int) -> tuple[list[Outcome], float]:
    """Push and attest each permutation (side by side, signing as pushed where it can); then
    sign every image still unsigned in a few cosign runs. The outcomes, and the seconds."""
    entries = run.manifest.permutations
    seen: dict[str, int] = {}
    for entry in entries:
        for digest in {entry.image_digest, *entry.platform_images().values()}:
            ref = f"{entry.repository}@{digest}"
            seen[ref] = seen.get(ref, 0) + 1
    shared = frozenset(ref for ref, count in seen.items() if count > 1)
    with ThreadPoolExecutor(workers) as pool:
        # Reused images' attestations are verified in batches while new images push (a
        # reused one waits for them: it would verify its own one by one).
        batches = pool.submit(run.releases.checks.prefetch_attested, list(seen))

        def push(entry: mf.Entry) -> Outcome:
            if entry.reused or entry.staged:
                batches.result()
            return _push_for(run, entry, shared)

        waits = sorted(
            range(len(entries)), key=lambda i: bool(entries[i].reused or entries[i].staged)
        )
        pushes = {i: pool.submit(push, entries[i]) for i in waits}  # new images first
        outcomes = [pushes[i].result() for i in range(len(entries))]
        batches.result()
    _not_verified(run, outcomes)
    signed_in = _sign_all(run, outcomes, workers)
    for entry, out in zip(entries, outcomes, strict=True):
        on = f" on {len(entry.platform_images())} platforms" if entry.multi_platform else ""
        log.step(
            entry.name,
            f"signed, SBOM and provenance attested{on} "
            f"({', '.join(f'{k} {v}' for k, v in out.steps.items())})",
        )
    return outcomes, signed_in


def _attest_all(
    run: _Run,
    entry: mf.Entry,
    images: Mapping[str, str],
    out: Outcome,
    lap: Callable[[str], None],
) -> None:
    """Each platform's image: its SBOM and its SLSA provenance (and the OpenVEX document of
    its waived findings), attested together; then a multi-platform index's own."""
    steps: dict[str, list[str]] = {}
    todo = [(digest, run.files.platform_files(entry, p, digest)) for p, digest in images.items()]
    if entry.multi_platform:
        todo.append((entry.image_digest, run.files.index_files(entry)))
    lap("provenance")
    for digest, files in todo:
        ref = f"{entry.repository}@{digest}"
        vex = file_sha256(files[VEX_TYPE]) if VEX_TYPE in files else ""
        found = run.releases.attested(ref, list(files), vex)
        done = [ptype for ptype in files if ptype not in found]
        run.releases.cosign.attest_all(ref, [(files[ptype], ptype) for ptype in done])
        lap("attest")
        for ptype in files:
            steps.setdefault(STEP_NAMES[ptype], []).append("done" if ptype in done else "already")
    out.steps |= {step: _merged(said) for step, said in steps.items()}


def _check_served(run: _Run, entry: mf.Entry) -> None:
    """What the registry serves under the digest is exactly the gated images: an index
    naming one more (or another) image than was scanned is never signed."""
    ref = f"{entry.repository}@{entry.image_digest}"
    try:
        served = run.releases.registry.served_platforms(ref)
    except RegistryError as err:
        raise PublishRefused(f"{entry.name}: {err} — stopped before signing") from None
    expected = entry.platform_images() if entry.multi_platform else {}
    if served != expected:
        raise PublishRefused(
            f"{entry.name}: the registry serves {ref} as images for "
            f"{', '.join(f'{p} {d[:19]}' for p, d in sorted(served.items())) or 'one platform'}"
            f", the gate scanned {', '.join(f'{p} {d[:19]}' for p, d in sorted(expected.items()))}"
            f"{'one image' * (not expected)} — stopped before signing"
        )


STEP_NAMES = {SBOM_TYPE: "sbom", PROVENANCE_TYPE: "provenance", VEX_TYPE: "vex"}


def _merged(steps: list[str]) -> str:
    """One word for a step done on several images: done if any was done now."""
    return "done" if "done" in steps else steps[0]


def _check_source(manifest: mf.Manifest, options: PublishOptions) -> None:
    if manifest.git_dirty and not options.allow_dirty:
        raise PublishRefused(
            f"the manifest was built from a dirty tree at {manifest.git_sha[:12]} (uncommitted "
            "or untracked files in the repository or a build context): its provenance would "
            "name a commit that is not what was built — commit and rebuild, or publish with "
            "--allow-dirty (the provenance then says so)"
        )
    if manifest.git_dirty:
        log.warn("publishing a build from a dirty tree (--allow-dirty): the provenance says so")


def run(ctx: Context, options: PublishOptions | None = None) -> dict[str, Any]:
    settings, runner, env = ctx.settings, ctx.runner, ctx.env
    options = options or PublishOptions()
    clock = [time.perf_counter()]
    manifest, gate_doc, rel, settled = _open(ctx, options)
    if settled is not None and settled[0] == "reproduced":
        return _reproduced(ctx, manifest, settled[1], settled[2])
    if settled is not None:
        log.info(
            f"already published: {manifest.git_sha[:12]} is pinned at this very record "
            f"({settled[1][:19]}) and verifies as pulled — nothing to push, sign or move"
        )
        return {"release": rel.repository, "record_digest": settled[1], "outcomes": {}, "moved": {}}
    vex_docs = verdict.vex_files(settings, manifest, gate_doc)
    with tempfile.TemporaryDirectory(prefix="dcforge-publish-") as tmp:
        files = attestation_files.Attesting(
            settings,
            manifest,
            env,
            provenance.source_uri(env, gitinfo.origin_url(runner, settings.root)),
            provenance.invocation_id(env),
            options.allow_dirty,
            Path(tmp),
            vex_docs,
        )
        shared = _Run(settings, rel, manifest, files)
        # Pushing and signing wait on the network and on cosign more than on the CPU.
        workers = max(4, 2 * settings.effective_jobs)
        phases = {"checks (verdict, tarball hashes, cosign, registry)": _lap(clock)}
        with log.group("phase 1: push, sign, attest"):
            outcomes, signed_in = _phase_one(shared, workers)
        phases["phase 1 (push, sign, attest)"] = _lap(clock)
        with log.group("verify what was signed, then the release record"):
            bindings = rel.verified_bindings(manifest, gate_doc)
            reference, record_digest, sequence = rel.store_record(
                manifest, gate_doc, Path(tmp), bindings
            )
        phases["release record"] = _lap(clock)
    moved = _phase_two(rel, manifest, gate_doc, (record_digest, sequence), bindings)
    phases["phase 2 (tags, verify, pin)"] = _lap(clock)
    publish_report.profile(settings, outcomes, phases, workers, signed_in)
    publish_report.summary(manifest, outcomes, gate_doc)
    return {
        "release": reference,
        "record_digest": record_digest,
        "outcomes": {o.name: o.steps for o in outcomes},
        "moved": moved,
    }


def _reproduced(
    ctx: Context, manifest: mf.Manifest, record_digest: str, rel: release.Release
) -> dict[str, Any]:
    """A rebuild that gave exactly the published images: nothing is pushed, signed or
    moved; a signed statement beside the record says the release was reproduced."""
    statement = ctx.releases.note_reproduced(
        rel,
        record_digest,
        file_sha256(ctx.settings.dist_dir / "manifest.json"),
        provenance.builder_id(ctx.env),
    )
    log.info(
        f"reproduced: this build of {manifest.git_sha[:12]} made exactly the images of its "
        f"publish {rel.sequence} ({record_digest[:19]}), which verifies as pulled — nothing "
        f"pushed, no tag moved; signed statement {statement}"
    )
    return {"release": statement, "record_digest": record_digest, "outcomes": {}, "moved": {}}


def _open(
    ctx: Context, options: PublishOptions
) -> tuple[mf.Manifest, dict[str, Any], Releases, Settled]:
    """The checks before anything is pushed, the release store, and whether this publish
    is done already (``Releases.settled``: then no tarball is read, no key decrypted)."""
    settings, runner, env = ctx.settings, ctx.runner, ctx.env
    with ThreadPoolExecutor(2) as side:
        pinned = side.submit(signing.require_pinned_cosign, runner, settings.state_root / SEEN)
        manifest, gate_doc = _preflight(settings, runner, env, options)
        pinned.result()
        signing.ensure_signer(settings, runner, env)  # a local key pair is made before first use
        rel = ctx.releases
        settled = rel.settled(manifest, gate_doc)
        if settled is not None and settled[0] == "published":
            return manifest, gate_doc, rel, settled
        # The key's scrypt runs while the tarballs are hashed and the pin is read.
        early = side.submit(signing.decrypt_early, settings, env)
        _check_files(settings, manifest)
        _check_forward(settings, rel, manifest.git_sha, "nothing was pushed")
        try:
            rel.cosign.check_key(early.result())
        except ToolError as err:
            raise PublishRefused(f"{err}; nothing was pushed") from None
    return manifest, gate_doc, rel, settled


def _check_files(settings: Settings, manifest: mf.Manifest) -> None:
    """The tarballs hash to the manifest's digests, and every image has its SBOM."""
    mf.verify_tarballs(manifest, settings.dist_dir)
    for entry in manifest.permutations:
        for platform in entry.platform_images():
            attestation_files.sbom(settings, entry, platform)


def _check_forward(settings: Settings, rel: Releases, sha: str, outcome: str) -> None:
    """Publish moves the floating tags and the pin forward only: ``sha`` is the pinned
    release or descends from it (git history). Going back is rollback's job alone; a slow
    refresh or a re-run of an old job must not undo a newer release."""
    pin = rel.ordering_pin()
    if pin is None or pin.git_sha == sha:
        return
    after = gitinfo.descends(rel.registry.runner, settings.root, pin.git_sha, sha)
    release.refuse_backwards(pin.git_sha, sha, after, outcome)


def _lap(clock: list[float]) -> float:
    now = time.perf_counter()
    spent, clock[0] = now - clock[0], now
    return spent


def _preflight(
    settings: Settings, runner: Runner, env: Mapping[str, str], options: PublishOptions
) -> tuple[mf.Manifest, dict[str, Any]]:
    """What must hold before anything is read from the registry: the verdict, a clean
    source, the target registry (the tarballs: :func:`_check_files`, once there is work)."""
    manifest_path = settings.dist_dir / "manifest.json"
    manifest = mf.load(manifest_path)
    manifest.check_complete(str(manifest_path))
    gate_doc = verdict.check_publishable(settings, manifest, manifest_path)
    staging.check_sources(settings, manifest, env)
    _check_source(manifest, options)
    mf.check_target(manifest, settings.registry)
    log.info(
        f"publishing {len(manifest.permutations)} permutation(s) of {manifest.git_sha[:12]} "
        f"to {settings.registry}"
    )
    return manifest, gate_doc


def _phase_two(
    rel: Releases,
    manifest: mf.Manifest,
    gate_doc: dict[str, Any],
    record: tuple[str, int],
    bindings: release.Bindings,
) -> dict[str, str]:
    """Floating tags, then check the release as users will pull it (tags, and the
    signature and attestation manifests still the verified ones), then the pin.
    ``record``: the stored record's digest and publish number."""
    record_digest, sequence = record
    new = replace(
        release.parse(
            release.build(manifest, gate_doc, bindings, bindings_policy=rel.checks.policy()),
            "new release",
        ),
        sequence=sequence,
    )
    with (
        log.group("phase 2: floating tags, verify, last-known-good"),
        locks.registry_lock(rel.settings.registry),
    ):
        # Again under the lock: another publish may have pinned a newer commit meanwhile.
        _check_forward(rel.settings, rel, manifest.git_sha, "no tag moved")
        moved = rel.move_tags(list(new.images))
        for tag, previous in moved.items():
            log.info(f"moved {tag}: {previous[:19]} → {manifest.digest_for_tag(tag)[:19]}")
        if not moved:
            log.info("floating tags already point at this release")
        problems = rel.verify_release(new, check_tags=True)
        if problems:
            undone = rel.restore(moved)
            raise PublishRefused(
                f"the new release does not verify ({len(problems)} problem(s): {problems[0]}) — "
                f"{release.LAST_KNOWN_GOOD} was NOT moved and the floating tags went back "
                f"({undone}); fix and re-run publish"
            )
        try:
            pinned = rel.set_pin(new, record_digest)
        except DcforgeError as err:
            note = " (the floating tags are on the new release; re-run publish to pin it)"
            raise err.adding(note) from None
        log.info(
            f"{release.LAST_KNOWN_GOOD} → {manifest.git_sha[:12]} "
            f"({'moved' if pinned else 'already'})"
        )
    return moved
