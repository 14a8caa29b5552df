"""manifest.json: the single source of truth from build to publish and rollback.

The field names are a contract (DESIGN.md). Every read validates against the schema and
refuses an unknown ``schema_version``; ``verify_tarballs`` checks files against it.
"""

from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema

from dcforge.core.errors import ManifestError, PublishRefused
from dcforge.core.files import atomic_write_json
from dcforge.core.hashing import file_sha256

SCHEMA_VERSION = 1
MAX_MANIFEST_BYTES = 20_000_000


@dataclass(frozen=True)
class BaseImage:
    ref: str
    digest: str
    platform_digests: dict[str, str] = field(default_factory=dict)  # an index's children


@dataclass(frozen=True)
class Entry:
    name: str
    tarball: str
    tarball_sha256: str
    image_digest: str
    tags: list[str]
    base_image: BaseImage
    input_hash: str
    platforms: list[str]
    repository: str = ""
    immutable_tag: str = ""
    floating_tags: list[str] = field(default_factory=list)
    family: str = ""
    build_args: dict[str, str] = field(default_factory=dict)
    smoke: list[str] = field(default_factory=list)
    built_at: str = ""
    build_started_at: str = ""
    reused_from: dict[str, str] | None = None  # {git_sha, record_digest}: not rebuilt
    os: str = "required"  # "none": declared without an OS (the gate then wants lang packages)
    # platform → that platform's image manifest digest (image_digest is then an index's)
    platform_digests: dict[str, str] = field(default_factory=dict)
    # Set on a platform part (build --platform): every platform of the permutation; the
    # parts are merged into one index before anything gates or publishes them.
    part_of: list[str] = field(default_factory=list)
    # The staging repository the build pushed the archive to, by digest (staging_registry):
    # the tarball is not handed on; the gate scans and publish copies that digest.
    staged: str = ""
    # Registry Features of a devcontainer.json permutation, pinned (the lock): reference
    # as written → repository@sha256:…; part of input_hash, listed in the provenance.
    features: dict[str, str] = field(default_factory=dict)

    @property
    def reused(self) -> bool:
        return self.reused_from is not None

    @property
    def multi_platform(self) -> bool:
        return len(self.platforms) > 1

    @property
    def is_part(self) -> bool:
        return bool(self.part_of)

    def platform_images(self) -> dict[str, str]:
        """platform → image manifest digest: the images that are scanned, signed, attested.
        A single-platform entry's one image is ``image_digest`` itself."""
        if self.multi_platform:
            return dict(self.platform_digests)
        return {self.platforms[0]: self.image_digest}

    def report_stem(self, platform: str) -> str:
        """File stem of a platform's reports under dist/reports (``name``, or
        ``name@linux-arm64`` for a multi-platform image; ``@`` is in no permutation name)."""
        return f"{self.name}@{platform.replace('/', '-')}" if self.multi_platform else self.name


@dataclass(frozen=True)
class Manifest:
    schema_version: int
    git_sha: str
    created_at: str
    registry: str
    permutations: list[Entry]
    git_dirty: bool = False
    builder: str = ""
    # The commit's committer time every image of the build is dated by (SOURCE_DATE_EPOCH:
    # the config's created, org.opencontainers.image.created, the layers' file times);
    # None in a manifest written before dcforge recorded it.
    source_date_epoch: int | None = None

    def entry(self, name: str) -> Entry:
        for e in self.permutations:
            if e.name == name:
                return e
        raise ManifestError(f"manifest has no permutation '{name}'")

    def digest_for_tag(self, tag: str) -> str:
        """The image digest of the permutation that owns fully-qualified ``tag``."""
        for e in self.permutations:
            if tag in e.tags:
                return e.image_digest
        return ""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def check_complete(self, source: str) -> None:
        """No platform part is left: gate and publish see whole permutations only."""
        for e in self.permutations:
            if e.is_part:
                raise ManifestError(
                    f"{source}: '{e.name}' is only its {', '.join(e.platforms)} part of "
                    f"{', '.join(e.part_of)} (build --platform) — merge the platform parts "
                    "first (dcforge merge-manifests part-amd64/ part-arm64/ …)"
                )


def _schema() -> dict[str, Any]:
    text = resources.files("dcforge.resources").joinpath("manifest.schema.json").read_text()
    result: dict[str, Any] = json.loads(text)
    return result


def parse(data: Any, source: str) -> Manifest:
    """Validate a decoded manifest and build the model; errors name the field."""
    if not isinstance(data, dict):
        raise ManifestError(f"{source}: expected a JSON object")
    version = data.get("schema_version")
    if version != SCHEMA_VERSION:
        raise ManifestError(
            f"{source}: schema_version {version!r} is not supported (this dcforge reads "
            f"{SCHEMA_VERSION}) — rebuild with this dcforge version"
        )
    errors = list(jsonschema.Draft202012Validator(_schema()).iter_errors(data))
    if errors:
        err = min(errors, key=lambda e: len(list(e.absolute_path)))
        where = ".".join(str(p) for p in err.absolute_path) or "(top level)"
        raise ManifestError(f"{source}: field '{where}': {err.message}")
    entries = _entries(data["permutations"], source)
    return Manifest(
        schema_version=version,
        git_sha=data["git_sha"],
        created_at=data["created_at"],
        registry=data["registry"],
        permutations=entries,
        git_dirty=bool(data.get("git_dirty", False)),
        builder=str(data.get("builder", "")),
        source_date_epoch=data.get("source_date_epoch"),
    )


