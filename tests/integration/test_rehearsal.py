"""A rehearsal of ``build-publish.yml``: the workflow file itself, run the way Actions
would (tests/integration/actions_runner.py), on this machine's engine, registry, Trivy,
syft and cosign — as a pull request (build and gate; nothing published, main's cache scope
never written) and as a push to main (published, signed, verified).

The jobs run dcforge's repository (this work tree's files) with the shipped permutations
swapped for two tiny ones; each matrix job in its own clean clone, on what this machine
looks like as GitHub's ubuntu-24.04 image (runner_images.py: its os-release, no
qemu-user-static, emulation and tools where the setup actions put them, no installs). Only the endpoints are
replaced (OVERRIDDEN below: the registry, the base registry, the cache backend, key
signing and the Trivy DB mirror): every command is the workflow's. Runs after the other
tests, before test_prune (it prunes the runner's Docker state, as the workflow's build does
with CI set)."""

from __future__ import annotations

import json
import shutil
import subprocess
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from dcforge.core import manifest as mf
from dcforge.infra.runner import Runner
from tests.integration import oras_oracle as registry_tool
from tests.integration.actions_runner import Event, Rehearsal, commands_of
from tests.integration.conftest import ROOT, KeyPair, TrivyDb, base_env, tags_point_at
from tests.integration.runner_images import UBUNTU_2404
from tests.projects import BUSYBOX_DOCKERFILE, TINY_FAMILY, write_debian_identity

pytestmark = [pytest.mark.integration, pytest.mark.alone(1)]

WORKFLOW = ROOT / ".github/workflows/build-publish.yml"
# What a local run must point elsewhere, and nothing else: the workflow's registry is
# GHCR, its base images Docker Hub, its cache GitHub's, its signing keyless (OIDC).
OVERRIDDEN = {
    "DCFORGE_REGISTRY", "DCFORGE_BASE_REGISTRY", "DCFORGE_CACHE_BACKEND",
    "DCFORGE_CACHE_REGISTRY", "DCFORGE_SIGNING", "COSIGN_KEY", "COSIGN_PUBLIC_KEY",
    "COSIGN_PASSWORD", "DCFORGE_TRIVY_DB_REPOSITORY",
}  # fmt: skip
TOKEN = "ghs_rehearsalTokenThatMustNotLeak0123"


def _repository(dest: Path) -> str:
    """dcforge's repository as this work tree has it, with two tiny permutations instead
    of the shipped ones; one commit. Returns its SHA."""
    files = subprocess.run(
        ["git", "-C", str(ROOT), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        capture_output=True, check=True,
    ).stdout.decode().split("\0")  # fmt: skip
    for name in filter(None, files):
        src = ROOT / name
        if src.is_file() and not name.startswith(("permutations/", "images/")):
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)
    (dest / "permutations").mkdir()
    (dest / "permutations/tiny.yaml").write_text(TINY_FAMILY)
    ctx = dest / "images/tiny"
    ctx.mkdir(parents=True)
    (ctx / "Dockerfile").write_text(BUSYBOX_DOCKERFILE)
    (ctx / "greeting.txt").write_text("hi\n")
    write_debian_identity(ctx)

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(dest), *args], capture_output=True, text=True, check=True
        ).stdout.strip()

    git("init", "-q", "-b", "main")
    git("add", "-A")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "rehearsal")
    return git("rev-parse", "HEAD")


def _tags(repository: str) -> list[str]:
    host, _, name = repository.partition("/")
    try:
        with urllib.request.urlopen(f"http://{host}/v2/{name}/tags/list", timeout=30) as r:
            return list(json.load(r).get("tags") or [])
    except urllib.error.HTTPError as err:
        if err.code == 404:
            return []
        raise


PR_PAYLOAD = {
    "pull_request": {
        "head": {"ref": "feature", "repo": {"fork": False}},
        "base": {"ref": "main"},
    },
    "repository": {"default_branch": "main"},
}


def _pr(number: int) -> dict[str, object]:
    pr: dict[str, Any] = json.loads(json.dumps(PR_PAYLOAD))
    pr["number"] = pr["pull_request"]["number"] = number
    return pr


def _nothing_leaked(rehearsals: list[Rehearsal], secrets: list[str]) -> None:
    for rehearsal in rehearsals:
        logs = rehearsal.log()
        texts = [
            f.read_text(errors="replace")
            for store in rehearsal.artifacts.values()
            for f in store.rglob("*")
            if f.is_file() and f.suffix in (".json", ".md", ".sarif", ".txt")
        ]
        for secret in secrets:
            assert secret not in logs
            assert not any(secret in text for text in texts)


def _ran_on_the_image(workflow_doc: dict[str, Any], work: Path) -> None:
    """Every job runs on the image its runs-on names, and bootstrap installed nothing."""
    labels = {str(j.get("runs-on")) for j in workflow_doc["jobs"].values()}
    assert labels <= {UBUNTU_2404.label, "${{ matrix.runner }}"}, labels
    apt = [call for d in work.glob("_runner-*") for call in UBUNTU_2404.apt_calls(d)]
    assert apt == [], apt


def _handed(rehearsal: Rehearsal) -> dict[str, int]:
    return {
        "build -> gate": sum(
            t.bytes for t in rehearsal.transfers if t.artifact.startswith("part-")
        ),
        "gate -> publish": sum(t.bytes for t in rehearsal.transfers if t.artifact == "gated"),
    }


