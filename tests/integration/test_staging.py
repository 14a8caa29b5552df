"""The staging path: builds push their archives by digest (untagged) to a staging
repository of their run's scope and hand on only the manifest; the gate scans those
digests in the registry; publish copies them from its own scope's staging repository —
never a pull request's — and signs, attests and tags them."""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from pathlib import Path

import pytest

from dcforge.core import manifest as mf
from dcforge.core.errors import ToolError
from dcforge.infra.runner import Runner
from tests.integration import oras_oracle as registry
from tests.integration.conftest import (
    KeyPair,
    TrivyDb,
    run_dcforge,
    tags_point_at,
    verdicts,
)

pytestmark = pytest.mark.integration


def _ci(tmp: Path, event: str, ref: str, payload: Mapping[str, object]) -> dict[str, str]:
    path = tmp / f"event-{uuid.uuid4().hex[:6]}.json"
    path.write_text(json.dumps(payload))
    return {
        "GITHUB_ACTIONS": "true",
        "GITHUB_EVENT_NAME": event,
        "GITHUB_REF": ref,
        "GITHUB_EVENT_PATH": str(path),
    }


@pytest.fixture
def setup(
    project: Path, namespace: str, trivy_db: TrivyDb, cosign_keys: KeyPair, tmp_path: Path
) -> tuple[Path, dict[str, str], str]:
    stage = f"{namespace}/stg{uuid.uuid4().hex[:8]}"
    env = {
        "DCFORGE_STAGING_REGISTRY": stage,
        "DCFORGE_TRIVY_DB_REPOSITORY": trivy_db.repository,
        "COSIGN_KEY": str(cosign_keys.key),
        "COSIGN_PUBLIC_KEY": str(cosign_keys.pub),
        "COSIGN_PASSWORD": cosign_keys.password,
    }
    return project, env, stage


def _tags(runner: Runner, repository: str) -> list[str]:
    try:
        return registry.tags(runner, repository, plain_http=True)
    except ToolError as err:  # distribution: a repository with no tag is "name unknown"
        assert "name unknown" in str(err)
        return []


MAIN = {"ref": "refs/heads/main", "repository": {"default_branch": "main"}}
PR = {"number": 9, "pull_request": {"number": 9, "head": {"repo": {"fork": False}}}}


def _built_on_main(
    setup: tuple[Path, dict[str, str], str], tmp_path: Path
) -> tuple[Path, dict[str, str]]:
    """Built (and staged) as a push to main; the project and its environment."""
    root, env, _ = setup
    env = {**env, **_ci(tmp_path, "push", "refs/heads/main", MAIN)}
    built = run_dcforge("build", "--no-prune", cwd=root, env=env)
    assert built.returncode == 0, built.stderr
    return root, env


def test_staged_images_go_from_build_to_signature_by_digest_with_no_tarball(
    setup: tuple[Path, dict[str, str], str], runner: Runner, tmp_path: Path
) -> None:
    root, env, stage = setup
    env = {**env, **_ci(tmp_path, "push", "refs/heads/main", MAIN)}
    built = run_dcforge("build", "--no-prune", cwd=root, env=env)
    assert built.returncode == 0, built.stderr
    m = mf.load(root / "dist/manifest.json")
    assert not list((root / "dist").glob("*.tar")), "a staged build left a tarball to hand on"
    for e in m.permutations:
        assert e.staged == f"{stage}/main/{e.repository.rsplit('/', 1)[1]}"
        assert registry.resolve(runner, f"{e.staged}@{e.image_digest}", plain_http=True) == (
            e.image_digest
        )
        assert _tags(runner, e.staged) == []  # by digest only
    gated = run_dcforge("gate", cwd=root, env=env)
    assert gated.returncode == 0, gated.stderr
    assert "scanned staged" in gated.stderr
    assert all(v["passed"] for v in verdicts(root).values())
    published = run_dcforge("publish", cwd=root, env=env)
    assert published.returncode == 0, published.stderr
    assert tags_point_at(runner, m)
    verified = run_dcforge("verify", cwd=root, env=env)
    assert verified.returncode == 0, verified.stderr


def test_a_pull_request_stages_in_its_own_scope_and_is_never_published(
    setup: tuple[Path, dict[str, str], str], runner: Runner, tmp_path: Path
) -> None:
    root, env, stage = setup
    pr_env = {**env, **_ci(tmp_path, "pull_request", "refs/pull/9/merge", PR)}
    assert run_dcforge("build", "--no-prune", cwd=root, env=pr_env).returncode == 0
    m = mf.load(root / "dist/manifest.json")
    assert all(e.staged.startswith(f"{stage}/pr-9/") for e in m.permutations)
    gated = run_dcforge("gate", cwd=root, env=pr_env)
    assert gated.returncode == 0, gated.stderr
    # As the pull request itself, and as a run on main handed the PR's manifest + verdict.
    as_pr = run_dcforge("publish", cwd=root, env=pr_env)
    assert as_pr.returncode != 0 and "never published" in as_pr.stderr
    main_env = {**env, **_ci(tmp_path, "push", "refs/heads/main", MAIN)}
    as_main = run_dcforge("publish", cwd=root, env=main_env)
    assert as_main.returncode != 0 and "Traceback" not in as_main.stderr
    assert f"{stage}/main/" in as_main.stderr and "pr-9" in as_main.stderr
    for e in m.permutations:
        assert (
            registry.digest_or_none(runner, f"{e.repository}@{e.image_digest}", plain_http=True)
            is None
        )


def test_the_gate_scans_only_this_runs_staging_repository(
    setup: tuple[Path, dict[str, str], str], tmp_path: Path
) -> None:
    """A manifest edited to name another staging repository (say one a PR filled) is
    refused by the gate, whatever that repository serves."""
    root, env = _built_on_main(setup, tmp_path)
    path = root / "dist/manifest.json"
    doc = json.loads(path.read_text())
    doc["permutations"][0]["staged"] = doc["permutations"][0]["staged"].replace("/main/", "/pr-1/")
    path.write_text(json.dumps(doc))
    gated = run_dcforge("gate", cwd=root, env=env)
    assert gated.returncode != 0
    assert "this run's staging repository is" in gated.stderr + json.dumps(verdicts(root))


def test_a_staged_image_that_is_gone_fails_the_gate_not_the_run(
    setup: tuple[Path, dict[str, str], str], runner: Runner, tmp_path: Path
) -> None:
    root, env = _built_on_main(setup, tmp_path)
    (entry, *_) = mf.load(root / "dist/manifest.json").permutations
    registry.delete(runner, f"{entry.staged}@{entry.image_digest}", plain_http=True)
    gated = run_dcforge("gate", cwd=root, env=env)
    assert gated.returncode != 0 and "Traceback" not in gated.stderr
    assert not verdicts(root)[entry.name]["passed"]
