"""The staging path's pure parts: one staging repository per scope, the manifest field."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from dcforge.core import manifest as mf
from dcforge.core import settings as settings_mod
from dcforge.core import staging
from dcforge.core.errors import ConfigError, ManifestError
from tests.unit.test_manifest import GOOD


def _settings(tmp_path: Path) -> settings_mod.Settings:
    return settings_mod.load(
        tmp_path,
        {
            "DCFORGE_REGISTRY": "ghcr.io/acme/images",
            "DCFORGE_STAGING_REGISTRY": "GHCR.io/Acme/Stage",
        },
    )


def _event(tmp_path: Path, payload: dict[str, object]) -> str:
    path = tmp_path / "event.json"
    path.write_text(json.dumps(payload))
    return str(path)


def test_each_scope_stages_in_its_own_repository(tmp_path: Path) -> None:
    conf = _settings(tmp_path)
    assert conf.staging_registry == "ghcr.io/acme/stage"  # references are lowercase
    repo = "ghcr.io/acme/images/node"
    assert staging.repository(conf, {}, repo) == "ghcr.io/acme/stage/local/node"
    main = {"GITHUB_ACTIONS": "true", "GITHUB_EVENT_NAME": "push", "GITHUB_REF": "refs/heads/main"}
    assert staging.repository(conf, main, repo) == "ghcr.io/acme/stage/main/node"
    assert not staging.is_pull_request(conf, main)
    pr = {
        "GITHUB_ACTIONS": "true",
        "GITHUB_EVENT_NAME": "pull_request",
        "GITHUB_REF": "refs/pull/12/merge",
        "GITHUB_EVENT_PATH": _event(tmp_path, {"pull_request": {"number": 12}}),
    }
    assert staging.repository(conf, pr, repo) == "ghcr.io/acme/stage/pr-12/node"
    assert staging.is_pull_request(conf, pr)
    # A pull_request_target-like event naming a PR is a PR's scope too, whatever its ref.
    sneaky = {**pr, "GITHUB_EVENT_NAME": "push", "GITHUB_REF": "refs/heads/main"}
    assert staging.is_pull_request(conf, sneaky)


def test_an_unreadable_event_payload_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "bad.json").write_text("{")
    env = {"GITHUB_ACTIONS": "true", "GITHUB_EVENT_PATH": str(tmp_path / "bad.json")}
    with pytest.raises(ConfigError, match="unreadable event payload"):
        staging.scope(_settings(tmp_path), env)


def test_staged_is_a_repository_and_never_on_a_platform_part() -> None:
    doc = copy.deepcopy(GOOD)
    doc["permutations"][0]["staged"] = "ghcr.io/acme/stage/main/tiny"
    assert mf.parse(doc, "m").permutations[0].staged == "ghcr.io/acme/stage/main/tiny"
    doc["permutations"][0]["staged"] = "ghcr.io/acme/stage/main/tiny@sha256:" + "f" * 64
    with pytest.raises(ManifestError):
        mf.parse(doc, "m")
    part = copy.deepcopy(GOOD)
    entry = part["permutations"][0]
    entry.update(staged="ghcr.io/acme/stage/main/tiny", part_of=["linux/amd64", "linux/arm64"])
    with pytest.raises(ManifestError, match="never staged"):
        mf.parse(part, "m")


def test_a_staged_entry_needs_no_tarball(tmp_path: Path) -> None:
    doc = copy.deepcopy(GOOD)
    doc["permutations"][0]["staged"] = "ghcr.io/acme/stage/main/tiny"
    mf.verify_tarballs(mf.parse(doc, "m"), tmp_path)  # no file: the registry holds it
    with pytest.raises(ManifestError, match="missing"):
        mf.verify_tarballs(mf.parse(GOOD, "m"), tmp_path)


@pytest.mark.parametrize("stage", ["ghcr.io/acme/images", "ghcr.io/acme/images/s", "ghcr.io/acme"])
def test_staging_never_overlaps_the_release_namespace(tmp_path: Path, stage: str) -> None:
    with pytest.raises(ConfigError, match="overlaps the release registry"):
        settings_mod.load(
            tmp_path, {"DCFORGE_REGISTRY": "ghcr.io/acme/images", "DCFORGE_STAGING_REGISTRY": stage}
        )


def test_staging_on_a_ci_that_is_not_github_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not GitHub Actions"):
        staging.scope(_settings(tmp_path), {"CI": "true"})


def test_publish_refuses_a_repository_or_tag_outside_the_registry(tmp_path: Path) -> None:
    from dcforge.core.errors import PublishRefused

    registry = "localhost:5000/dcforge"
    good = copy.deepcopy(GOOD)
    good["registry"] = registry
    good["permutations"][0]["repository"] = "localhost:5000/dcforge/tiny"
    mf.check_target(mf.parse(good, "m"), registry)
    elsewhere = copy.deepcopy(good)
    elsewhere["permutations"][0]["repository"] = "localhost:5000/other/tiny"
    with pytest.raises(PublishRefused, match="not under"):
        mf.check_target(mf.parse(elsewhere, "m"), registry)
    stray_tag = copy.deepcopy(good)
    stray_tag["permutations"][0]["tags"].append("localhost:5000/dcforge/other:one")
    with pytest.raises(PublishRefused, match="is not in"):
        mf.check_target(mf.parse(stray_tag, "m"), registry)


MAIN_PUSH = {"GITHUB_ACTIONS": "true", "GITHUB_EVENT_NAME": "push", "GITHUB_REF": "refs/heads/main"}


def _staged_manifest(staged: str) -> mf.Manifest:
    doc = copy.deepcopy(GOOD)
    doc["registry"] = "ghcr.io/acme/images"
    entry = doc["permutations"][0]
    entry["repository"] = "ghcr.io/acme/images/tiny"
    entry["tags"] = [f"ghcr.io/acme/images/tiny:{t.rpartition(':')[2]}" for t in entry["tags"]]
    entry["staged"] = staged
    return mf.parse(doc, "m")


@pytest.mark.parametrize(
    "pr_stage", ["ghcr.io/acme/stage", "ghcr.io/acme/stage/x", "GHCR.io/acme/stage/"]
)
def test_publish_never_reads_the_namespace_pull_requests_stage_in(
    tmp_path: Path, pr_stage: str
) -> None:
    """Pull requests stage with a credential of their own into pr_staging_registry; a
    default-branch staging namespace that is, holds or sits in it is refused by publish."""
    from dcforge.core.errors import PublishRefused

    env = {
        "DCFORGE_REGISTRY": "ghcr.io/acme/images",
        "DCFORGE_STAGING_REGISTRY": "ghcr.io/acme/stage",
    }
    manifest = _staged_manifest("ghcr.io/acme/stage/main/tiny")
    apart = settings_mod.load(tmp_path, {**env, "DCFORGE_PR_STAGING_REGISTRY": "ghcr.io/acme/pr"})
    staging.check_sources(apart, manifest, MAIN_PUSH)
    shared = settings_mod.load(tmp_path, {**env, "DCFORGE_PR_STAGING_REGISTRY": pr_stage})
    with pytest.raises(PublishRefused, match="which pull requests can write"):
        staging.check_sources(shared, manifest, MAIN_PUSH)
    # What a pull request staged (its own namespace) is never this run's: refused too.
    with pytest.raises(PublishRefused, match="reads staged images only from"):
        staging.check_sources(apart, _staged_manifest("ghcr.io/acme/pr/pr-8/tiny"), MAIN_PUSH)


def test_the_pull_requests_staging_never_overlaps_the_release_namespace(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"pr_staging_registry ghcr\.io/acme/images/pr overlaps"):
        settings_mod.load(
            tmp_path,
            {
                "DCFORGE_REGISTRY": "ghcr.io/acme/images",
                "DCFORGE_PR_STAGING_REGISTRY": "GHCR.io/acme/images/PR",
            },
        )