def _entries(raws: list[dict[str, Any]], source: str) -> list[Entry]:
    """The permutation entries; a name, tarball or tag claimed twice is refused."""
    names: set[str] = set()
    tags: set[str] = set()
    tarballs: set[str] = set()
    entries = []
    for raw in raws:
        if raw["name"] in names:
            raise ManifestError(f"{source}: permutation '{raw['name']}' appears twice")
        if raw["tarball"] and raw["tarball"] in tarballs:
            raise ManifestError(f"{source}: tarball '{raw['tarball']}' is named twice")
        for tag in raw["tags"]:
            if tag in tags:
                raise ManifestError(f"{source}: tag '{tag}' is claimed twice")
            tags.add(tag)
        names.add(raw["name"])
        tarballs.add(raw["tarball"])
        known = {f for f in Entry.__dataclass_fields__}
        extra = {k: v for k, v in raw.items() if k in known}
        base = raw["base_image"]
        extra["base_image"] = BaseImage(
            base["ref"], base["digest"], dict(base.get("platform_digests") or {})
        )
        _check_platforms(raw, source)
        try:
            entries.append(Entry(**extra))
        except TypeError as err:
            raise ManifestError(f"{source}: permutation '{raw['name']}': {err}") from None
    return entries


def _check_platforms(raw: dict[str, Any], source: str) -> None:
    """A multi-platform entry names every platform's image, and only those."""
    platforms = raw["platforms"]
    digests = raw.get("platform_digests") or {}
    if len(platforms) != len(set(platforms)):
        raise ManifestError(f"{source}: permutation '{raw['name']}': a platform is listed twice")
    if (len(platforms) > 1 or digests) and set(digests) != set(platforms):
        raise ManifestError(
            f"{source}: permutation '{raw['name']}': platform_digests names "
            f"{sorted(digests) or 'nothing'}, the entry builds {sorted(platforms)} — rebuild"
        )
    part_of = raw.get("part_of") or []
    if part_of and (len(platforms) != 1 or platforms[0] not in part_of or len(part_of) < 2):
        raise ManifestError(
            f"{source}: permutation '{raw['name']}': a platform part builds one of the "
            f"platforms it is part of (platforms {platforms}, part_of {part_of})"
        )
    if part_of and raw.get("staged"):
        raise ManifestError(
            f"{source}: permutation '{raw['name']}': a platform part is never staged (the "
            "merge joins the parts' archives)"
        )
    if len(platforms) == 1 and digests and digests[platforms[0]] != raw["image_digest"]:
        raise ManifestError(
            f"{source}: permutation '{raw['name']}': its one platform's digest is not image_digest"
        )


def load(path: Path) -> Manifest:
    if not path.is_file():
        raise ManifestError(f"{path}: not found — run 'nox -s build' first")
    if path.stat().st_size > MAX_MANIFEST_BYTES:
        raise ManifestError(f"{path}: too large to be a manifest")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ManifestError(
            f"{path}: not valid JSON ({err}) — rebuild it with 'nox -s build'"
        ) from None
    return parse(data, str(path))


def write(path: Path, manifest: Manifest) -> None:
    parse(manifest.to_json(), "new manifest")  # never write what we would refuse to read
    atomic_write_json(path, manifest.to_json())


def verify_tarballs(manifest: Manifest, dist: Path) -> None:
    """Every tarball exists and has the recorded sha256 (hashed side by side: hashlib
    lets go of the GIL, and these are the largest files dcforge reads)."""
    entries = [e for e in manifest.permutations if not (e.reused or e.staged)]
    # (reused: a published release's, staged: the registry holds it by digest)
    for entry in entries:
        if not (dist / entry.tarball).is_file():
            raise ManifestError(
                f"{entry.name}: tarball {dist / entry.tarball} is missing — rebuild it"
            )
    with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
        hashes = list(pool.map(lambda e: file_sha256(dist / e.tarball), entries))
    for entry, actual in zip(entries, hashes, strict=True):
        if actual != entry.tarball_sha256:
            raise ManifestError(
                f"{entry.name}: tarball {dist / entry.tarball} has sha256 {actual}, manifest says "
                f"{entry.tarball_sha256} — the file changed after the build; rebuild"
            )


def check_target(manifest: Manifest, registry: str) -> None:
    """The manifest was built for ``registry``, every image goes to a repository under it,
    every tag to its own image's repository: a manifest (and verdict) edited between jobs
    cannot send a push, a signature or a tag anywhere else the registry credential reaches.
    PublishRefused otherwise."""
    if manifest.registry != registry:
        raise PublishRefused(
            f"the manifest was built for {manifest.registry}, the target is {registry} — "
            "rebuild for this registry (tags are part of what was gated)"
        )
    prefix = registry.rstrip("/") + "/"
    for entry in manifest.permutations:
        if not entry.repository.startswith(prefix) or "@" in entry.repository:
            raise PublishRefused(
                f"{entry.name}: repository {entry.repository!r} is not under {registry}"
            )
        for tag in entry.tags:
            if tag.rpartition(":")[0] != entry.repository:
                raise PublishRefused(f"{entry.name}: tag {tag} is not in {entry.repository}")
