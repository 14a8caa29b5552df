"""The registry read by oras, in a process of its own: the independent reader the tests hold
dcforge's in-process client (``dcforge.infra.tools.registry_http``) against. Everything else
is the package's own (pushes, copies, deletes)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from dcforge.core.errors import RegistryError, ToolError
from dcforge.core.refs import DIGEST_RE
from dcforge.infra.runner import Runner
from dcforge.infra.tools.registry import (
    ABSENT,
    _http_flags,
    _run,
    copy,
    copy_image,
    delete,
    login,
    push_artifact,
    push_oci_archive,
)

__all__ = [
    "ABSENT",
    "blob_json",
    "copy",
    "copy_image",
    "delete",
    "digest_or_none",
    "fetch_artifact",
    "login",
    "manifest",
    "push_artifact",
    "push_oci_archive",
    "repositories",
    "resolve",
    "tag",
    "tags",
]


def fetch_artifact(runner: Runner, reference: str, directory: Path, *, plain_http: bool) -> Path:
    """``oras pull`` of an artifact's files into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    _run(
        runner,
        ["oras", "pull", *_http_flags(plain_http), "-o", directory, reference],
        timeout=300,
        mutates=False,
    )
    return directory


def _oras_resolve(runner: Runner, reference: str, plain_http: bool) -> str:
    out = _run(
        runner,
        ["oras", "resolve", *_http_flags(plain_http), reference],
        timeout=60,
        mutates=False,
    ).stdout.strip()
    if not DIGEST_RE.match(out):
        raise RegistryError(f"registry returned {out!r} for {reference}, not a sha256 digest")
    return out


def resolve(runner: Runner, reference: str, *, plain_http: bool) -> str:
    """The digest a registry serves for ``reference`` (oras: the Docker-Content-Digest
    header, see test_registry_http's lying registry)."""
    try:
        return _oras_resolve(runner, reference, plain_http)
    except ToolError as err:
        raise RegistryError(f"cannot resolve {reference}: {err}") from err


def manifest(runner: Runner, reference: str, *, plain_http: bool) -> dict[str, Any]:
    """The manifest (or index) JSON the registry serves for ``reference``."""
    try:
        out = _run(
            runner,
            ["oras", "manifest", "fetch", *_http_flags(plain_http), reference],
            timeout=60,
            mutates=False,
        ).stdout
    except ToolError as err:
        raise RegistryError(f"cannot fetch the manifest of {reference}: {err}") from err
    try:
        data = json.loads(out)
    except json.JSONDecodeError as err:
        raise RegistryError(f"the registry served no JSON manifest for {reference}") from err
    if not isinstance(data, dict):
        raise RegistryError(f"the registry served no JSON manifest for {reference}")
    return data


def digest_or_none(runner: Runner, reference: str, *, plain_http: bool) -> str | None:
    """The digest for ``reference``, or None when the registry says it does not exist."""
    try:
        return _oras_resolve(runner, reference, plain_http)
    except ToolError as err:
        if ABSENT.search(f"{err} {err.details}"):
            return None
        raise RegistryError(f"cannot reach the registry for {reference}: {err}") from None


def tags(runner: Runner, repository: str, *, plain_http: bool) -> list[str]:
    out = _run(
        runner,
        ["oras", "repo", "tags", *_http_flags(plain_http), repository],
        timeout=60,
        mutates=False,
    ).stdout
    return [line.strip() for line in out.splitlines() if line.strip()]


def tag(runner: Runner, ref_at_digest: str, new_tags: list[str], *, plain_http: bool) -> None:
    """Point ``new_tags`` at the manifest ``ref_at_digest`` (copies the manifest, digest kept)."""
    _run(runner, ["oras", "tag", *_http_flags(plain_http), ref_at_digest, *new_tags], timeout=120)


def repositories(runner: Runner, namespace: str, *, plain_http: bool) -> list[str]:
    """Repositories under ``namespace`` (the distribution catalog API, filtered)."""
    out = _run(
        runner,
        ["oras", "repo", "ls", *_http_flags(plain_http), namespace],
        timeout=120,
        mutates=False,
    ).stdout
    return [f"{namespace}/{line.strip()}" for line in out.splitlines() if line.strip()]


def blob_json(runner: Runner, ref_at_digest: str, *, plain_http: bool) -> dict[str, Any]:
    out = _run(
        runner,
        ["oras", "blob", "fetch", *_http_flags(plain_http), "--output", "-", ref_at_digest],
        timeout=120,
        mutates=False,
    ).stdout
    data = json.loads(out)
    return data if isinstance(data, dict) else {}
