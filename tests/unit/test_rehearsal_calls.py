"""The rehearsal runs a caller workflow through the reusable workflow it calls as GitHub
does: inputs checked and typed, secrets passed or inherited, the caller's github context,
the called workflow's env and not the caller's, jobs named "<caller>/<job>", outputs
through ``needs``; permissions capped by the caller job, and the OIDC token endpoint
handed only to a job with ``id-token: write``; the fake issuer's endpoint answering it.

No process here: a stand-in for bash takes each ``run:`` step (its text, templated, is
what the step writes to ``GITHUB_OUTPUT``; ``exit N`` fails it) and keeps its
environment. tests/integration/test_rehearsal_calls.py runs real bash."""

from __future__ import annotations

import json
import subprocess
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from tests.integration.actions_runner import Event, Rehearsal
from tests.integration.fake_sigstore import ActionsTokenEndpoint, OidcIssuer, Workflow, verify_token

REUSABLE = "DCFORGE-OWNER/dcforge/.github/workflows/images.yml"
PIN = "0123456789abcdef0123456789abcdef01234567"
ENDPOINT = ActionsTokenEndpoint("http://127.0.0.1:9/actions/token?api-version=2.0", "req-tok")


class Shell:
    """Stands in for ``bash -c``: records each step's script and environment by its
    first line, writes the rest to GITHUB_OUTPUT, fails at ``exit N``."""

    def __init__(self) -> None:
        self.env: dict[str, dict[str, str]] = {}
        self.out: dict[str, dict[str, str]] = {}

    def __call__(
        self, argv: Sequence[str], *, env: dict[str, str], **_: Any
    ) -> subprocess.CompletedProcess[str]:
        first, *lines = argv[-1].splitlines()
        self.env[first] = dict(env)
        kept = [line for line in lines if not line.startswith("exit ")]
        self.out[first] = dict(line.split("=", 1) for line in kept)
        Path(env["GITHUB_OUTPUT"]).write_text("".join(f"{line}\n" for line in kept))
        code = next((int(line[5:]) for line in lines if line.startswith("exit ")), 0)
        return subprocess.CompletedProcess(list(argv), code, "", "")


CALLED = """\
name: images
on:
  workflow_call:
    inputs:
      publish: {type: boolean, required: true}
      registry: {type: string, required: true}
      level: {type: number, default: 3}
      flavour: {type: string, default: "${{ github.ref_name }}-plain"}
      quiet: {type: boolean}
    secrets:
      staging-password: {required: false}
    outputs:
      digest: {value: "${{ jobs.build.outputs.digest }}"}
      built: {value: "${{ jobs.build.result }}"}
env:
  CALLED_ENV: called
jobs:
  build:
    runs-on: ubuntu-24.04
    outputs:
      digest: ${{ steps.b.outputs.digest }}
    steps:
      - id: b
        run: |
          build
          digest=sha256:${{ inputs.registry }}
          publish=${{ inputs.publish == true }} ${{ inputs.publish }}
          level=${{ inputs.level == 3 }} ${{ inputs.level }}
          flavour=${{ inputs.flavour }} quiet=${{ inputs.quiet }}
          job=${{ github.job }}
          workflow_ref=${{ github.workflow_ref }}
          secrets=${{ secrets.staging-password }},${{ secrets.OTHER }},${{ secrets.GITHUB_TOKEN }}
  publish:
    needs: build
    if: inputs.publish
    runs-on: ubuntu-24.04
    steps:
      - run: |
          publish
          digest=${{ needs.build.outputs.digest }}
  pr-only:
    if: github.event_name == 'pull_request'
    runs-on: ubuntu-24.04
    steps:
      - run: pr-only
"""

