"""Publish stage: two-phase. Push by digest, sign, attest, store the signed release record;
only when all of that succeeded for every permutation move the floating tags and the
``last-known-good`` pointer. Idempotent: what the registry already has is skipped.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.table import Table

from dcforge import locks, log, provenance, release, signing, toolchain
from dcforge import manifest as mf
from dcforge.errors import DcforgeError, PublishRefused, ToolError
from dcforge.runner import Runner
from dcforge.settings import Settings
from dcforge.stages import gate
from dcforge.tools import cosign, registry

SBOM_TYPE = "spdxjson"
PROVENANCE_TYPE = "slsaprovenance1"


@dataclass
class Outcome:
    """What publish did (or found already done) for one permutation."""

    name: str
    digest: str
    steps: dict[str, str] = field(default_factory=dict)  # step → "done" | "already"


def _plain(settings: Settings, ref: str) -> bool:
    return settings.is_plain_http(ref)


def ensure_signer(settings: Settings, runner: Runner, env: Mapping[str, str]) -> cosign.Signer:
    """The configured signer; in local key mode, make a key pair on first use."""
    signer = signing.signer(settings, env)
    if signer.key and not env.get("COSIGN_KEY"):
        key = Path(signer.key)
        if env.get("CI"):
            raise PublishRefused(
                "CI is set and signing uses a key pair, but COSIGN_KEY is not set — in CI a "
                "freshly made key would sign this release with a key nobody can verify "
                "against; set COSIGN_KEY (and COSIGN_PASSWORD) from a secret, or sign keyless "
                "(DCFORGE_SIGNING=keyless)"
            )
        if not key.is_file():
            log.warn(
                f"no cosign key yet: making a LOCAL key pair in {key.parent} (git-ignored) — "
                "fine for this machine; CI must bring its own (COSIGN_KEY) or sign keyless"
            )
            cosign.generate_key_pair(runner, key.parent, signing.cosign_env(settings, env))
    elif signer.key and "://" not in signer.key and not Path(signer.key).is_file():
        raise PublishRefused(f"COSIGN_KEY={signer.key}: no such key file")
    return signer


def login_if_configured(settings: Settings, runner: Runner, env: Mapping[str, str]) -> None:
    """Log in with credentials from the environment (GHCR: GITHUB_TOKEN), never from files."""
    host = settings.registry.split("/", 1)[0]
    password = env.get("DCFORGE_REGISTRY_PASSWORD") or (
        env.get("GITHUB_TOKEN", "") if host == "ghcr.io" else ""
    )
    if not password or settings.is_plain_http(host):
        return
    username = env.get("DCFORGE_REGISTRY_USERNAME") or env.get("GITHUB_ACTOR") or "dcforge"
    registry.login(runner, host, username, password)


def _verified(fn: Any, *args: Any, **kwargs: Any) -> bool:
    try:
        fn(*args, **kwargs)
    except ToolError:
        return False
    return True


def _publish_one(
    settings: Settings,
    runner: Runner,
    env: Mapping[str, str],
    signer: cosign.Signer,
    manifest: mf.Manifest,
    entry: mf.Entry,
    repo_url: str,
    work: Path,
) -> Outcome:
    out = Outcome(entry.name, entry.image_digest)
    plain = _plain(settings, entry.repository)
    ref = f"{entry.repository}@{entry.image_digest}"
    immutable = f"{entry.repository}:{entry.immutable_tag}"
    cenv = signing.cosign_env(settings, env)
    # 1. push, byte for byte, and check the registry serves exactly the built digest
    if registry.digest_or_none(runner, immutable, plain_http=plain) == entry.image_digest:
        out.steps["push"] = "already"
    elif entry.reused:
        if registry.digest_or_none(runner, ref, plain_http=plain) != entry.image_digest:
            raise PublishRefused(f"{entry.name}: reused image {ref} is gone — rebuild it")
        registry.tag(runner, ref, [entry.immutable_tag], plain_http=plain)
        out.steps["push"] = "reused"
    else:
        tar = settings.dist_dir / entry.tarball
        registry.push_oci_archive(runner, tar, immutable, plain_http=plain)
        served = registry.resolve(runner, immutable, plain_http=plain)
        if served != entry.image_digest:
            raise PublishRefused(
                f"{entry.name}: the registry serves {served} for {immutable}, the manifest "
                f"says {entry.image_digest} — stopped before signing"
            )
        out.steps["push"] = "done"
    log.step(entry.name, f"push {out.steps['push']} {entry.image_digest[:19]}")
    # 2. sign by digest (no signature tag at all: nothing to verify, sign straight away)
    sig_tag = f"{entry.repository}:sha256-{entry.image_digest[7:]}"
    has_sig = registry.digest_or_none(runner, f"{sig_tag}.sig", plain_http=plain) is not None
    has_att = registry.digest_or_none(runner, f"{sig_tag}.att", plain_http=plain) is not None
    if has_sig and _verified(cosign.verify, runner, signer, ref, plain_http=plain):
        out.steps["sign"] = "already"
    else:
        cosign.sign(runner, signer, ref, plain_http=plain, env=cenv)
        out.steps["sign"] = "done"
    # 3. attest the SBOM the gate made, and SLSA v1 provenance from the manifest
    sbom = settings.dist_dir / "reports" / f"{entry.name}.spdx.json"
    if not sbom.is_file():
        raise PublishRefused(f"{entry.name}: no SBOM at {sbom} — re-run the gate")
    pred = work / f"{entry.name}.provenance.json"
    pred.write_text(json.dumps(provenance.predicate(manifest, entry, env, repo_url), indent=2))
    for step, ptype, predicate in (
        ("sbom", SBOM_TYPE, sbom),
        ("provenance", PROVENANCE_TYPE, pred),
    ):
        if has_att and _verified(
            cosign.verify_attestation, runner, signer, ref, ptype, plain_http=plain
        ):
            out.steps[step] = "already"
        else:
            cosign.attest(runner, signer, ref, predicate, ptype, plain_http=plain, env=cenv)
            out.steps[step] = "done"
    log.step(
        entry.name,
        "signed, SBOM and provenance attested "
        f"({', '.join(f'{k} {v}' for k, v in out.steps.items())})",
    )
    return out


def _store_release(
    settings: Settings,
    runner: Runner,
    env: Mapping[str, str],
    signer: cosign.Signer,
    manifest: mf.Manifest,
    gate_doc: dict[str, Any],
    work: Path,
) -> tuple[str, str]:
    """Push (or find) the release record at ``dcforge-releases:<git sha>`` and sign it."""
    repo = release.repository(settings.registry)
    plain = _plain(settings, repo)
    body = release.encode(release.build(manifest, gate_doc))
    reference = f"{repo}:{manifest.git_sha}"
    existing = registry.digest_or_none(runner, reference, plain_http=plain)
    state = "done"
    digest = ""
    if existing is not None:
        fetched = registry.fetch_artifact(runner, reference, work / "existing", plain_http=plain)
        current = fetched / release.FILE_NAME
        if current.is_file() and current.read_bytes() == body:
            digest, state = existing, "already"
    if not digest:
        (work / release.FILE_NAME).write_bytes(body)
        digest = registry.push_artifact(
            runner,
            reference,
            work,
            release.FILE_NAME,
            artifact_type=release.ARTIFACT_TYPE,
            annotations={
                "org.opencontainers.image.created": manifest.created_at,
                "org.opencontainers.image.revision": manifest.git_sha,
                "dev.dcforge.permutations": ",".join(e.name for e in manifest.permutations),
            },
            plain_http=plain,
        )
    ref = f"{repo}@{digest}"
    if not _verified(cosign.verify, runner, signer, ref, plain_http=plain):
        cosign.sign(runner, signer, ref, plain_http=plain, env=signing.cosign_env(settings, env))
    log.info(f"release record {reference} {digest[:19]} ({state})")
    return reference, digest


def move_tags(settings: Settings, runner: Runner, images: list[release.Image]) -> dict[str, str]:
    """Phase 2: point every floating tag at its image's digest; returns tag → previous.

    All or nothing: the plan is read first; if a move fails, the tags already moved are put
    back to their previous digests (retried like every registry call) before the error is
    raised, so the registry shows the old release or the new one, never a mix.
    """
    plan: list[tuple[release.Image, list[str]]] = []
    moved: dict[str, str] = {}
    for image in images:
        plain = _plain(settings, image.repository)
        todo = []
        for tag in image.floating_tags:
            current = registry.digest_or_none(runner, f"{image.repository}:{tag}", plain_http=plain)
            if current != image.digest:
                todo.append(tag)
                moved[f"{image.repository}:{tag}"] = current or "(none)"
        if todo:
            plan.append((image, todo))
    done: list[tuple[release.Image, list[str]]] = []
    try:
        for image, todo in plan:
            registry.tag(runner, image.ref(), todo, plain_http=_plain(settings, image.repository))
            done.append((image, todo))
    except DcforgeError as err:
        undone = _put_back(settings, runner, done, moved)
        raise DcforgeError(
            f"moving floating tags failed ({err}); {undone} — re-run to complete"
        ) from None
    for image in images:
        plain = _plain(settings, image.repository)
        for tag in image.floating_tags:
            served = registry.resolve(runner, f"{image.repository}:{tag}", plain_http=plain)
            if served != image.digest:
                raise DcforgeError(
                    f"{image.repository}:{tag} serves {served}, expected {image.digest}"
                )
    return moved


def _put_back(
    settings: Settings,
    runner: Runner,
    done: list[tuple[release.Image, list[str]]],
    previous: dict[str, str],
) -> str:
    """Undo tag moves already made; returns what the registry is left showing."""
    failed = []
    restored = 0
    for image, todo in done:
        plain = _plain(settings, image.repository)
        for tag in todo:
            old = previous[f"{image.repository}:{tag}"]
            if old == "(none)":
                failed.append(f"{image.repository}:{tag} (new tag; no earlier digest)")
                continue
            try:
                registry.tag(runner, f"{image.repository}@{old}", [tag], plain_http=plain)
                restored += 1
            except DcforgeError:
                failed.append(f"{image.repository}:{tag}")
    if failed:
        return f"could not put back {', '.join(failed)}"
    return f"the previous release is in place ({restored} tag(s) put back)"


def set_pointer(settings: Settings, runner: Runner, record_digest: str, tag: str) -> bool:
    repo = release.repository(settings.registry)
    plain = _plain(settings, repo)
    if registry.digest_or_none(runner, f"{repo}:{tag}", plain_http=plain) == record_digest:
        return False
    registry.tag(runner, f"{repo}@{record_digest}", [tag], plain_http=plain)
    return True


def _repo_url(settings: Settings, runner: Runner, env: Mapping[str, str]) -> str:
    result = runner.run(
        ["git", "-C", settings.root, "remote", "get-url", "origin"],
        timeout=30,
        mutates=False,
        check=False,
    )
    return provenance.source_repository(env, result.stdout.strip() or f"file://{settings.root}")


def run(settings: Settings, runner: Runner, env: Mapping[str, str]) -> dict[str, Any]:
    manifest_path = settings.dist_dir / "manifest.json"
    manifest = mf.load(manifest_path)
    gate_doc = gate.check_publishable(settings, manifest, manifest_path)
    mf.verify_tarballs(manifest, settings.dist_dir)
    if manifest.registry != settings.registry:
        raise PublishRefused(
            f"the manifest was built for {manifest.registry}, the target is {settings.registry} — "
            "rebuild for this registry (tags are part of what was gated)"
        )
    log.info(
        f"publishing {len(manifest.permutations)} permutation(s) of {manifest.git_sha[:12]} "
        f"to {settings.registry}"
    )
    try:
        toolchain.check(runner, "cosign")
    except ToolError as err:
        raise PublishRefused(f"publish signs only with the pinned cosign: {err}") from None
    login_if_configured(settings, runner, env)
    signer = ensure_signer(settings, runner, env)
    repo_url = _repo_url(settings, runner, env)
    with tempfile.TemporaryDirectory(prefix="dcforge-publish-") as tmp:
        work = Path(tmp)
        # Pushing and signing wait on the network and on cosign more than on the CPU.
        workers = max(4, 2 * settings.effective_jobs)
        with (
            log.group("phase 1: push, sign, attest"),
            ThreadPoolExecutor(workers) as pool,
        ):
            outcomes = list(
                pool.map(
                    lambda e: _publish_one(
                        settings, runner, env, signer, manifest, e, repo_url, work
                    ),
                    manifest.permutations,
                )
            )
        with log.group("release record"):
            reference, record_digest = _store_release(
                settings, runner, env, signer, manifest, gate_doc, work
            )
    with (
        log.group("phase 2: floating tags, last-known-good"),
        locks.registry_lock(settings.registry),
    ):
        images = release.parse(release.build(manifest, gate_doc), "new release").images
        moved = move_tags(settings, runner, list(images))
        for tag, previous in moved.items():
            log.info(f"moved {tag}: {previous[:19]} → {manifest.entry_for_tag(tag)[:19]}")
        if not moved:
            log.info("floating tags already point at this release")
        pointer = set_pointer(settings, runner, record_digest, release.LAST_KNOWN_GOOD)
        log.info(
            f"{release.LAST_KNOWN_GOOD} → {manifest.git_sha[:12]} "
            f"({'moved' if pointer else 'already'})"
        )
    _summary(manifest, outcomes, gate_doc)
    return {
        "release": reference,
        "record_digest": record_digest,
        "outcomes": {o.name: o.steps for o in outcomes},
        "moved": moved,
    }


def _summary(manifest: mf.Manifest, outcomes: list[Outcome], gate_doc: dict[str, Any]) -> None:
    counts = {v["name"]: v.get("counts", {}) for v in gate_doc.get("permutations", [])}
    table = Table(
        title=f"published {manifest.git_sha[:12]}"
        + (" (SAMPLE vulnerability data)" if gate_doc.get("sample_db") else "")
    )
    for col in ("permutation", "digest", "vulnerabilities", "signed", "attested", "tags"):
        table.add_column(col)
    for o in outcomes:
        entry = manifest.entry(o.name)
        c = counts.get(o.name, {})
        vulns = ", ".join(f"{k} {v}" for k, v in sorted(c.items())) or "none found"
        table.add_row(
            o.name,
            o.digest[:19],
            vulns,
            o.steps.get("sign", ""),
            f"sbom {o.steps.get('sbom')}, slsa {o.steps.get('provenance')}",
            ", ".join(entry.floating_tags) + " + immutable",
        )
    log.table(table)
