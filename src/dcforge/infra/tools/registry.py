"""Registry operations: reads and tag moves in-process (:mod:`registry_http`), pushes and
copies through oras and skopeo (byte-exact archive and artifact pushes).

Every call goes through :func:`dcforge.infra.retry.transient`: a registry that is restarting or
briefly unreachable is retried with backoff; "not found", "denied" and the like are not.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dcforge.core import oci_archive
from dcforge.core.errors import BuildError, RegistryError, ToolError
from dcforge.core.refs import DIGEST_RE, at_digest, registry_host
from dcforge.infra import log
from dcforge.infra.retry import transient
from dcforge.infra.runner import Result, Runner
from dcforge.infra.tools.registry_http import HttpRegistry, HttpStatusError

TITLE = "org.opencontainers.image.title"
MAX_ARTIFACT_FILE = 64 * 1024 * 1024  # release records and pins: JSON documents
ABSENT = re.compile(r"not found|name unknown|manifest unknown|repository name not known", re.I)


def is_absent(err: ToolError) -> bool:
    """The registry said the thing does not exist: a 404 from the in-process client (any
    other status is not "absent", whatever its message says), "not found" from a tool."""
    if isinstance(err, HttpStatusError):
        return err.status == 404
    return bool(ABSENT.search(f"{err} {err.details}"))


def _http_flags(plain_http: bool) -> list[str]:
    return ["--plain-http"] if plain_http else []


def _run(
    runner: Runner,
    argv: list[str | Path],
    *,
    timeout: float,
    mutates: bool = True,
    cwd: Path | None = None,
    input_text: str | None = None,
    redacted: tuple[str, ...] = (),
) -> Result:
    return transient(
        lambda: runner.run(
            argv,
            timeout=timeout,
            mutates=mutates,
            cwd=cwd,
            input_text=input_text,
            redacted=redacted,
        )
    )


def push_oci_archive(runner: Runner, tarball: Path, reference: str, *, plain_http: bool) -> None:
    """Copy an OCI archive byte for byte to ``reference`` (no re-compression)."""
    _skopeo_copy(runner, f"oci-archive:{tarball}", f"docker://{reference}", [], plain_http)


def copy_image(
    runner: Runner, source: str, target: str, *, from_plain_http: bool, to_plain_http: bool
) -> None:
    """Copy an image (an index with every platform's image) between repositories byte
    for byte, digests preserved (the staging path's handover to the release repository)."""
    source_flags = ["--src-tls-verify=false"] if from_plain_http else []
    _skopeo_copy(runner, f"docker://{source}", f"docker://{target}", source_flags, to_plain_http)


def _skopeo_copy(
    runner: Runner, source: str, target: str, source_flags: list[str], plain_target: bool
) -> None:
    """``skopeo copy`` of an image and, for an index, every platform's image, with the
    digests preserved (no re-compression, no conversion)."""
    _run(
        runner,
        [
            "skopeo",
            "copy",
            "--quiet",
            "--preserve-digests",
            "--all",
            *source_flags,
            *(["--dest-tls-verify=false"] if plain_target else []),
            source,
            target,
        ],
        timeout=1800,
    )


def copy(
    runner: Runner, source: str, target: str, *, from_plain_http: bool, to_plain_http: bool
) -> None:
    """Copy an artifact (any media type) between registries, digests preserved."""
    _run(
        runner,
        [
            "oras",
            "cp",
            *(["--from-plain-http"] if from_plain_http else []),
            *(["--to-plain-http"] if to_plain_http else []),
            source,
            target,
        ],
        timeout=1800,
    )


def push_artifact(
    runner: Runner,
    reference: str,
    directory: Path,
    file_name: str,
    *,
    artifact_type: str,
    annotations: dict[str, str],
    plain_http: bool,
    media_type: str = "",
) -> str:
    """Push one file as an OCI artifact; returns the digest of the manifest *this push* wrote
    (hashed from the exported manifest, never read back through the tag, which another
    writer could have moved in between)."""
    exported = directory / f".{file_name}.manifest.json"
    exported.unlink(missing_ok=True)
    argv: list[str | Path] = ["oras", "push", *_http_flags(plain_http)]
    argv += ["--artifact-type", artifact_type, "--export-manifest", exported]
    for key, value in annotations.items():
        argv += ["--annotation", f"{key}={value}"]
    argv += [reference, f"{file_name}:{media_type or artifact_type}"]
    _run(runner, argv, cwd=directory, timeout=300)
    if runner.dry_run:
        return ""
    try:
        return "sha256:" + hashlib.sha256(exported.read_bytes()).hexdigest()
    finally:
        exported.unlink(missing_ok=True)


def login(
    runner: Runner, host: str, username: str, password: str, *, plain_http: bool = False
) -> None:
    """``oras login`` (cosign, skopeo and docker read the same credentials file); the
    password on stdin only, never in its argv or environment."""
    _run(
        runner,
        [
            "oras",
            "login",
            *_http_flags(plain_http),
            "--username",
            username,
            "--password-stdin",
            host,
        ],
        input_text=password,
        redacted=(password,),
        timeout=60,
    )


def delete(runner: Runner, ref_at_digest: str, *, plain_http: bool) -> None:
    """Delete a manifest by digest (every tag on it goes with it)."""
    _run(
        runner,
        ["oras", "manifest", "delete", "--force", *_http_flags(plain_http), ref_at_digest],
        timeout=120,
    )


@dataclass(frozen=True)
class Registry:
    """The one registry client: bound once to the runner and the plain-HTTP hosts.

    Stages call these methods with plain references; which hosts speak plain HTTP, how the
    tools are called and how transient failures are retried is decided here only.
    """

    runner: Runner
    insecure_hosts: frozenset[str] = frozenset()
    http: HttpRegistry = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "http", HttpRegistry(self.insecure_hosts, self.runner.env))

    def plain(self, reference: str) -> bool:
        return registry_host(reference) in self.insecure_hosts

    def resolve(self, reference: str) -> str:
        """The digest a registry serves for ``reference``: the sha256 of the bytes served."""
        try:
            return transient(lambda: self.http.manifest(reference)).digest
        except ToolError as err:
            raise RegistryError(
                f"cannot resolve {reference}: {err} — is the registry up (scripts/bootstrap) and "
                "the image pushed?"
            ) from err

    def served_platforms(self, ref_at_digest: str) -> dict[str, str]:
        """platform → image digest of the index the registry serves at ``ref_at_digest``
        ({} for a single image); anything in the index that is not a platform's image is a
        RegistryError (it would be served without having been scanned)."""
        doc = self.manifest(ref_at_digest)
        if doc.get("mediaType") not in oci_archive.INDEX_TYPES and "manifests" not in doc:
            return {}
        try:
            return oci_archive.index_children(doc, ref_at_digest, strict=True)
        except BuildError as err:
            raise RegistryError(str(err)) from None

    def digest_or_none(self, reference: str) -> str | None:
        """The digest for ``reference``, or None when the registry says it does not exist.

        An unreachable registry is still an error: "absent" must never be confused with "down".
        """
        try:
            return transient(lambda: self.http.manifest(reference)).digest
        except ToolError as err:
            if is_absent(err):
                return None
            raise RegistryError(
                f"cannot reach the registry for {reference}: {err} — is it up (scripts/bootstrap)?"
            ) from None

    def manifest(self, reference: str) -> dict[str, Any]:
        """The manifest (or index) JSON the registry serves for ``reference``."""
        try:
            data = transient(lambda: self.http.manifest(reference)).json()
        except ToolError as err:
            raise RegistryError(f"cannot fetch the manifest of {reference}: {err}") from err
        if not isinstance(data, dict):
            raise RegistryError(f"the registry served no JSON manifest for {reference}")
        return data

    def blob_json(self, ref_at_digest: str) -> dict[str, Any]:
        body = transient(lambda: self.http.blob(ref_at_digest))
        try:
            data = json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise RegistryError(f"the blob {ref_at_digest} is not JSON") from err
        return data if isinstance(data, dict) else {}

    def push_oci_archive(self, tarball: Path, reference: str) -> None:
        push_oci_archive(self.runner, tarball, reference, plain_http=self.plain(reference))

    def tags(self, repository: str) -> list[str]:
        return transient(lambda: self.http.tags(repository))

    def repositories(self, namespace: str) -> list[str]:
        """Repositories under ``namespace`` (the distribution catalog API, filtered)."""
        host, _, prefix = namespace.partition("/")
        listed = transient(lambda: self.http.catalog(host))
        return [
            f"{host}/{name}"
            for name in sorted(listed)
            if not prefix or name.startswith(prefix.rstrip("/") + "/")
        ]

    def copy(self, source: str, target: str) -> None:
        copy(
            self.runner,
            source,
            target,
            from_plain_http=self.plain(source),
            to_plain_http=self.plain(target),
        )

    def copy_image(self, source: str, target: str) -> None:
        copy_image(
            self.runner,
            source,
            target,
            from_plain_http=self.plain(source),
            to_plain_http=self.plain(target),
        )

    def tag(self, ref_at_digest: str, new_tags: list[str]) -> None:
        """Point ``new_tags`` at the manifest ``ref_at_digest`` (its bytes stored under each
        tag, so the digest is kept)."""
        repository, at, digest = ref_at_digest.partition("@")
        if not at or not DIGEST_RE.match(digest):
            raise RegistryError(f"{ref_at_digest}: tags are moved to a digest, not to a tag")
        if self.runner.dry_run:
            log.info(f"+ tag {ref_at_digest} as {', '.join(new_tags)}  (dry run: not run)")
            return
        found = transient(lambda: self.http.manifest(ref_at_digest))
        for name in new_tags:
            target = f"{repository}:{name}"
            transient(functools.partial(self.http.put_manifest, target, found))

    def push_artifact(
        self,
        reference: str,
        directory: Path,
        file_name: str,
        *,
        artifact_type: str,
        annotations: dict[str, str],
        media_type: str = "",
    ) -> str:
        return push_artifact(
            self.runner,
            reference,
            directory,
            file_name,
            artifact_type=artifact_type,
            annotations=annotations,
            plain_http=self.plain(reference),
            media_type=media_type,
        )

    def fetch_artifact(self, reference: str, directory: Path) -> Path:
        """An artifact's files (its layers, named by their title annotation, as ``oras pull``
        writes them) in ``directory``, each checked against its digest."""
        directory.mkdir(parents=True, exist_ok=True)
        doc = self.manifest(reference)
        for layer in doc.get("layers") or []:
            notes = layer.get("annotations") if isinstance(layer, dict) else None
            title = notes.get(TITLE) if isinstance(notes, dict) else None
            if not title:
                continue
            if not isinstance(title, str) or "/" in title or title in (".", "..") or "\0" in title:
                raise RegistryError(f"{reference}: the artifact names a file {title!r}: refused")
            at = at_digest(reference, str(layer.get("digest", "")))
            try:
                body = transient(functools.partial(self.http.blob, at, MAX_ARTIFACT_FILE))
            except ToolError as err:
                raise RegistryError(f"cannot read {title} of {reference}: {err}") from err
            (directory / title).write_bytes(body)
        return directory

    def delete(self, ref_at_digest: str) -> None:
        delete(self.runner, ref_at_digest, plain_http=self.plain(ref_at_digest))

    def login(self, host: str, username: str, password: str) -> None:
        login(self.runner, host, username, password, plain_http=self.plain(host))
