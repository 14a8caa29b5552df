"""Gate stage: verify, scan (Trivy) and SBOM (syft) every permutation, decide, report.

Writes ``dist/gate.json`` (the verdict bound to each tarball's sha256, the manifest, the
Trivy version, the DB's UpdatedAt and the policy) and ``dist/reports/``. Every failure
path blocks; none reports "no vulnerabilities".
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path
from typing import Any

from dcforge import log, policy, reports, trivydb
from dcforge import manifest as mf
from dcforge.errors import DcforgeError, GateBlocked, PublishRefused, ToolError
from dcforge.files import atomic_write_bytes, atomic_write_json
from dcforge.hashing import file_sha256
from dcforge.runner import Runner
from dcforge.settings import Settings
from dcforge.tools import buildx, registry, syft, trivy

GATE_SCHEMA_VERSION = 1
SAMPLE_REPOSITORY = "dcforge-sample/trivy-db:2"


@dataclass(frozen=True)
class GateOptions:
    self_test: bool = False
    now: dt.datetime | None = None  # injectable clock (DB age, waiver expiry)


@dataclass(frozen=True)
class Db:
    options: trivy.ScanOptions
    repository: str
    updated_at: str
    sample: bool
    problem: str  # non-empty: every verdict blocks with it


def current_policy(settings: Settings) -> policy.Policy:
    return policy.Policy.parse(settings.blocking_severities, settings.max_db_age_hours)


def waivers_path(settings: Settings) -> Path:
    return settings.root / settings.waivers


def policy_json(settings: Settings) -> dict[str, Any]:
    """The policy a verdict is bound to: severities, DB age, and the waivers file's hash."""
    path = waivers_path(settings)
    digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else ""
    return {**current_policy(settings).to_json(), "waivers_sha256": digest}


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-")[:60] or "default"


def _scan_options(settings: Settings, repository: str) -> trivy.ScanOptions:
    config = settings.root / "trivy.yaml"
    return trivy.ScanOptions(
        # One cache per DB source, so a sample DB can never stand in for a real one.
        cache_dir=settings.state_path / "trivy-cache" / _slug(repository or "default"),
        db_repository=repository,
        insecure=bool(repository) and settings.is_plain_http(repository),
        skip_db_update=True,
        config=config if config.is_file() else None,
        timeout=settings.scan_timeout,
    )


def push_sample_db(settings: Settings, runner: Runner, work: Path) -> str:
    """Write the bundled sample DB and serve it from the local registry; returns its ref."""
    host = settings.registry.split("/", 1)[0]
    return publish_db(
        runner,
        work,
        f"{host}/{SAMPLE_REPOSITORY}",
        trivydb.SAMPLE_ADVISORIES,
        plain_http=settings.is_plain_http(host),
        sample=True,
    )


def publish_db(
    runner: Runner,
    work: Path,
    repository: str,
    advisories: Sequence[trivydb.Advisory],
    *,
    plain_http: bool,
    updated_at: dt.datetime | None = None,
    sample: bool = False,
) -> str:
    """Write a Trivy DB from ``advisories`` and serve it at ``repository`` as Trivy expects."""
    db_dir = trivydb.write_db(work / "db", advisories, updated_at=updated_at, sample=sample)
    trivydb.pack(db_dir, work / "db.tar.gz")
    registry.push_artifact(
        runner,
        repository,
        work,
        "db.tar.gz",
        artifact_type=trivydb.DB_ARTIFACT_TYPE,
        media_type=trivydb.DB_MEDIA_TYPE,
        annotations={},
        plain_http=plain_http,
    )
    return repository


