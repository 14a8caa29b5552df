"""The workflow rehearsal's expression evaluator follows GitHub's documented rules, so
that a job it runs or skips is one Actions would run or skip."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.integration.actions_runner import Event, Rehearsal, _combinations, _read_kv

WORKFLOW = Path(__file__).resolve().parents[2] / ".github/workflows/build-publish.yml"


def _rehearsal(event: str, ref: str, payload: dict[str, Any] | None = None) -> Rehearsal:
    return Rehearsal(WORKFLOW, Path("."), Path("."), Event(event, ref, "0" * 40, payload or {}), {})


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("inputs.manifest_sha == ''", True),  # null == '' (both coerce to 0)
        ("'ABC' == 'abc'", True),  # string equality ignores case
        ("1 == '1'", True),
        ("'' && 'x' || 'fallback'", "fallback"),  # && and || yield operands
        ("'a' && 'b'", "b"),
        ("!github.event.pull_request.head.repo.fork && 'v' || ''", "v"),
        ('fromJSON(\'{"include":[{"a":1}]}\').include[0].a', 1.0),
        ("format('ghcr.io/{0}-staging', 'acme/images')", "ghcr.io/acme/images-staging"),
        ("github.event_name != 'pull_request' && github.ref == 'refs/heads/main'", True),
    ],
)
def test_expressions(expression: str, expected: Any) -> None:
    r = _rehearsal("push", "refs/heads/main")
    scope = {"github": r.github("x"), "inputs": {}, "vars": {}}
    assert r.evaluate(expression, scope) == expected


def test_a_fork_pull_request_gets_no_staging_registry() -> None:
    fork = {"pull_request": {"head": {"repo": {"fork": True}}}}
    r = _rehearsal("pull_request", "refs/pull/1/merge", fork)
    scope = {"github": r.github("x"), "vars": {"DCFORGE_STAGING_REGISTRY": "s"}, "secrets": {}}
    env = r.template(r.doc["env"], scope)
    assert env["DCFORGE_STAGING_REGISTRY"] == ""
    r = _rehearsal("push", "refs/heads/main")
    scope["github"] = r.github("x")
    assert r.template(r.doc["env"], scope)["DCFORGE_STAGING_REGISTRY"] == "s"


def test_the_publish_job_runs_only_for_main() -> None:
    publish = _rehearsal("push", "refs/heads/main").doc["jobs"]["publish"]["if"]
    for event, ref, runs in [
        ("push", "refs/heads/main", True),
        ("pull_request", "refs/pull/3/merge", False),
        ("push", "refs/heads/feature", False),
    ]:
        r = _rehearsal(event, ref)
        assert r.condition(publish, {"github": r.github("publish")}, "success()") is runs


def test_outputs_and_matrices() -> None:
    assert _read_kv("a=1\nm<<EOF\nx\ny\nEOF\nb=2=3\n") == {"a": "1", "m": "x\ny", "b": "2=3"}
    assert _combinations({"include": [{"p": "a"}, {"p": "b"}]}) == [{"p": "a"}, {"p": "b"}]
    assert _combinations({"os": ["x", "y"], "py": [1]}) == [
        {"os": "x", "py": 1},
        {"os": "y", "py": 1},
    ]


STAGING_VARS = {
    "DCFORGE_STAGING_REGISTRY": "ghcr.io/acme/stage",
    "DCFORGE_STAGING_USERNAME": "main-bot",
    "DCFORGE_PR_STAGING_REGISTRY": "ghcr.io/acme/pr-stage",
    "DCFORGE_PR_STAGING_USERNAME": "pr-bot",
}
# What a job in the `staging` environment sees; GitHub gives the environment's secret only
# to a job of the default branch (its deployment branch policy), whatever the file says.
STAGING_SECRETS = {"DCFORGE_STAGING_PASSWORD": "MAIN", "DCFORGE_PR_STAGING_PASSWORD": "PR"}
SAME_REPO_PR = {"pull_request": {"number": 8, "head": {"repo": {"fork": False}}}}


@pytest.mark.parametrize(
    ("event", "ref", "payload", "want"),
    [
        ("push", "refs/heads/main", {}, ("staging", "ghcr.io/acme/stage", "main-bot", "MAIN")),
        ("workflow_dispatch", "refs/heads/main", {}, ("staging", "ghcr.io/acme/stage", "main-bot", "MAIN")),
        ("pull_request", "refs/pull/8/merge", SAME_REPO_PR, ("staging-pr", "ghcr.io/acme/pr-stage", "pr-bot", "PR")),
        ("workflow_dispatch", "refs/heads/feature", {}, ("staging-pr", "ghcr.io/acme/pr-stage", "pr-bot", "PR")),
        ("pull_request", "refs/pull/9/merge", {"pull_request": {"head": {"repo": {"fork": True}}}}, ("staging-pr", "", "pr-bot", "")),
    ],
)  # fmt: skip
def test_only_the_default_branch_stages_where_publish_reads(
    event: str, ref: str, payload: dict[str, Any], want: tuple[str, str, str, str]
) -> None:
    """build and gate: the `staging` environment (the default branch's credential) and the
    default branch's namespace for refs/heads/main only; every other ref the PR namespace
    and its own credential — never the main one, even if it were handed to the job."""
    r = _rehearsal(event, ref, payload)
    scope = {
        "github": r.github("build"),
        "inputs": {},
        "vars": STAGING_VARS,
        "secrets": STAGING_SECRETS,
    }
    workflow_env = r.template(r.doc["env"], scope)
    assert workflow_env["DCFORGE_PR_STAGING_REGISTRY"] == "ghcr.io/acme/pr-stage"
    for job, step in (("build", "build"), ("gate", "gate")):
        body = r.doc["jobs"][job]
        (env,) = [s["env"] for s in body["steps"] if s.get("name") == step]
        got = (
            r.template(body["environment"], scope),
            workflow_env["DCFORGE_STAGING_REGISTRY"],
            r.template(env["DCFORGE_STAGING_USERNAME"], scope),
            r.template(env["DCFORGE_STAGING_PASSWORD"], scope),
        )
        assert got == want, (job, event, ref)


@pytest.mark.parametrize("workflow", ["rollback.yml", "retention.yml", "rescan.yml"])
def test_privileged_jobs_of_other_workflows_run_only_on_main(workflow: str) -> None:
    path = WORKFLOW.with_name(workflow)
    for event, ref, runs in [
        ("workflow_dispatch", "refs/heads/main", True),
        ("schedule", "refs/heads/main", True),  # a schedule's payload has no repository
        ("workflow_dispatch", "refs/heads/feature", False),
    ]:
        r = Rehearsal(path, Path("."), Path("."), Event(event, ref, "0" * 40, {}), {})
        for name, job in r.doc["jobs"].items():
            assert r.condition(job["if"], {"github": r.github(name)}, "success()") is runs
