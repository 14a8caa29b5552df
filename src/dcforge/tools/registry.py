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


def digest_or_none(runner: Runner, reference: str, *, plain_http: bool) -> str | None:
    """The digest for ``reference``, or None when the registry says it does not exist.

    An unreachable registry is still an error: "absent" must never be confused with "down".
    """
    result = runner.run(
        ["oras", "resolve", *_http_flags(plain_http), reference],
        timeout=60,
        mutates=False,
        check=False,
    )
    out = result.stdout.strip()
    if result.returncode == 0 and DIGEST_RE.match(out):
        return out
    text = result.stderr.lower()
    if "not found" in text or "name unknown" in text or "manifest unknown" in text:
        return None
    raise RegistryError(
        f"cannot reach the registry for {reference}: "
        f"{(result.stderr.strip().splitlines() or ['no answer'])[-1]} — "
        "is it up (scripts/bootstrap)?"
    )


def tag(runner: Runner, ref_at_digest: str, tags: list[str], *, plain_http: bool) -> None:
    """Point ``tags`` at the manifest ``ref_at_digest`` (copies the manifest, digest kept)."""
    runner.run(["oras", "tag", *_http_flags(plain_http), ref_at_digest, *tags], timeout=120)


def push_artifact(
    runner: Runner,
    reference: str,
    directory: Path,
    file_name: str,
    *,
    artifact_type: str,
    annotations: dict[str, str],
    plain_http: bool,
) -> str:
    """Push one file as an OCI artifact; returns the manifest digest."""
    argv: list[str | Path] = [
        "oras",
        "push",
        *_http_flags(plain_http),
        "--artifact-type",
        artifact_type,
    ]
    for key, value in annotations.items():
        argv += ["--annotation", f"{key}={value}"]
    argv += [reference, f"{file_name}:{artifact_type}"]
    runner.run(argv, cwd=directory, timeout=300)
    return resolve(runner, reference, plain_http=plain_http)


def fetch_artifact(runner: Runner, reference: str, directory: Path, *, plain_http: bool) -> Path:
    """Pull an artifact's files into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    runner.run(
        ["oras", "pull", *_http_flags(plain_http), "-o", directory, reference],
        timeout=300,
        mutates=False,
    )
    return directory


def login(runner: Runner, host: str, username: str, password: str) -> None:
    """``oras login`` (cosign, skopeo and docker read the same credentials file)."""
    runner.run(
        ["oras", "login", "--username", username, "--password-stdin", host],
        input_text=password,
        env={"DCFORGE_REGISTRY_PASSWORD": password},
        timeout=60,
    )