def prepare_db(settings: Settings, runner: Runner, work: Path, now: dt.datetime) -> Db:
    """Download the DB once; fall back to the sample DB only for a local registry."""
    repository = settings.trivy_db_repository
    options = _scan_options(settings, repository)
    sample = False
    runner.which("trivy")  # a missing scanner is an error, never a reason to use sample data
    try:
        trivy.download_db(runner, replace(options, skip_db_update=False))
    except ToolError as err:
        local = settings.is_plain_http(settings.registry)
        if repository or not local:
            where = repository or "Trivy's default repositories"
            return Db(
                options,
                where,
                "",
                False,
                f"the Trivy DB could not be downloaded from {where} ({err}) — check the "
                "network or mirror it: invoke trivy-db-mirror --to REGISTRY/REPO",
            )
        log.warn(
            "the public Trivy DB is unreachable and the target is the local registry: using the "
            "bundled SAMPLE DB — this is NOT a real vulnerability scan"
        )
        repository = push_sample_db(settings, runner, work)
        options = _scan_options(settings, repository)
        shutil.rmtree(options.cache_dir, ignore_errors=True)
        try:
            trivy.download_db(runner, replace(options, skip_db_update=False))
        except ToolError as err2:
            return Db(options, repository, "", True, f"the sample Trivy DB failed to load ({err2})")
        sample = True
    metadata = trivy.db_metadata(options.cache_dir)
    problem = policy.db_age_problem(metadata, now, current_policy(settings))
    updated = str((metadata or {}).get("UpdatedAt", ""))
    return Db(options, repository or "default", updated, sample, problem)


def _scan_one(
    settings: Settings,
    runner: Runner,
    entry: mf.Entry,
    db: Db,
    reports_dir: Path,
    pol: policy.Policy,
    waivers: Sequence[policy.Waiver],
    today: dt.date,
) -> policy.Verdict:
    name = entry.name
    if entry.reused:
        return _scan_remote(settings, runner, entry, db, reports_dir, pol, waivers, today)
    tar = settings.dist_dir / entry.tarball
    problems: list[str] = []
    if not tar.is_file():
        problems.append(f"tarball {tar} is missing — rebuild")
    elif (actual := file_sha256(tar)) != entry.tarball_sha256:
        problems.append(
            f"tarball checksum mismatch: {entry.tarball} is {actual[:16]}…, the manifest says "
            f"{entry.tarball_sha256[:16]}… — rebuild; a changed tarball is never scanned"
        )
    if problems or db.problem:
        return policy.decide(
            name,
            report=None,
            sbom_packages=None,
            policy=pol,
            waivers=waivers,
            today=today,
            problems=problems + [db.problem] * bool(db.problem),
        )
    report = None
    sbom_count = None
    with tempfile.TemporaryDirectory(prefix=f"dcforge-gate-{name}-") as tmp:
        try:
            archived = buildx.oci_archive_digest(tar)
            if archived != entry.image_digest:
                problems.append(
                    f"the tarball holds {archived}, the manifest says {entry.image_digest}"
                )
            layout = trivy.unpack_oci_archive(tar, Path(tmp) / "layout")
            report = trivy.scan(runner, layout, reports_dir / f"{name}.trivy.json", db.options)
            log.step(name, "scanned")
        except DcforgeError as err:
            problems.append(f"the vulnerability scan failed: {err}")
    try:
        doc = syft.sbom(
            runner, tar, reports_dir / f"{name}.spdx.json", reports_dir / f"{name}.cdx.json"
        )
        sbom_count = len(syft.package_names(doc))
        log.step(name, f"SBOM: {sbom_count} packages")
    except DcforgeError as err:
        problems.append(f"SBOM generation failed: {err}")
    return _decide(name, report, sbom_count, problems, pol, waivers, today)


def _decide(
    name: str,
    report: Any | None,
    sbom_count: int | None,
    problems: list[str],
    pol: policy.Policy,
    waivers: Sequence[policy.Waiver],
    today: dt.date,
) -> policy.Verdict:
    verdict = policy.decide(
        name,
        report=report,
        sbom_packages=sbom_count,
        policy=pol,
        waivers=waivers,
        today=today,
        problems=problems,
    )
    log.step(name, "pass" if verdict.passed else f"BLOCKED: {'; '.join(verdict.reasons)}")
    return verdict