CALLER = """\
name: ci
on: [push, pull_request]
env:
  CALLER_ENV: caller
jobs:
  check:
    if: github.event_name == 'pull_request'
    uses: {uses}
    permissions:
      contents: read
    with:
      publish: false
      registry: ghcr.io/${{{{ github.repository }}}}
  release:
    if: github.ref == 'refs/heads/main'
    uses: {uses}
    permissions: {{contents: read, packages: write, id-token: write}}
    with: {release_with}
    secrets: {release_secrets}
  after:
    needs: release
    runs-on: ubuntu-24.04
    steps:
      - run: |
          after
          seen=${{{{ needs.release.outputs.digest }}}} ${{{{ needs.release.outputs.built }}}}
"""
RELEASE_WITH = "{publish: true, registry: 'ghcr.io/${{ github.repository }}'}"
CALLER_SECRETS = {
    "DCFORGE_PR_STAGING_PASSWORD": "pr-pass",
    "OTHER": "other",
    "GITHUB_TOKEN": "ghs_t",
}


def _caller(
    uses: str = f"{REUSABLE}@{PIN}", release_with: str = RELEASE_WITH, release_secrets: str = "{}"
) -> str:
    return CALLER.format(uses=uses, release_with=release_with, release_secrets=release_secrets)


def _rehearse(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caller: str,
    called: str = CALLED,
    **given: Any,
) -> tuple[Rehearsal, Shell]:
    """``caller`` rehearsed on a push to main, the called workflow both in the repository
    (``./.github/workflows/images.yml``) and as the local copy of REUSABLE."""
    repo = tmp_path / "repo"
    (repo / ".github/workflows").mkdir(parents=True)
    (repo / ".github/workflows/images.yml").write_text(called)
    (repo / ".github/workflows/ci.yml").write_text(caller)
    shell = Shell()
    monkeypatch.setattr(subprocess, "run", shell)
    rehearsal = Rehearsal(
        repo / ".github/workflows/ci.yml",
        repo,
        tmp_path / "work",
        Event("push", "refs/heads/main", "c" * 40, {"ref": "refs/heads/main"}),
        given.pop("base_env", {"PATH": "/usr/bin"}),
        repository="acme/app",
        workflows={REUSABLE: repo / ".github/workflows/images.yml"},
        **given,
    )
    rehearsal.run()
    return rehearsal, shell


@pytest.mark.parametrize(
    "uses", [f"{REUSABLE}@{PIN}", f"{REUSABLE}@v1", "./.github/workflows/images.yml"]
)
def test_a_call_runs_the_called_jobs_as_the_caller_job_s(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, uses: str
) -> None:
    r, shell = _rehearse(tmp_path, monkeypatch, _caller(uses), secrets=CALLER_SECRETS)
    assert {n: j.result for n, j in r.jobs.items()} == {
        "check": "skipped",
        "release/build": "success",
        "release/publish": "success",
        "release/pr-only": "skipped",  # skipped by its own if: the caller still succeeds
        "release": "success",
        "after": "success",
    }, r.log()
    seen = shell.out["build"]
    assert seen["publish"] == "true true"  # a boolean, not the string 'true'
    assert seen["level"] == "true 3"  # a number
    assert seen["flavour"] == "main-plain quiet=false"  # defaults, one an expression
    assert seen["job"] == "build"
    assert seen["workflow_ref"] == "acme/app/.github/workflows/ci.yml@refs/heads/main"
    assert seen["secrets"] == ",,ghs_t"  # none passed: GITHUB_TOKEN only
    env = shell.env["build"]
    assert env["GITHUB_WORKFLOW_REF"] == seen["workflow_ref"]  # the caller's
    assert (env["GITHUB_JOB"], env["CALLED_ENV"]) == ("build", "called")
    assert "CALLER_ENV" not in env  # the caller's env stays in the caller
    assert shell.env["after"]["CALLER_ENV"] == "caller"
    assert "CALLED_ENV" not in shell.env["after"]
    assert shell.out["publish"]["digest"] == "sha256:ghcr.io/acme/app"
    assert "pr-only" not in shell.env
    assert r.jobs["release"].outputs == {"digest": "sha256:ghcr.io/acme/app", "built": "success"}
    assert shell.out["after"]["seen"] == "sha256:ghcr.io/acme/app success"  # through needs
    assert {run.name for run in r.runs} >= {"release/build", "release/publish", "release"}
    assert [s.job for s in r.jobs["release/publish"].steps] == ["release/publish"]


