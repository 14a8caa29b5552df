"""Registry operations through oras and skopeo (they speak the distribution API)."""

from __future__ import annotations

import re
from pathlib import Path

from dcforge.errors import RegistryError, ToolError
from dcforge.runner import Runner

DIGEST_RE = re.compile(r"^sha256:[0-9a-f]{64}$")


def _http_flags(plain_http: bool) -> list[str]:
    return ["--plain-http"] if plain_http else []


def resolve(runner: Runner, reference: str, *, plain_http: bool) -> str:
    """The digest a registry serves for ``reference`` (a tag or digest reference)."""
    try:
        out = runner.run(
            ["oras", "resolve", *_http_flags(plain_http), reference], timeout=60, mutates=False
        ).stdout.strip()
    except ToolError as err:
        raise RegistryError(
            f"cannot resolve {reference}: {err} — is the registry up (scripts/bootstrap) and "
            "the image pushed?"
        ) from err
    if not DIGEST_RE.match(out):
        raise RegistryError(f"registry returned {out!r} for {reference}, not a sha256 digest")
    return out


def push_oci_archive(runner: Runner, tarball: Path, reference: str, *, plain_http: bool) -> None:
    """Copy an OCI archive byte for byte to ``reference`` (no re-compression)."""
    runner.run(
        [
            "skopeo",
            "copy",
            "--quiet",
            "--preserve-digests",
            *(["--dest-tls-verify=false"] if plain_http else []),
            f"oci-archive:{tarball}",
            f"docker://{reference}",
        ],
        timeout=1800,
    )


def tags(runner: Runner, repository: str, *, plain_http: bool) -> list[str]:
    out = runner.run(
        ["oras", "repo", "tags", *_http_flags(plain_http), repository], timeout=60, mutates=False
    ).stdout
    return [line.strip() for line in out.splitlines() if line.strip()]


def copy(
    runner: Runner, source: str, target: str, *, from_plain_http: bool, to_plain_http: bool
) -> None:
    """Copy an artifact (any media type) between registries, digests preserved."""
    runner.run(
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