def test_build_publish_workflow_rehearsed_as_pull_requests_then_a_push_to_main(
    tmp_path: Path, namespace: str, trivy_db: TrivyDb, cosign_keys: KeyPair, runner: Runner
) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    sha = _repository(repo)
    env = base_env()
    name = f"rh{uuid.uuid4().hex[:8]}"
    registry = f"{namespace}/{name}"
    cache = f"{namespace}/{name}-cache"
    stage = f"{namespace}/{name}-staging"  # the default branch's: publish reads it
    pr_stage = f"{namespace}/{name}-pr-staging"  # every other ref's: publish never reads it
    overrides = {
        "DCFORGE_REGISTRY": registry,
        "DCFORGE_BASE_REGISTRY": "localhost:5000/library",
        "DCFORGE_CACHE_BACKEND": "registry",
        "DCFORGE_CACHE_REGISTRY": cache,
        "DCFORGE_SIGNING": "key",
        "COSIGN_KEY": str(cosign_keys.key),
        "COSIGN_PUBLIC_KEY": str(cosign_keys.pub),
        "COSIGN_PASSWORD": cosign_keys.password,
        "DCFORGE_TRIVY_DB_REPOSITORY": trivy_db.repository,
    }
    assert set(overrides) == OVERRIDDEN
    secrets = {
        "GITHUB_TOKEN": TOKEN,
        "DCFORGE_STAGING_PASSWORD": "",
        "DCFORGE_PR_STAGING_PASSWORD": "",
    }
    staging_vars = {"DCFORGE_STAGING_REGISTRY": stage, "DCFORGE_PR_STAGING_REGISTRY": pr_stage}
    workflow_doc = yaml.safe_load(WORKFLOW.read_text())

    def rehearse(label: str, event: Event, variables: dict[str, str]) -> Rehearsal:
        (tmp_path / label).mkdir()
        rehearsal = Rehearsal(
            WORKFLOW, repo, tmp_path / label, event, env, overrides, secrets, variables,
            image=UBUNTU_2404,
        )  # fmt: skip
        rehearsal.run()
        _ran_on_the_image(workflow_doc, tmp_path / label)
        return rehearsal

    # --- pull requests: build and gate; nothing published; main's cache untouched --------
    # One hands tarballs on as artifacts (no staging registry configured), one stages.
    plain = rehearse("pr-artifacts", Event("pull_request", "refs/pull/7/merge", sha, _pr(7)), {})
    staged_pr = rehearse(
        "pr-staged", Event("pull_request", "refs/pull/8/merge", sha, _pr(8)), staging_vars
    )
    for rehearsal in (plain, staged_pr):
        jobs = rehearsal.jobs
        assert {n: j.result for n, j in jobs.items()} == {
            "plan": "success", "build": "success", "gate": "success",
            "publish": "skipped", "republish": "skipped",
        }, rehearsal.log()  # fmt: skip
        matrix = json.loads(jobs["plan"].outputs["matrix"])
        assert len(matrix["include"]) == 2  # one clean clone per matrix job
        gate_summary = "".join(s.log for s in jobs["gate"].steps if s.name == "gate")
        assert "tiny-one" in gate_summary
        ran = {cmd for _, cmd in rehearsal.commands}
        for job in ("plan", "build", "gate"):
            for step in workflow_doc["jobs"][job]["steps"]:
                if "run" in step:
                    assert step["run"] in ran
    assert registry_tool.repositories(runner, registry, plain_http=True) == [], "PR published"
    pr_cache = _tags(cache)
    assert pr_cache and all(t.startswith(("pr-7-", "pr-8-")) for t in pr_cache), pr_cache
    pr_staged = mf.load(staged_pr.artifacts["gated"] / "manifest.json")
    assert all(e.staged.startswith(f"{pr_stage}/pr-8/") for e in pr_staged.permutations)

    # --- a push to main: staged, gated by digest, published, signed, verified -----------
    push = rehearse(
        "push",
        Event("push", "refs/heads/main", sha, {
            "ref": "refs/heads/main", "repository": {"default_branch": "main"},
        }),
        staging_vars,
    )  # fmt: skip
    assert {n: j.result for n, j in push.jobs.items()} == {
        "plan": "success", "build": "success", "gate": "success",
        "publish": "success", "republish": "skipped",
    }, push.log()  # fmt: skip
    gated = mf.load(push.artifacts["gated"] / "manifest.json")
    assert {e.name for e in gated.permutations} == {"tiny-one", "tiny-two"}
    assert all(e.staged.startswith(f"{stage}/main/") for e in gated.permutations)
    assert tags_point_at(runner, gated)
    assert any(t.startswith("main-") for t in _tags(cache))
    ran = {cmd for _, cmd in push.commands}
    # Every command but republish's own ran (its nox install is every job's, and ran).
    assert (
        set(commands_of(WORKFLOW)) - ran
        == {s["run"] for s in workflow_doc["jobs"]["republish"]["steps"] if "run" in s} - ran
    )

    # --- what went between the jobs, and what never went anywhere ----------------------
    _nothing_leaked([plain, staged_pr, push], [TOKEN, cosign_keys.password])
    for rehearsal in (staged_pr, push):
        assert not [f for s in rehearsal.artifacts.values() for f in s.rglob("*.tar")]
    artifacts, staged = _handed(plain), _handed(push)
    print(f"\nbytes handed between jobs: artifacts {artifacts}, staging {staged}")
    for hop, size in staged.items():
        assert size * 10 < artifacts[hop], (hop, size, artifacts[hop])