def test_a_failing_called_job_fails_the_caller_job(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    called = CALLED.replace("          build\n", "          build\n          exit 3\n")
    r, shell = _rehearse(tmp_path, monkeypatch, _caller(), called)
    assert r.jobs["release/build"].result == "failure"
    assert r.jobs["release/publish"].result == "skipped"
    assert r.jobs["release"].result == "failure"
    assert r.jobs["after"].result == "skipped"
    assert set(shell.env) == {"build"}


@pytest.mark.parametrize(
    ("release_with", "release_secrets", "refusal"),
    [
        ("{publish: true, registry: r, colour: red}", "{}", "input colour is not declared"),
        ("{registry: r}", "{}", "input publish is required"),
        ("{publish: '${{ vars.PUBLISH }}', registry: r}", "{}", "Unexpected value 'true' for a boolean"),
        ("{publish: true, registry: r, level: 'three'}", "{}", "Unexpected value 'three' for a number"),
        ("{publish: true, registry: '${{ secrets.OTHER }}'}", "{}", "unknown context 'secrets'"),
        (RELEASE_WITH, "{other: x}", "secrets: other is not declared"),
        (RELEASE_WITH, "[x]", "secrets: must be a mapping or inherit"),
    ],
)  # fmt: skip
def test_a_call_github_refuses_fails_the_caller_job_before_any_called_job(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    release_with: str,
    release_secrets: str,
    refusal: str,
) -> None:
    caller = _caller(release_with=release_with, release_secrets=release_secrets)
    r, shell = _rehearse(
        tmp_path, monkeypatch, caller, variables={"PUBLISH": "true"}, secrets=CALLER_SECRETS
    )
    assert r.jobs["release"].result == "failure"
    assert refusal in r.log()
    assert not [n for n in r.jobs if n.startswith("release/")]
    assert r.jobs["after"].result == "skipped"
    assert shell.env == {}


@pytest.mark.parametrize(
    ("called", "uses", "refusal"),
    [
        (
            CALLED.replace("staging-password: {required: false}", "staging-password: {required: true}"),
            f"{REUSABLE}@{PIN}",
            "secrets: staging-password is required",
        ),
        (CALLED, "acme/other/.github/workflows/x.yml@v1", "the rehearsal has no copy of acme/other/.github/workflows/x.yml"),
        (CALLED, "./.github/workflows/x.yml", "no such workflow in the repository"),
        (CALLED, REUSABLE, "needs an @ref"),
        (CALLED.replace("  workflow_call:", "  workflow_dispatch:"), f"{REUSABLE}@v1", "it is not reusable"),
    ],
)  # fmt: skip
def test_a_call_to_no_reusable_workflow_or_without_a_required_secret_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, called: str, uses: str, refusal: str
) -> None:
    r, shell = _rehearse(tmp_path, monkeypatch, _caller(uses), called)
    assert r.jobs["release"].result == "failure"
    assert refusal in r.log()
    assert shell.env == {}


@pytest.mark.parametrize(
    ("release_secrets", "seen"),
    [
        ("{staging-password: '${{ secrets.DCFORGE_PR_STAGING_PASSWORD }}'}", "pr-pass,,ghs_t"),
        ("inherit", ",other,ghs_t"),  # every secret of the caller, under its own name
    ],
)
def test_secrets_are_passed_by_name_or_inherited(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, release_secrets: str, seen: str
) -> None:
    caller = _caller(release_secrets=release_secrets)
    r, shell = _rehearse(tmp_path, monkeypatch, caller, secrets=CALLER_SECRETS)
    assert r.jobs["release"].result == "success", r.log()
    assert shell.out["build"]["secrets"] == seen


