"""Registry operations through oras and skopeo (they speak the distribution API).

Every call goes through :func:`dcforge.retry.transient`: a registry that is restarting or
briefly unreachable is retried with backoff; "not found", "denied" and the like are not.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from dcforge.errors import RegistryError, ToolError
from dcforge.retry import transient
from dcforge.runner import Result, Runner

DIGEST_RE = re.compile(r"^sha256:[0-9a-f]{64}$")
ABSENT = re.compile(r"not found|name unknown|manifest unknown|repository name not known", re.I)


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
    env: dict[str, str] | None = None,
) -> Result:
    return transient(
        lambda: runner.run(
            argv, timeout=timeout, mutates=mutates, cwd=cwd, input_text=input_text, env=env
        )
    )


def resolve(runner: Runner, reference: str, *, plain_http: bool) -> str:
    """The digest a registry serves for ``reference`` (a tag or digest reference)."""
    try:
        out = _run(
            runner,
            ["oras", "resolve", *_http_flags(plain_http), reference],
            timeout=60,
            mutates=False,
        ).stdout.strip()
    except ToolError as err:
        raise RegistryError(
            f"cannot resolve {reference}: {err} — is the registry up (scripts/bootstrap) and "
            "the image pushed?"
        ) from err
    if not DIGEST_RE.match(out):
        raise RegistryError(f"registry returned {out!r} for {reference}, not a sha256 digest")
    return out


def manifest(runner: Runner, reference: str, *, plain_http: bool) -> dict[str, object]:
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
    """The digest for ``reference``, or None when the registry says it does not exist.

    An unreachable registry is still an error: "absent" must never be confused with "down".
    """
    try:
        out = _run(
            runner,
            ["oras", "resolve", *_http_flags(plain_http), reference],
            timeout=60,
            mutates=False,
        ).stdout.strip()
    except ToolError as err:
        if ABSENT.search(f"{err} {err.details}"):
            return None
        raise RegistryError(
            f"cannot reach the registry for {reference}: {err} — is it up (scripts/bootstrap)?"
        ) from None
    if not DIGEST_RE.match(out):
        raise RegistryError(f"registry returned {out!r} for {reference}, not a sha256 digest")
    return out


def push_oci_archive(runner: Runner, tarball: Path, reference: str, *, plain_http: bool) -> None:
    """Copy an OCI archive byte for byte to ``reference`` (no re-compression)."""
    _run(
        runner,
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
    out = _run(
        runner,
        ["oras", "repo", "tags", *_http_flags(plain_http), repository],
        timeout=60,
        mutates=False,
    ).stdout
    return [line.strip() for line in out.splitlines() if line.strip()]


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


def tag(runner: Runner, ref_at_digest: str, new_tags: list[str], *, plain_http: bool) -> None:
    """Point ``new_tags`` at the manifest ``ref_at_digest`` (copies the manifest, digest kept)."""
    _run(runner, ["oras", "tag", *_http_flags(plain_http), ref_at_digest, *new_tags], timeout=120)


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
    """Push one file as an OCI artifact; returns the manifest digest."""
    argv: list[str | Path] = ["oras", "push", *_http_flags(plain_http)]
    argv += ["--artifact-type", artifact_type]
    for key, value in annotations.items():
        argv += ["--annotation", f"{key}={value}"]
    argv += [reference, f"{file_name}:{media_type or artifact_type}"]
    _run(runner, argv, cwd=directory, timeout=300)
    return resolve(runner, reference, plain_http=plain_http)


def fetch_artifact(runner: Runner, reference: str, directory: Path, *, plain_http: bool) -> Path:
    """Pull an artifact's files into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    _run(
        runner,
        ["oras", "pull", *_http_flags(plain_http), "-o", directory, reference],
        timeout=300,
        mutates=False,
    )
    return directory


def login(runner: Runner, host: str, username: str, password: str) -> None:
    """``oras login`` (cosign, skopeo and docker read the same credentials file)."""
    _run(
        runner,
        ["oras", "login", "--username", username, "--password-stdin", host],
        input_text=password,
        env={"DCFORGE_REGISTRY_PASSWORD": password},
        timeout=60,
    )
