"""The vulnerability DB the gate, the rescan and ``invoke trivy`` scan with.

:func:`prepare_db` resolves the configured DB repository (or Trivy's defaults) to a digest,
downloads exactly that once per digest, and judges it — its age, a digest pin, sample data,
a local DB gating a remote registry, its platforms. Whatever is wrong is the DB's
``problem``: every verdict made with it blocks. The bundled sample DB is served from the
local registry only for a loopback target with no DB repository configured.
"""

from __future__ import annotations

import datetime as dt
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from dcforge.core import policy, registry_advice, trivydb
from dcforge.core.errors import DcforgeError
from dcforge.core.refs import at_digest
from dcforge.core.settings import Settings, is_loopback
from dcforge.core.verdict import trivy_config_path
from dcforge.infra import log
from dcforge.infra.tools import trivy
from dcforge.infra.tools.registry import Registry

SAMPLE_REPOSITORY = "dcforge-sample/trivy-db:2"
# Where Trivy itself looks when no DB repository is configured, in its order.
TRIVY_DEFAULT_DB_REPOSITORIES = (
    "mirror.gcr.io/aquasec/trivy-db:2",
    "ghcr.io/aquasecurity/trivy-db:2",
)
MIRROR_HINT = "or mirror the DB: invoke trivy-db-mirror --to REGISTRY/REPO"


@dataclass(frozen=True)
class TrivyDb:
    """The vulnerability DB a gate scans with, identified by the digest Trivy downloaded."""

    options: trivy.ScanOptions
    repository: str
    digest: str
    updated_at: str
    sample: bool
    problem: str  # non-empty: every verdict blocks with it
    # the DB's top-level buckets (``debian 12`` …): an OS with none has no advisories
    platforms: frozenset[str] = frozenset()


def _scan_options(settings: Settings, reg: Registry, db_ref: str, digest: str) -> trivy.ScanOptions:
    """How Trivy scans with the DB ``db_ref`` (``digest``): from its own cache, no update."""
    config = trivy_config_path(settings)
    return trivy.ScanOptions(
        # One cache per DB digest: a DB never stands in for another, a new one is downloaded.
        cache_dir=settings.state_root / "trivy-cache" / digest.removeprefix("sha256:")[:24],
        db_repository=db_ref,
        insecure=reg.plain(db_ref),
        skip_db_update=True,
        config=config if config.is_file() else None,
        timeout=settings.scan_timeout,
        skip_dirs=settings.gate_policy.skip_dirs,
    )


def push_sample_db(settings: Settings, reg: Registry, work: Path) -> str:
    """Serve the bundled sample DB from the local registry; returns its ref."""
    host = settings.registry.split("/", 1)[0]
    return push_db_dir(reg, work, f"{host}/{SAMPLE_REPOSITORY}", trivydb.sample_db(work / "db"))


def publish_db(
    reg: Registry,
    work: Path,
    repository: str,
    advisories: Sequence[trivydb.Advisory],
    *,
    updated_at: dt.datetime | None = None,
    sample: bool = False,
) -> str:
    """Write a Trivy DB from ``advisories`` and serve it at ``repository`` as Trivy expects
    (tests and mirrors of made-up data; needs the ``boltdb`` test dependency)."""
    db_dir = trivydb.write_db(work / "db", advisories, updated_at=updated_at, sample=sample)
    return push_db_dir(reg, work, repository, db_dir)


def push_db_dir(reg: Registry, work: Path, repository: str, db_dir: Path) -> str:
    """Serve the DB in ``db_dir`` (trivy.db + metadata.json) at ``repository``."""
    sample = (db_dir / trivydb.SAMPLE_MARKER_FILE).exists()
    trivydb.pack(db_dir, work / "db.tar.gz")
    reg.push_artifact(
        repository,
        work,
        "db.tar.gz",
        artifact_type=trivydb.DB_ARTIFACT_TYPE,
        media_type=trivydb.DB_MEDIA_TYPE,
        annotations={trivydb.SAMPLE_ANNOTATION: "true"} if sample else {},
    )
    return repository


def _unusable(
    settings: Settings, reg: Registry, where: str, problem: str, sample: bool = False
) -> TrivyDb:
    options = _scan_options(settings, reg, where, "sha256:none")
    return TrivyDb(options, where, "", "", sample, problem)