PERMISSIONS_CALLED = """\
on: workflow_call
{top}
jobs:
  reads:
    permissions: {{contents: read}}
    runs-on: ubuntu-24.04
    steps:
      - run: reads
  signs:
    permissions: {{contents: read, id-token: write}}
    runs-on: ubuntu-24.04
    steps:
      - run: signs
  default:
    runs-on: ubuntu-24.04
    steps:
      - run: default
"""
PERMISSIONS_CALLER = """\
on: push
permissions: {contents: read}
jobs:
  plain:
    runs-on: ubuntu-24.04
    steps:
      - run: plain
  own:
    runs-on: ubuntu-24.04
    permissions: write-all
    steps:
      - run: own
  release:
    uses: ./.github/workflows/images.yml
    permissions: {contents: read, packages: write, id-token: write}
"""
GRANTED = {"contents": "read", "packages": "write", "id-token": "write"}
ID_TOKEN_VARS = {"ACTIONS_ID_TOKEN_REQUEST_URL", "ACTIONS_ID_TOKEN_REQUEST_TOKEN"}


@pytest.mark.parametrize(
    ("top", "default"),
    [
        ("", GRANTED),  # no permissions in the called workflow: the caller job's
        ("permissions: {contents: read}", {"contents": "read"}),  # the called workflow's
    ],
)
def test_the_id_token_endpoint_only_where_id_token_write_is_granted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, top: str, default: dict[str, str]
) -> None:
    stale = {"PATH": "/usr/bin", "ACTIONS_ID_TOKEN_REQUEST_URL": "http://stale.invalid/?"}
    r, shell = _rehearse(
        tmp_path, monkeypatch, PERMISSIONS_CALLER, PERMISSIONS_CALLED.format(top=top),
        id_tokens=ENDPOINT, base_env=stale,
    )  # fmt: skip
    assert {n: j.result for n, j in r.jobs.items()} == dict.fromkeys(
        ("plain", "own", "release/reads", "release/signs", "release/default", "release"),
        "success",
    ), r.log()
    permissions = {n: j.permissions for n, j in r.jobs.items()}
    assert permissions["plain"] == {"contents": "read"}  # the workflow's
    assert permissions["own"]["id-token"] == "write"  # write-all: every scope
    assert permissions["release"] == GRANTED
    assert permissions["release/reads"] == {"contents": "read"}
    assert permissions["release/signs"] == {"contents": "read", "id-token": "write"}
    assert permissions["release/default"] == default
    given = {step: ID_TOKEN_VARS & set(env) for step, env in shell.env.items()}
    granted = {"signs", "own"} | ({"default"} if "id-token" in default else set())
    assert given == {s: ID_TOKEN_VARS if s in granted else set() for s in shell.env}
    assert shell.env["signs"]["ACTIONS_ID_TOKEN_REQUEST_URL"] == ENDPOINT.url
    assert shell.env["signs"]["ACTIONS_ID_TOKEN_REQUEST_TOKEN"] == ENDPOINT.request_token


def test_without_an_id_token_service_no_job_has_the_endpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, shell = _rehearse(
        tmp_path, monkeypatch, PERMISSIONS_CALLER, PERMISSIONS_CALLED.format(top="")
    )
    assert not [s for s, env in shell.env.items() if ID_TOKEN_VARS & set(env)]


