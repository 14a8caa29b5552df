"""The staging path (setting ``staging_registry``): no image tarballs between CI jobs.

A build pushes each archive byte for byte, by digest and with no tag, to a staging
repository of its run's scope — ``<staging_registry>/<scope>/<name>``, the scope being the
cache's (``main`` on the default branch, ``pr-<n>`` for a pull request, ``local`` off CI) —
and hands on only the manifest. The gate scans those digests in the registry; publish
copies them, digests preserved, from the staging repository of its own scope into the
release repository, then signs, attests and tags them as always. A pull request's scope is
never the default branch's, so nothing it stages is ever read by a publish.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from dcforge.core import cache
from dcforge.core import manifest as mf
from dcforge.core.errors import ConfigError, PublishRefused
from dcforge.core.settings import Settings, namespaces_overlap


def event_payload(env: Mapping[str, str]) -> dict[str, Any] | None:
    """The decoded ``GITHUB_EVENT_PATH`` payload (None off Actions)."""
    path = env.get("GITHUB_EVENT_PATH")
    if not path:
        return None
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ConfigError(f"GITHUB_EVENT_PATH={path}: unreadable event payload ({err})") from None
    return data if isinstance(data, dict) else None


def ci_context(settings: Settings, env: Mapping[str, str]) -> cache.CiContext:
    return cache.ci_context(env, event_payload(env), settings.default_branch)


def scope(settings: Settings, env: Mapping[str, str]) -> str:
    """The run's scope. On a CI other than GitHub Actions there is no telling a pull
    request from the default branch, so staging is refused there."""
    if env.get("CI") and not env.get("GITHUB_ACTIONS"):
        raise ConfigError(
            "staging_registry: this CI is not GitHub Actions, so dcforge cannot tell a pull "
            "request's run from the default branch's — unset staging_registry"
        )
    return cache.scope(ci_context(settings, env))


def repository(settings: Settings, env: Mapping[str, str], release_repository: str) -> str:
    """The staging repository of this run's scope for a release repository."""
    name = release_repository.removeprefix(settings.registry.rstrip("/") + "/")
    return f"{settings.staging_registry.rstrip('/')}/{scope(settings, env)}/{name}"


def is_pull_request(settings: Settings, env: Mapping[str, str]) -> bool:
    return scope(settings, env).startswith("pr-")


def check_sources(settings: Settings, manifest: mf.Manifest, env: Mapping[str, str]) -> None:
    """Publish reads staged images only from the staging repository of this run's own
    scope, and never from a pull request's: what a PR staged is never published."""
    staged = [e for e in manifest.permutations if e.staged]
    if not staged:
        return
    if not settings.staging_registry:
        raise PublishRefused(
            f"{staged[0].name} is staged ({staged[0].staged}) but staging_registry is not set"
        )
    if is_pull_request(settings, env):
        raise PublishRefused("a pull request's staged images are never published")
    if namespaces_overlap(settings.staging_registry, settings.pr_staging_registry):
        raise PublishRefused(
            f"staging_registry {settings.staging_registry} overlaps pr_staging_registry "
            f"{settings.pr_staging_registry}, which pull requests can write: publish never "
            "reads staged images from there — give the default branch a namespace of its own"
        )
    for entry in staged:
        own = repository(settings, env, entry.repository)
        if entry.staged != own:
            raise PublishRefused(
                f"{entry.name}: staged in {entry.staged}; publish reads staged images only "
                f"from this run's staging repository {own}"
            )