def prepare_db(settings: Settings, reg: Registry, work: Path, now: dt.datetime) -> TrivyDb:
    """Resolve the DB to a digest and download exactly that; the sample DB only for a
    loopback registry with no DB repository configured."""
    reg.runner.which("trivy")  # a missing scanner is an error, never a reason to use sample data
    configured = settings.trivy_db_repository
    failures: list[tuple[str, DcforgeError]] = []
    for repository in [configured] if configured else TRIVY_DEFAULT_DB_REPOSITORIES:
        try:
            return _load_db(settings, reg, repository, now)
        except DcforgeError as err:
            failures.append((repository, err))
    if configured or not is_loopback(settings.registry):
        where = configured or "Trivy's default repositories"
        return _unusable(settings, reg, where, fetch_problem(configured, failures))
    log.warn(
        "the public Trivy DB is unreachable and the target is a loopback registry: using the "
        "bundled SAMPLE DB — this is NOT a real vulnerability scan"
    )
    repository = push_sample_db(settings, reg, work)
    try:
        return _load_db(settings, reg, repository, now)
    except DcforgeError as err:
        problem = f"the sample Trivy DB failed to load ({err})"
        return _unusable(settings, reg, repository, problem, sample=True)


def fetch_problem(configured: str, failures: Sequence[tuple[str, DcforgeError]]) -> str:
    """One line for a DB none of the repositories in ``failures`` served: what each one's
    tool said, then the advice those words call for, once per cause — not the registry
    client's "is the registry up?", which a host name that does not resolve or a wrong
    tag contradicts. Trivy's own repositories are out of our hands: mirror them."""
    said = [(repository, *_tool_words(err)) for repository, err in failures]
    tried = "; ".join(words if configured else f"{r}: {words}" for r, words, _ in said)
    hints: dict[str, str] = {}  # cause → the advice for the first repository it stopped
    for repository, words, details in said:
        cause = registry_advice.cause(f"{words} {details}")
        hints.setdefault(cause, registry_advice.advice(f"{words} {details}", repository))
    where = configured or "Trivy's default repositories"
    advice = "; ".join([*hints.values(), *([] if configured else [MIRROR_HINT])])
    return f"the Trivy DB could not be downloaded from {where} ({tried}) — {advice}"


def _tool_words(err: DcforgeError) -> tuple[str, str]:
    """(the failing tool's one line, its output's tail): the tool's own words, without the
    advice a caller added for another cause."""
    root = err.__cause__ if isinstance(err.__cause__, DcforgeError) else err
    return str(root), root.details


def _load_db(settings: Settings, reg: Registry, repository: str, now: dt.datetime) -> TrivyDb:
    """Download the DB ``repository`` serves, by digest; judge its identity and age."""
    pol = settings.gate_policy
    digest = reg.resolve(repository)
    db_ref = at_digest(repository, digest)
    options = _scan_options(settings, reg, db_ref, digest)
    stamp = options.cache_dir / "dcforge-digest"
    if not stamp.is_file() or stamp.read_text() != digest:
        shutil.rmtree(options.cache_dir, ignore_errors=True)
        trivy.download_db(reg.runner, replace(options, skip_db_update=False))
        if (options.cache_dir / "db" / "metadata.json").is_file():
            stamp.write_text(digest)
    metadata = trivy.db_metadata(options.cache_dir)
    annotations = reg.manifest(db_ref).get("annotations")
    sample = (
        (options.cache_dir / "db" / trivydb.SAMPLE_MARKER_FILE).exists()
        or bool((metadata or {}).get("DcforgeSample"))
        or (isinstance(annotations, dict) and trivydb.SAMPLE_ANNOTATION in annotations)
    )
    problems = [policy.db_age_problem(metadata, now, pol)]
    if pol.db_digest and digest != pol.db_digest:
        problems.append(
            f"the Trivy DB at {repository} is {digest}, but trivy_db_digest pins "
            f"{pol.db_digest} — update the pin or the mirror"
        )
    local_db = not sample and is_loopback(repository) and not pol.db_digest
    if local_db and not is_loopback(settings.registry):
        problems.append(
            f"the Trivy DB is served from this machine ({repository}) but the target is "
            f"{settings.registry}: a DB made or copied locally gates a remote registry only "
            "when pinned by digest (trivy_db_digest) — or serve your mirror from a real host"
        )
    if sample and not is_loopback(settings.registry):
        problems.append(
            f"the Trivy DB at {repository} is dcforge's SAMPLE data (made-up advisories): it "
            f"may gate only a loopback demo registry, never {settings.registry}"
        )
    updated = str((metadata or {}).get("UpdatedAt", ""))
    platforms, unreadable = _db_platforms(options.cache_dir / "db" / "trivy.db", repository)
    problems.append(unreadable)
    return TrivyDb(
        options,
        repository,
        digest,
        updated,
        sample,
        "; ".join(p for p in problems if p),
        platforms,
    )


def _db_platforms(db_file: Path, repository: str) -> tuple[frozenset[str], str]:
    """(the DB's platform buckets, "" or why they could not be read: that blocks)."""
    try:
        return trivydb.platforms(db_file), ""
    except (OSError, trivydb.DbFormatError) as err:
        return frozenset(), f"the Trivy DB at {repository} cannot be read for its platforms ({err})"