@pytest.mark.parametrize(
    ("grant", "refusal"),
    [
        ("{contents: read}", "The nested job 'signs' is requesting 'id-token: write', but is only allowed 'id-token: none'."),
        ("{contents: read, id-token: write}", None),
        ("{}", "The nested job 'reads' is requesting 'contents: read', but is only allowed 'contents: none'."),
        ("read-all", "The nested job 'signs' is requesting 'id-token: write', but is only allowed 'id-token: read'."),
        ("{contents: maybe}", "unknown permission contents: maybe"),
    ],
)  # fmt: skip
def test_a_called_job_asking_beyond_the_caller_job_s_grant_fails_the_caller(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, grant: str, refusal: str | None
) -> None:
    caller = PERMISSIONS_CALLER.replace(
        "permissions: {contents: read, packages: write, id-token: write}", f"permissions: {grant}"
    )
    r, shell = _rehearse(tmp_path, monkeypatch, caller, PERMISSIONS_CALLED.format(top=""))
    if refusal is None:
        assert r.jobs["release"].result == "success", r.log()
        return
    assert r.jobs["release"].result == "failure"
    assert refusal in r.log()
    assert not [n for n in r.jobs if n.startswith("release/")]
    assert set(shell.env) == {"plain", "own"}


def test_the_issuer_s_actions_endpoint_mints_for_the_reusable_workflow() -> None:
    run = Workflow(
        repository="acme/app", workflow_file="ci.yml", job_workflow=f"{REUSABLE}@refs/tags/v1"
    )
    issuer = OidcIssuer()
    try:
        endpoint = issuer.serve_actions(run)
        assert "?" in endpoint.url  # cosign and the toolkit append "&audience=…"
        request = urllib.request.Request(
            f"{endpoint.url}&audience=sigstore",
            headers={"Authorization": f"bearer {endpoint.request_token}"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            answer = json.load(response)
        claims = verify_token(answer["value"], frozenset({issuer.url}))
        for wrong in ("bearer nope", f"Basic {endpoint.request_token}", ""):
            headers = {"Authorization": wrong} if wrong else {}
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(urllib.request.Request(endpoint.url, headers=headers))
            refused.value.close()
            assert refused.value.code == 401
    finally:
        issuer.close()
    assert answer["count"] == 1
    assert claims["aud"] == "sigstore"
    assert claims["job_workflow_ref"] == f"{REUSABLE}@refs/tags/v1"
    assert claims["workflow_ref"] == "acme/app/.github/workflows/ci.yml@refs/heads/main"
    assert claims["job_workflow_sha"] != claims["workflow_sha"] == run.sha
    assert run.identity == f"https://github.com/{REUSABLE}@refs/tags/v1"
    pinned = Workflow(job_workflow=f"{REUSABLE}@{PIN}")
    assert pinned.claims()["job_workflow_sha"] == PIN
    plain = Workflow()  # unchanged: its own workflow is the job's
    claims = plain.claims()
    assert claims["workflow_ref"] == claims["job_workflow_ref"] == plain.job_workflow_ref
    assert claims["job_workflow_sha"] == plain.sha


ENVIRONMENT_CALLED = """\
on:
  workflow_call:
    secrets:
      SIGNING_KEY: {required: false}
jobs:
  plain:
    runs-on: ubuntu-24.04
    steps:
      - run: |
          plain
          key=${{ secrets.SIGNING_KEY }}
  guarded:
    runs-on: ubuntu-24.04
    environment: ${{ github.ref == 'refs/heads/main' && 'production' || 'preview' }}
    steps:
      - run: |
          guarded
          key=${{ secrets.SIGNING_KEY }}
"""
ENVIRONMENT_CALLER = """\
on: push
jobs:
  release:
    uses: ./.github/workflows/images.yml
    permissions: {contents: read}
    secrets:
      SIGNING_KEY: ${{ secrets.PASSED }}
"""


def test_an_environment_s_secret_is_seen_only_by_a_job_in_that_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """GitHub: a called job with ``environment:`` gets that environment's secret instead
    of a passed one of the same name; a job without it, the passed one."""
    r, shell = _rehearse(
        tmp_path, monkeypatch, ENVIRONMENT_CALLER, ENVIRONMENT_CALLED,
        secrets={"PASSED": "repository-secret"},
        environments={"production": {"SIGNING_KEY": "production-secret"}},
    )  # fmt: skip
    assert r.jobs["release"].result == "success", r.log()
    assert shell.out["plain"]["key"] == "repository-secret"
    assert shell.out["guarded"]["key"] == "production-secret"