def _scan_remote(
    settings: Settings,
    runner: Runner,
    entry: mf.Entry,
    db: Db,
    reports_dir: Path,
    pol: policy.Policy,
    waivers: Sequence[policy.Waiver],
    today: dt.date,
) -> policy.Verdict:
    """A reused image is re-scanned from the registry by digest with today's DB."""
    name = entry.name
    ref = f"{entry.repository}@{entry.image_digest}"
    plain = settings.is_plain_http(ref)
    problems = [db.problem] if db.problem else []
    report = None
    sbom_count = None
    if not problems:
        try:
            report = trivy.scan_remote(
                runner, ref, reports_dir / f"{name}.trivy.json", db.options, plain_http=plain
            )
            log.step(name, f"re-scanned from the registry ({ref[-19:]})")
        except DcforgeError as err:
            problems.append(f"the vulnerability scan failed: {err}")
        try:
            doc = syft.sbom_remote(
                runner,
                ref,
                reports_dir / f"{name}.spdx.json",
                reports_dir / f"{name}.cdx.json",
                plain_http=plain,
            )
            sbom_count = len(syft.package_names(doc))
        except DcforgeError as err:
            problems.append(f"SBOM generation failed: {err}")
    return _decide(name, report, sbom_count, problems, pol, waivers, today)


def run(
    settings: Settings, runner: Runner, env: Mapping[str, str], options: GateOptions
) -> dict[str, Any]:
    """Gate ``dist/manifest.json``; raises GateBlocked unless every permutation passes."""
    now = options.now or dt.datetime.now(dt.UTC)
    if options.self_test:
        return self_test(settings, runner, now)
    manifest_path = settings.dist_dir / "manifest.json"
    manifest = mf.load(manifest_path)
    pol = current_policy(settings)
    waivers = policy.load_waivers(waivers_path(settings))
    reports_dir = settings.dist_dir / "reports"
    reports_dir.mkdir(parents=True, exist_ok=True)
    gate_path = settings.dist_dir / "gate.json"
    gate_path.unlink(missing_ok=True)  # never leave an old verdict behind a failed gate
    with tempfile.TemporaryDirectory(prefix="dcforge-db-") as tmp, log.group("vulnerability DB"):
        db = prepare_db(settings, runner, Path(tmp), now)
    if db.problem:
        log.error(db.problem)
    else:
        log.info(f"Trivy DB {db.repository}, updated {db.updated_at}{' (SAMPLE DATA)' * db.sample}")
    jobs = settings.effective_jobs
    with (
        log.group(f"gate {len(manifest.permutations)} permutation(s)"),
        ThreadPoolExecutor(jobs) as pool,
    ):
        verdicts = list(
            pool.map(
                lambda e: _scan_one(settings, runner, e, db, reports_dir, pol, waivers, now.date()),
                manifest.permutations,
            )
        )
    meta = {
        "git_sha": manifest.git_sha,
        "trivy_version": trivy.version(runner),
        "syft_version": syft.version(runner),
        "db_repository": db.repository,
        "db_updated_at": db.updated_at,
        "sample_db": db.sample,
        "blocking_severities": list(pol.blocking),
    }
    passed = all(v.passed for v in verdicts)
    doc = {
        "schema_version": GATE_SCHEMA_VERSION,
        "created_at": now.isoformat(timespec="seconds").replace("+00:00", "Z"),
        "manifest_sha256": file_sha256(manifest_path),
        "passed": passed,
        **meta,
        "policy": policy_json(settings),
        "permutations": [
            {**v.to_json(), "tarball_sha256": e.tarball_sha256, "image_digest": e.image_digest}
            for v, e in zip(verdicts, manifest.permutations, strict=True)
        ],
    }
    summary = reports.markdown(verdicts, meta)
    atomic_write_bytes(reports_dir / "summary.md", summary.encode())
    sources = {e.name: f"permutations/{e.family}.yaml" for e in manifest.permutations}
    atomic_write_json(reports_dir / "gate.sarif", reports.sarif(verdicts, sources, meta))
    atomic_write_json(gate_path, doc)
    if env.get("GITHUB_STEP_SUMMARY"):
        with open(env["GITHUB_STEP_SUMMARY"], "a", encoding="utf-8") as fh:
            fh.write(summary)
    if db.sample:
        log.warn("SAMPLE vulnerability data: this gate is a demonstration, not a real scan")
    if not passed:
        blocked = [v for v in verdicts if not v.passed]
        detail = "; ".join(f"{v.name}: {', '.join(v.reasons)}" for v in blocked)
        raise GateBlocked(f"{len(blocked)} of {len(verdicts)} permutation(s) blocked — {detail}")
    log.info(f"gate passed: {len(verdicts)} permutation(s); verdict in {gate_path}")
    return doc


