"""SLSA v1 provenance predicates (pure), built from the manifest.

https://slsa.dev/spec/v1.0/provenance — cosign wraps the predicate in an in-toto
statement whose subject is the image digest (``cosign attest --type slsaprovenance1``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dcforge import manifest as mf

BUILD_TYPE = "https://github.com/dcforge/dcforge/buildtypes/bake/v1"


def builder_id(env: Mapping[str, str]) -> str:
    """The workflow identity in GitHub Actions, the local builder otherwise."""
    if env.get("GITHUB_ACTIONS") and env.get("GITHUB_WORKFLOW_REF"):
        server = env.get("GITHUB_SERVER_URL", "https://github.com")
        return f"{server}/{env['GITHUB_WORKFLOW_REF']}"
    return "https://github.com/dcforge/dcforge/local-builder@v1"


def source_repository(env: Mapping[str, str], fallback: str) -> str:
    if env.get("GITHUB_REPOSITORY"):
        return f"{env.get('GITHUB_SERVER_URL', 'https://github.com')}/{env['GITHUB_REPOSITORY']}"
    return fallback


def predicate(
    manifest: mf.Manifest, entry: mf.Entry, env: Mapping[str, str], repo_url: str
) -> dict[str, Any]:
    base_name = entry.base_image.ref.split("@", 1)[0]
    base_hex = entry.base_image.digest.split(":", 1)[1]
    return {
        "buildDefinition": {
            "buildType": BUILD_TYPE,
            "externalParameters": {
                "permutation": entry.name,
                "source": {"repository": repo_url, "ref": manifest.git_sha},
                "buildArgs": dict(entry.build_args),
                "platforms": list(entry.platforms),
            },
            "internalParameters": {
                "inputHash": entry.input_hash,
                "builder": manifest.builder,
                "gitDirty": manifest.git_dirty,
            },
            "resolvedDependencies": [
                {
                    "uri": f"git+{repo_url}@{manifest.git_sha}",
                    "digest": {"gitCommit": manifest.git_sha},
                },
                {"uri": f"oci://{base_name}", "digest": {"sha256": base_hex}, "name": "base-image"},
            ],
        },
        "runDetails": {
            "builder": {"id": builder_id(env)},
            "metadata": {
                "invocationId": env.get("GITHUB_RUN_ID", "") or f"local-{manifest.git_sha[:12]}",
                "startedOn": entry.build_started_at or manifest.created_at,
                "finishedOn": entry.built_at or manifest.created_at,
            },
        },
    }
