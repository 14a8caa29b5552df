"""SLSA v1 provenance predicates (pure), built from the manifest.

https://slsa.dev/spec/v1.0/provenance — cosign wraps the predicate in an in-toto
statement whose subject is the image digest (``cosign attest --type slsaprovenance1``).

Every URI the predicate carries is an absolute URI naming something a verifier can look
up: the source repository by its URL (credentials stripped), never a local path. A build
from a checkout without a public remote says so with :data:`LOCAL_SOURCE`.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from typing import Any
from urllib.parse import SplitResult, urlsplit, urlunsplit

from dcforge.core import manifest as mf

BUILD_TYPE = "https://github.com/dcforge/dcforge/buildtypes/bake/v1"
# The source of a build whose repository has no URL a verifier could fetch (no remote, a
# file:// remote, a plain path): honest rather than a path on the builder's disk.
LOCAL_SOURCE = "urn:dcforge:local-source"
_URL_SCHEMES = ("https", "ssh")
# git's scp-like syntax: [user@]host:path, with no slash before the first colon.
_SCP = re.compile(
    r"^(?:(?P<user>[^@/:]+)@)?(?P<host>[A-Za-z0-9][A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\]):(?P<path>.+)$"
)
# RFC 3986 path characters (pchar and "/"): anything else would make the URI invalid.
_PATH = re.compile(r"(?:[A-Za-z0-9\-._~!$&'()*+,;=:@/]|%[0-9A-Fa-f]{2})+")
_USER = re.compile(r"[A-Za-z0-9\-._~]+")
_HOST = re.compile(r"^(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?\.?)+$|^\[[0-9A-Fa-f:.]+\]$")


def builder_id(env: Mapping[str, str]) -> str:
    """The workflow identity in GitHub Actions, the local builder otherwise.

    Signing keyless, the identity that signs: for a job of a reusable workflow that is the
    reusable workflow at its ref (``signing-identity`` reads it from the job's token),
    where ``GITHUB_WORKFLOW_REF`` names the caller's workflow."""
    signer = env.get("DCFORGE_COSIGN_IDENTITY", "")
    if env.get("GITHUB_ACTIONS") and env.get("DCFORGE_SIGNING") == "keyless" and signer:
        return signer
    if env.get("GITHUB_ACTIONS") and env.get("GITHUB_WORKFLOW_REF"):
        server = env.get("GITHUB_SERVER_URL", "https://github.com")
        return f"{server}/{env['GITHUB_WORKFLOW_REF']}"
    return "https://github.com/dcforge/dcforge/local-builder@v1"


def invocation_id(env: Mapping[str, str]) -> str:
    """An id unique to this run attempt; make it once per publish and pass it to
    :func:`predicate` for every permutation.

    In GitHub Actions the run attempt's URL (a re-run is a new attempt); otherwise a fresh
    ``urn:uuid:`` (a re-publish of the same commit is another invocation).
    """
    run_id, attempt = env.get("GITHUB_RUN_ID", ""), env.get("GITHUB_RUN_ATTEMPT", "")
    repo = env.get("GITHUB_REPOSITORY", "")
    if env.get("GITHUB_ACTIONS") and run_id and attempt and repo:
        server = env.get("GITHUB_SERVER_URL", "https://github.com").rstrip("/")
        return f"{server}/{repo}/actions/runs/{run_id}/attempts/{attempt}"
    return uuid.uuid4().urn


def _netloc(parts: SplitResult, *, keep_user: bool) -> str | None:
    """host[:port], with the user name only if asked (never a password); None if invalid."""
    try:
        port = parts.port
    except ValueError:
        return None
    host = parts.hostname or ""
    if ":" in host:  # IPv6 literal: urlsplit drops the brackets
        host = f"[{host}]"
    if not host or not _HOST.match(host):
        return None
    name = parts.username or ""
    user = f"{name}@" if keep_user and _USER.fullmatch(name) else ""
    return f"{user}{host}" + (f":{port}" if port is not None else "")


def _clean_url(url: str) -> str | None:
    """An https/ssh URL without credentials, query or fragment; None if it is not one."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme == "git+ssh":
        scheme = "ssh"
    if scheme not in _URL_SCHEMES or not parts.path.strip("/"):
        return None
    if not _PATH.fullmatch(parts.path):
        return None
    # https: any userinfo is a credential (user:token@, token@); ssh: the user name is
    # part of the address (git@), a password never is.
    netloc = _netloc(parts, keep_user=scheme == "ssh")
    if netloc is None:
        return None
    return urlunsplit((scheme, netloc, parts.path, "", ""))


def source_uri(env: Mapping[str, str], remote_url: str) -> str:
    """The repository as a verifier can name it: the GitHub repository URL in Actions,
    else the git remote as an https/ssh URL without credentials, else :data:`LOCAL_SOURCE`.

    ``remote_url`` is ``git remote get-url origin`` (may be empty); idempotent on its
    own results.
    """
    if env.get("GITHUB_REPOSITORY"):
        server = env.get("GITHUB_SERVER_URL", "https://github.com").rstrip("/")
        cleaned = _clean_url(f"{server}/{env['GITHUB_REPOSITORY']}")
        if cleaned:
            return cleaned
    url = remote_url.strip()
    if url.lower().startswith("urn:"):  # LOCAL_SOURCE itself, not an scp-like host "urn"
        return LOCAL_SOURCE
    if "://" in url:
        return _clean_url(url) or LOCAL_SOURCE
    scp = _SCP.match(url)
    if scp and not url.startswith(("/", ".", "~")):
        path = scp["path"]
        path = path if path.startswith("/") else f"/{path}"
        user = f"{scp['user']}@" if scp["user"] else ""
        return _clean_url(f"ssh://{user}{scp['host']}{path}") or LOCAL_SOURCE
    return LOCAL_SOURCE


def source_repository(env: Mapping[str, str], fallback: str) -> str:
    """Deprecated alias of :func:`source_uri` (kept for existing callers)."""
    return source_uri(env, fallback)


def _oci_uri(ref: str) -> str:
    """``oci://registry/repository[:tag]`` for an image reference (docker's defaults for
    a reference without a registry: docker.io, ``library/`` for a single component)."""
    name = ref.split("@", 1)[0]
    first, _, rest = name.partition("/")
    if not rest or not ("." in first or ":" in first or first == "localhost"):
        name = f"docker.io/{name if rest else 'library/' + name}"
    return f"oci://{name}"


def _source_dependency(source: str, git_sha: str) -> dict[str, Any]:
    uri = f"git+{source}@{git_sha}" if urlsplit(source).scheme in _URL_SCHEMES else source
    return {"uri": uri, "digest": {"gitCommit": git_sha}}


def predicate(
    manifest: mf.Manifest,
    entry: mf.Entry,
    env: Mapping[str, str],
    repo_url: str,
    *,
    invocation_id: str,
    allow_dirty: bool,
    platform: str = "",
) -> dict[str, Any]:
    """The SLSA v1 provenance predicate of one permutation (of its ``platform`` image, for a
    multi-platform permutation: that platform's base image, the index it belongs to).

    ``repo_url``: the git remote (raw, or already through :func:`source_uri`; it is
    normalised again here, so a path or a credential never reaches the predicate).
    ``invocation_id``: from :func:`invocation_id`, once per publish run.
    ``allow_dirty``: whether the publish was allowed from a dirty work tree.
    """
    if not invocation_id:
        raise ValueError("invocation_id is required (see provenance.invocation_id)")
    source = source_uri(env, repo_url)
    return {
        "buildDefinition": _build_definition(manifest, entry, source, allow_dirty, platform),
        "runDetails": {
            "builder": {"id": builder_id(env)},
            "metadata": {
                "invocationId": invocation_id,
                "startedOn": entry.build_started_at or manifest.created_at,
                "finishedOn": entry.built_at or manifest.created_at,
            },
        },
    }


def index_predicate(
    manifest: mf.Manifest,
    entry: mf.Entry,
    env: Mapping[str, str],
    repo_url: str,
    *,
    invocation_id: str,
    allow_dirty: bool,
) -> dict[str, Any]:
    """The provenance of a multi-platform permutation's index: the build as for one image
    (the base image's index), and as byproducts the platform images it lists, by digest
    (each with its own provenance and SBOM attested on it)."""
    body = predicate(
        manifest, entry, env, repo_url, invocation_id=invocation_id, allow_dirty=allow_dirty
    )
    body["runDetails"]["byproducts"] = [
        {
            "name": platform,
            "uri": _oci_uri(f"{entry.repository}@{digest}"),
            "digest": {"sha256": digest.split(":", 1)[1]},
        }
        for platform, digest in sorted(entry.platform_images().items())
    ]
    return body


def _build_definition(
    manifest: mf.Manifest, entry: mf.Entry, source: str, allow_dirty: bool, platform: str
) -> dict[str, Any]:
    base_digest = entry.base_image.platform_digests.get(platform) or entry.base_image.digest
    base = {
        "uri": _oci_uri(entry.base_image.ref),
        "digest": {"sha256": base_digest.split(":", 1)[1]},
        "name": "base-image",
    }
    external: dict[str, Any] = {
        "permutation": entry.name,
        "source": {"repository": source, "ref": manifest.git_sha},
        "buildArgs": dict(entry.build_args),
        "platforms": list(entry.platforms),
    }
    internal: dict[str, Any] = {
        "inputHash": entry.input_hash,
        "builder": manifest.builder,
        "gitDirty": manifest.git_dirty,
        "allowDirty": allow_dirty,
    }
    if platform:
        external["platform"] = platform
        internal["imageIndex"] = entry.image_digest
        base["annotations"] = {"index": entry.base_image.digest}
    return {
        "buildType": BUILD_TYPE,
        "externalParameters": external,
        "internalParameters": internal,
        "resolvedDependencies": [
            _source_dependency(source, manifest.git_sha),
            base,
            *(_feature_dependency(ref, pinned) for ref, pinned in sorted(entry.features.items())),
        ],
    }


def _feature_dependency(ref: str, pinned: str) -> dict[str, Any]:
    """A Dev Container Feature from a registry, as the build used it: by digest."""
    return {
        "uri": _oci_uri(pinned),
        "digest": {"sha256": pinned.rsplit("@sha256:", 1)[1]},
        "name": "devcontainer-feature",
        "annotations": {"reference": ref},
    }


def source_commit(body: Any) -> str:
    """The git commit an SLSA v1 provenance predicate (this module's) says the image was
    built from: the one resolved dependency with a ``gitCommit`` digest ("" when there is
    not exactly one, or it is not a full SHA)."""
    build = body.get("buildDefinition") if isinstance(body, dict) else None
    deps = build.get("resolvedDependencies") if isinstance(build, dict) else None
    commits = [
        d["digest"]["gitCommit"]
        for d in (deps if isinstance(deps, list) else [])
        if isinstance(d, dict) and isinstance(d.get("digest"), dict) and "gitCommit" in d["digest"]
    ]
    if len(commits) != 1 or not isinstance(commits[0], str):
        return ""
    return commits[0] if re.fullmatch(r"[0-9a-f]{40}", commits[0]) else ""


def builder(body: Any) -> str:
    """``runDetails.builder.id`` of a provenance predicate ("" when it has none)."""
    run = body.get("runDetails") if isinstance(body, dict) else None
    found = run.get("builder") if isinstance(run, dict) else None
    ident = found.get("id") if isinstance(found, dict) else None
    return ident if isinstance(ident, str) else ""
