"""Registry retention and workflow-artifact cleanup, behind one backend interface.

Backends: the generic OCI distribution API (tags, manifests, DELETE by digest, through
oras) and GHCR through the GitHub Packages REST API. Both list versions, read manifests
over the registry protocol to learn index children and ages, and delete one version at a
time in the planner's order. Nothing is deleted without ``--yes``; a failure half-way
stops and reports exactly what was and was not deleted.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from dcforge.core import release
from dcforge.core import retention_plan as rp
from dcforge.core.errors import ConfigError, DcforgeError, RegistryError, ToolError, VerifyFailed
from dcforge.core.settings import Settings
from dcforge.infra import locks, log
from dcforge.infra.context import Context
from dcforge.infra.release_store import Releases
from dcforge.infra.tools import github
from dcforge.infra.tools.registry import Registry

INDEX_TYPES = (
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
)


class RetentionIncomplete(DcforgeError):
    exit_code = 11
    kind = "retention incomplete"


def _parse_time(raw: str) -> dt.datetime | None:
    try:
        value = dt.datetime.fromisoformat(raw.replace("Z", "+00:00")[:25].rstrip("."))
    except ValueError:
        try:
            value = dt.datetime.fromisoformat(raw[:19])
        except ValueError:
            return None
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


class Backend(Protocol):
    name: str

    def repositories(self) -> list[str]: ...
    def list_versions(
        self, repository: str
    ) -> list[tuple[str, tuple[str, ...], dt.datetime | None]]: ...
    def delete(self, version: rp.Version) -> None: ...


class OciBackend:
    """The generic distribution API (tested against the real local registry)."""

    name = "oci"

    def __init__(self, settings: Settings, reg: Registry) -> None:
        self.settings, self.registry = settings, reg

    def repositories(self) -> list[str]:
        return self.registry.repositories(self.settings.registry)

    def list_versions(
        self, repository: str
    ) -> list[tuple[str, tuple[str, ...], dt.datetime | None]]:
        by_digest: dict[str, list[str]] = {}
        for tag in self.registry.tags(repository):
            digest = self.registry.digest_or_none(f"{repository}:{tag}")
            if digest:
                by_digest.setdefault(digest, []).append(tag)
        return [(d, tuple(sorted(tags)), None) for d, tags in by_digest.items()]

    def delete(self, version: rp.Version) -> None:
        self.registry.delete(f"{version.repository}@{version.digest}")


class GhcrBackend:
    """GHCR through the GitHub Packages REST API (versions, created_at, delete)."""

    name = "ghcr"

    def __init__(self, settings: Settings, client: github.GitHub) -> None:
        host, _, path = settings.registry.partition("/")
        self.owner, _, self.namespace = path.partition("/")
        if not self.namespace:
            raise ConfigError(
                f"retention on GHCR needs a namespace under the owner ({settings.registry}/"
                "<name>): without one every container package of "
                f"{self.owner or 'the owner'} would be retention's to delete"
            )
        self.registry_root = f"{host}/{self.owner}"
        self.client = client
        self.kind = client.owner_kind(self.owner)
        self._ids: dict[rp.Key, int] = {}

    def package(self, repository: str) -> str:
        return repository.removeprefix(self.registry_root + "/")

    def repositories(self) -> list[str]:
        """The owner's container packages under the registry's namespace (GHCR does not
        implement the registry's /v2/_catalog; the Packages API lists them)."""
        prefix = f"{self.namespace}/" if self.namespace else ""
        names = self.client.container_packages(self.kind, self.owner)
        return sorted(f"{self.registry_root}/{n}" for n in names if n.startswith(prefix))

    def list_versions(
        self, repository: str
    ) -> list[tuple[str, tuple[str, ...], dt.datetime | None]]:
        out = []
        for v in self.client.package_versions(self.kind, self.owner, self.package(repository)):
            self._ids[(repository, v.digest)] = v.id
            out.append((v.digest, v.tags, _parse_time(v.created_at)))
        return out

    def delete(self, version: rp.Version) -> None:
        version_id = self._ids.get(version.key)
        if version_id is None:
            raise RegistryError(
                f"no GHCR package version id for {version.repository}@{version.digest}"
            )
        self.client.delete_package_version(
            self.kind, self.owner, self.package(version.repository), version_id
        )


@dataclass
class Inventory:
    versions: list[rp.Version] = field(default_factory=list)
    releases: list[rp.ReleaseRef] = field(default_factory=list)
    pinned: rp.Key | None = None  # the record last-known-good's signed statement names
    pin_digest: str | None = None  # the pin statement itself, as inventoried
    sizes: dict[rp.Key, int] = field(default_factory=dict)
    release_tags: list[str] = field(default_factory=list)  # of the release repository
    pin: release.Pin | None = None  # the signed pin statement, when it verified


def inventory(rels: Releases, backend: Backend, *, strict: bool) -> Inventory:
    """Everything in the registry, with the releases that verify and the pinned record.

    ``strict`` (deleting): a ``last-known-good`` that exists but does not verify stops the
    run — retention never decides what to keep without knowing what is pinned.
    """
    inv = Inventory()
    reg = rels.registry
    releases_repo = rels.repository
    inv.pin_digest = reg.digest_or_none(f"{releases_repo}:{release.LAST_KNOWN_GOOD}")
    if inv.pin_digest is not None:
        try:
            inv.pin = rels.fetch_pin()[1]
            inv.pinned = (releases_repo, inv.pin.record_digest)
        except VerifyFailed as err:
            if strict:
                raise RetentionIncomplete(
                    f"{release.LAST_KNOWN_GOOD} does not verify ({err}) — nothing deleted; "
                    "check the signing identity (DCFORGE_SIGNING, DCFORGE_COSIGN_IDENTITY, "
                    "COSIGN_PUBLIC_KEY) or re-pin"
                ) from None
            log.warn(f"{release.LAST_KNOWN_GOOD}: {err}; no release is kept as pinned")
    repositories = backend.repositories()
    if strict and inv.pin_digest is not None and releases_repo not in repositories:
        raise RetentionIncomplete(
            f"{release.LAST_KNOWN_GOOD} exists but {releases_repo} is not among the listed "
            "repositories — the releases could not be read, so nothing is deleted"
        )
    for repo in repositories:
        listed = _list_repository(reg, backend, repo)
        if repo == releases_repo:
            inv.release_tags = [t for version, _ in listed for t in version.tags]
        for version, size in listed:
            inv.versions.append(version)
            inv.sizes[version.key] = size
            if repo == releases_repo and any(rp.RELEASE_TAG.match(t) for t in version.tags):
                _add_release(rels, inv, version, strict=strict)
    inv.versions = _date_indexes(inv.versions)
    if inv.pinned and not any(r.record == inv.pinned for r in inv.releases):
        # The pinned record lost its SHA tag: it and its images are still kept.
        by_key = {v.key: v for v in inv.versions}
        pinned = by_key.get(inv.pinned) or rp.Version(*inv.pinned)
        _add_release(rels, inv, pinned, expected_sha="", strict=strict)
    return inv


def _list_repository(reg: Registry, backend: Backend, repo: str) -> list[tuple[rp.Version, int]]:
    """Every version of ``repo`` the backend lists, plus what only they lead to."""
    listed = list(backend.list_versions(repo))
    seen = {digest for digest, _, _ in listed}
    out = []
    while listed:
        digest, tags, listed_at = listed.pop(0)
        version, size = _read_version(reg, repo, digest, tags, listed_at)
        out.append((version, size))
        # An index's children are untagged: the tag list never names them, yet they go
        # (and stay) with their index, as do their signatures and attestations.
        for child in version.children:
            if child not in seen:
                seen.add(child)
                listed.append((child, (), None))
        # An untagged image only its signature still names (its index was deleted by a
        # run that stopped before the children): found again, and judged by age.
        subject = version.subject
        if subject and subject not in seen:
            seen.add(subject)
            if reg.digest_or_none(f"{repo}@{subject}") == subject:
                listed.append((subject, (), None))
    return out


def _date_indexes(versions: list[rp.Version]) -> list[rp.Version]:
    """An image index has no config and often no created annotation: it is as old as its
    newest child (otherwise every multi-platform image would be kept as "age unknown")."""
    created = {v.key: v.created for v in versions}
    out = []
    for v in versions:
        dates = [created.get((v.repository, c)) for c in v.children]
        known = [d for d in dates if d is not None]
        dated = v.created is None and known and len(known) == len(dates)
        out.append(replace(v, created=max(known)) if dated else v)
    return out


def _read_version(
    reg: Registry, repo: str, digest: str, tags: tuple[str, ...], listed_at: dt.datetime | None
) -> tuple[rp.Version, int]:
    try:
        return _version(reg, repo, digest, tags, listed_at)
    except (KeyError, TypeError, AttributeError, ValueError, RecursionError) as err:
        raise RetentionIncomplete(
            f"{repo}@{digest[:19]}: a manifest retention cannot read ({err!r}) — nothing "
            "deleted; remove or fix that version by hand"
        ) from None


def _version(
    reg: Registry, repo: str, digest: str, tags: tuple[str, ...], listed_at: dt.datetime | None
) -> tuple[rp.Version, int]:
    created = listed_at
    children: tuple[str, ...] = ()
    size = 0
    if not any(rp.COSIGN_TAG.match(t) for t in tags):
        doc = reg.manifest(f"{repo}@{digest}")
        if doc.get("mediaType") in INDEX_TYPES or "manifests" in doc:
            children = tuple(str(m["digest"]) for m in doc.get("manifests") or [])
        notes = doc.get("annotations") or {}
        created = created or _parse_time(str(notes.get("org.opencontainers.image.created", "")))
        config = doc.get("config") or {}
        size = sum(int(layer.get("size", 0)) for layer in doc.get("layers") or [])
        if (
            created is None
            and str(config.get("mediaType", "")).endswith("config.v1+json")
            and int(config.get("size", 0)) > 2
        ):
            cfg = reg.blob_json(f"{repo}@{config['digest']}")
            created = _parse_time(str(cfg.get("created", "")))
    return rp.Version(repo, digest, tags, created, children), size


def _add_release(
    rels: Releases,
    inv: Inventory,
    v: rp.Version,
    expected_sha: str | None = None,
    *,
    strict: bool,
) -> None:
    """Count ``v`` as a release only when it is a signed record of the SHA it is tagged
    with: unsigned look-alikes never take a "newest N" place from a real release.

    ``strict`` (deleting): a record that does not verify stops the run. What it names is
    unknown then, and one cosign timeout or a rotated key must never turn the pinned or a
    newest release into "not a release", whose record and images the plan would delete."""
    sha = next((t for t in v.tags if rp.RELEASE_TAG.match(t)), "")
    try:
        _, rel = rels.fetch_record(
            f"{v.repository}@{v.digest}",
            sha if expected_sha is None else expected_sha,
            tags=inv.release_tags,
            pin=inv.pin,
            pinned=v.key == inv.pinned,
        )
    except DcforgeError as err:
        if strict:
            raise RetentionIncomplete(
                f"{v.repository}@{v.digest[:19]} ({', '.join(v.tags) or 'untagged'}) does not "
                f"verify ({err}) — nothing deleted: retention deletes only when every release "
                "record verifies; check the signing identity, or delete a record that is not "
                "yours by hand"
            ) from None
        log.warn(
            f"{v.repository}@{v.digest[:19]}: not counted as a release ({err}); "
            "with --yes this stops the run"
        )
        return
    when = v.created or _parse_time(rel.manifest.created_at) or dt.datetime.now(dt.UTC)
    inv.releases.append(
        rp.ReleaseRef(v.key, rel.git_sha, when, tuple((i.repository, i.digest) for i in rel.images))
    )


def run(ctx: Context, *, yes: bool, now: dt.datetime | None = None) -> dict[str, Any]:
    """Plan (and with ``yes``, carry out) registry retention.

    With ``yes`` the whole run holds the registry lock publish and rollback take, so no tag
    moves on this machine while it plans and deletes; and right before each delete it
    re-reads the tags of that repository and the pin, and stops if anything planned has
    become referenced since (a publish or rollback on another machine).
    """
    settings, env = ctx.settings, ctx.env
    rels = ctx.releases
    lock = locks.registry_lock(settings.registry) if yes else contextlib.nullcontext()
    with lock:
        return _run(settings, rels, env, yes=yes, now=now)


def _run(
    settings: Settings,
    rels: Releases,
    env: Mapping[str, str],
    *,
    yes: bool,
    now: dt.datetime | None,
) -> dict[str, Any]:
    policy = rp.RetentionPolicy(
        now=now or dt.datetime.now(dt.UTC),
        max_age=dt.timedelta(days=settings.image_retention_days),
        keep_releases=settings.keep_releases,
    )
    backend = make_backend(settings, rels.registry, env)
    with log.group(f"inventory of {settings.registry} ({backend.name})"):
        inv = inventory(rels, backend, strict=yes)
        log.info(
            f"{len(inv.versions)} version(s), {len(inv.releases)} release(s), "
            f"pinned: {inv.pinned[1][:19] if inv.pinned else 'none'}"
        )
    plan = rp.plan(inv.versions, inv.releases, inv.pinned, policy)
    freed = sum(inv.sizes.get(v.key, 0) for v in plan.delete)
    with log.group(f"plan: delete {len(plan.delete)}, keep {len(plan.keep)}"):
        for v in plan.delete:
            log.info(f"delete {v.repository}@{v.digest[:19]} {','.join(v.tags) or '(untagged)'}")
        for key, why in sorted(plan.keep.items()):
            log.info(f"keep   {key[0]}@{key[1][:19]}: {why}")
    report: dict[str, Any] = {
        "planned": [f"{v.repository}@{v.digest}" for v in plan.delete],
        "deleted": [],
        "not_deleted": [],
        "freed_bytes": 0,
    }
    if not yes:
        log.info(
            f"dry run: {len(plan.delete)} version(s) (~{freed / 1e6:.1f} MB of layers) would "
            "be deleted; pass --yes to delete"
        )
        return report
    _delete(rels, inv, backend, plan, report)
    log.info(
        f"deleted {len(plan.delete)} version(s), ~{report['freed_bytes'] / 1e6:.1f} MB of layer "
        "data unreferenced (reclaimed by the registry's garbage collection)"
    )
    return report


def _delete(
    rels: Releases, inv: Inventory, backend: Backend, plan: rp.Plan, report: dict[str, Any]
) -> None:
    """Delete in the planner's order, re-checking each version right before it goes."""
    for i, v in enumerate(plan.delete):
        try:
            _recheck(rels, inv, v)
            backend.delete(v)
        except (ToolError, RegistryError, RetentionIncomplete) as err:
            report["not_deleted"] = [f"{x.repository}@{x.digest}" for x in plan.delete[i:]]
            raise RetentionIncomplete(
                f"stopped after deleting {i} of {len(plan.delete)} version(s): "
                f"{v.repository}@{v.digest[:19]} failed ({err}); not deleted: "
                f"{', '.join(x.digest[:19] for x in plan.delete[i:])}; nothing kept was touched — "
                "re-run to finish"
            ) from None
        report["deleted"].append(f"{v.repository}@{v.digest}")
        report["freed_bytes"] += inv.sizes.get(v.key, 0)


def _recheck(rels: Releases, inv: Inventory, v: rp.Version) -> None:
    """Right before deleting ``v``: no floating tag or pin may have come to reference it."""
    reg = rels.registry
    pin_now = reg.digest_or_none(f"{rels.repository}:{release.LAST_KNOWN_GOOD}")
    if pin_now != inv.pin_digest:
        raise RetentionIncomplete(
            f"{release.LAST_KNOWN_GOOD} moved while retention ran — nothing more is deleted"
        )
    probe = rp.Version(v.repository, v.digest, tuple(reg.tags(v.repository)))
    for tag in probe.floating_tags():
        if reg.digest_or_none(f"{v.repository}:{tag}") == v.digest:
            raise RetentionIncomplete(
                f"{v.repository}:{tag} now points at {v.digest[:19]}, which was planned for "
                "deletion (a publish or rollback ran meanwhile)"
            )


def make_backend(settings: Settings, reg: Registry, env: Mapping[str, str]) -> Backend:
    host = settings.registry.split("/", 1)[0]
    if host == "ghcr.io" or env.get("DCFORGE_RETENTION_BACKEND") == "ghcr":
        client = github.GitHub(
            env.get("GITHUB_TOKEN", ""), env.get("GITHUB_API_URL", "https://api.github.com")
        )
        return GhcrBackend(settings, client)
    return OciBackend(settings, reg)


def artifacts(
    settings: Settings, env: Mapping[str, str], *, yes: bool, now: dt.datetime | None = None
) -> dict[str, Any]:
    """Delete workflow artifacts older than the artifact window (GitHub REST API)."""
    repo = env.get("GITHUB_REPOSITORY", "")
    if not repo:
        raise DcforgeError("GITHUB_REPOSITORY (owner/repo) is not set")
    client = github.GitHub(
        env.get("GITHUB_TOKEN", ""), env.get("GITHUB_API_URL", "https://api.github.com")
    )
    cutoff = (now or dt.datetime.now(dt.UTC)) - dt.timedelta(days=settings.artifact_retention_days)
    old = [a for a in client.artifacts(repo) if (_parse_time(a.created_at) or cutoff) < cutoff]
    log.info(f"{len(old)} artifact(s) older than {settings.artifact_retention_days} days in {repo}")
    deleted: list[int] = []
    if yes:
        for a in old:
            try:
                client.delete_artifact(repo, a.id)
            except RegistryError as err:
                raise RetentionIncomplete(
                    f"deleted {len(deleted)} of {len(old)} artifact(s); artifact {a.id} ({a.name}) "
                    f"failed: {err}; re-run to finish"
                ) from None
            deleted.append(a.id)
        log.info(
            f"deleted {len(deleted)} artifact(s), {sum(a.size_in_bytes for a in old) / 1e6:.1f} MB"
        )
    else:
        for a in old:
            log.info(f"would delete artifact {a.id} {a.name} ({a.created_at})")
    return {"planned": [a.id for a in old], "deleted": deleted}