def self_test(settings: Settings, runner: Runner, now: dt.datetime) -> dict[str, Any]:
    """Prove DB → Trivy → policy blocks a planted vulnerable package (the canary)."""
    pol = current_policy(settings)
    with tempfile.TemporaryDirectory(prefix="dcforge-canary-") as tmp:
        work = Path(tmp)
        context = work / "canary"
        shutil.copytree(Path(str(resources.files("dcforge.resources") / "canary")), context)
        tar = work / "canary.tar"
        runner.run(
            [
                "docker",
                "buildx",
                "build",
                "-q",
                "--provenance=false",
                "--output",
                f"type=oci,dest={tar}",
                context,
            ],
            timeout=300,
        )
        db = prepare_db(settings, runner, work, now)
        if db.problem:
            raise GateBlocked(f"gate self-test could not run: {db.problem}")
        layout = trivy.unpack_oci_archive(tar, work / "layout")
        report = trivy.scan(runner, layout, work / "canary.trivy.json", db.options)
    verdict = policy.decide(
        "canary", report=report, sbom_packages=1, policy=pol, waivers=(), today=now.date()
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


def check_publishable(
    settings: Settings, manifest: mf.Manifest, manifest_path: Path
) -> dict[str, Any]:
    """Refuse unless dist/gate.json passed this exact manifest, tarballs and policy."""
    gate_path = settings.dist_dir / "gate.json"
    try:
        doc = json.loads(gate_path.read_text())
    except (OSError, ValueError):
        raise PublishRefused(f"{gate_path}: no readable gate verdict — run 'nox -s gate'") from None
    if not isinstance(doc, dict) or doc.get("schema_version") != GATE_SCHEMA_VERSION:
        raise PublishRefused(
            f"{gate_path}: not a gate verdict this dcforge reads — re-run the gate"
        )
    if not doc.get("passed"):
        raise PublishRefused(f"{gate_path}: the gate blocked this manifest")
    if doc.get("manifest_sha256") != file_sha256(manifest_path):
        raise PublishRefused("manifest.json changed after it was gated — re-run the gate")
    if doc.get("policy") != policy_json(settings):
        raise PublishRefused(
            "the gate policy or waivers changed since the gate ran — re-run the gate"
        )
    verdicts = {v.get("name"): v for v in doc.get("permutations", []) if isinstance(v, dict)}
    for entry in manifest.permutations:
        v = verdicts.get(entry.name)
        if v is None or not v.get("passed"):
            raise PublishRefused(f"{entry.name}: no passing gate verdict — re-run the gate")
        if (
            v.get("tarball_sha256") != entry.tarball_sha256
            or v.get("image_digest") != entry.image_digest
        ):
            raise PublishRefused(
                f"{entry.name}: the gate verdict is for another tarball — re-run the gate"
            )
    return doc
