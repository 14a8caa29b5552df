"""The rehearsal runs a caller workflow through the reusable workflow it calls, with
real bash steps (no Docker, no stack): typed inputs, the caller's github context, the
called workflow's env and not the caller's, jobs named "<caller>/<job>", outputs through
``needs``, an artifact handed from a called job to a caller job; and a step of a job with
``id-token: write`` fetching its token from the fake issuer as cosign does (curl
``$ACTIONS_ID_TOKEN_REQUEST_URL&audience=sigstore``), no other job seeing the endpoint.
tests/unit/test_rehearsal_calls.py checks the rules without processes."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.integration.actions_runner import Event, Rehearsal
from tests.integration.fake_sigstore import ActionsTokenEndpoint, OidcIssuer, Workflow, verify_token

pytestmark = pytest.mark.integration

REUSABLE = "DCFORGE-OWNER/dcforge/.github/workflows/images.yml"
PIN = "0123456789abcdef0123456789abcdef01234567"
SHA = "c" * 40

CALLED = """\
name: images
on:
  workflow_call:
    inputs:
      publish: {type: boolean, required: true}
      registry: {type: string, required: true}
      staging-registry: {type: string, default: ""}
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
          echo "digest=sha256:${{ inputs.registry }}" >> "$GITHUB_OUTPUT"
          mkdir out && echo built > out/image.txt
      - uses: actions/upload-artifact@v4
        with: {name: image, path: out/image.txt}
      - run: |
          {
            echo "publish=${{ inputs.publish == true }} ${{ inputs.publish }}"
            echo "level=${{ inputs.level == 3 }} ${{ inputs.level }}"
            echo "flavour=${{ inputs.flavour }} quiet=${{ inputs.quiet }}"
            echo "staging=${{ inputs.staging-registry }}"
            echo "job=$GITHUB_JOB ${{ github.job }}"
            echo "workflow_ref=$GITHUB_WORKFLOW_REF ${{ github.workflow_ref }}"
            echo "env=${CALLED_ENV:-unset} ${CALLER_ENV:-unset} ${{ env.CALLED_ENV }}"
          } > "$OUT/build.txt"
  publish:
    needs: build
    if: inputs.publish
    runs-on: ubuntu-24.04
    steps:
      - run: echo "${{ needs.build.outputs.digest }}" > "$OUT/publish.txt"
  pr-only:
    if: github.event_name == 'pull_request'
    runs-on: ubuntu-24.04
    steps:
      - run: echo ran > "$OUT/pr-only.txt"
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
      - uses: actions/download-artifact@v4
        with: {{name: image}}
      - run: |
          echo "${{{{ needs.release.outputs.digest }}}} ${{{{ needs.release.outputs.built }}}}" > "$OUT/after.txt"
          cat image.txt >> "$OUT/after.txt"
"""
RELEASE_WITH = "{publish: true, registry: 'ghcr.io/${{ github.repository }}'}"


def _repo(root: Path, called: str) -> Path:
    """A git repository holding the reusable workflow (for ``uses: ./…``)."""
    repo = root / "repo"
    (repo / ".github/workflows").mkdir(parents=True)
    (repo / ".github/workflows/images.yml").write_text(called)
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    return repo


def _rehearse(
    tmp_path: Path,
    caller: str,
    called: str = CALLED,
    *,
    secrets: dict[str, str] | None = None,
    variables: dict[str, str] | None = None,
    id_tokens: ActionsTokenEndpoint | None = None,
    env: dict[str, str] | None = None,
) -> tuple[Rehearsal, Path]:
    out = tmp_path / "out"
    out.mkdir()
    (tmp_path / "images.yml").write_text(called)
    (tmp_path / "ci.yml").write_text(caller)
    base = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "OUT": str(out), **(env or {})}
    (tmp_path / "work").mkdir()
    rehearsal = Rehearsal(
        tmp_path / "ci.yml",
        _repo(tmp_path, called),
        tmp_path / "work",
        Event("push", "refs/heads/main", SHA, {"ref": "refs/heads/main"}),
        base,
        secrets=secrets or {},
        variables=variables or {},
        repository="acme/app",
        workflows={REUSABLE: tmp_path / "images.yml"},
        id_tokens=id_tokens,
    )
    rehearsal.run()
    return rehearsal, out


def _caller(
    uses: str = f"{REUSABLE}@{PIN}", release_with: str = RELEASE_WITH, release_secrets: str = "{}"
) -> str:
    return CALLER.format(uses=uses, release_with=release_with, release_secrets=release_secrets)


def _lines(path: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in path.read_text().splitlines())


@pytest.mark.parametrize(
    "uses", [f"{REUSABLE}@{PIN}", f"{REUSABLE}@v1", "./.github/workflows/images.yml"]
)
def test_a_call_runs_the_called_jobs_as_the_caller_job_s(tmp_path: Path, uses: str) -> None:
    r, out = _rehearse(tmp_path, _caller(uses))
    assert {n: j.result for n, j in r.jobs.items()} == {
        "check": "skipped",
        "release/build": "success",
        "release/publish": "success",
        "release/pr-only": "skipped",  # skipped by its own if: the caller still succeeds
        "release": "success",
        "after": "success",
    }, r.log()
    seen = _lines(out / "build.txt")
    assert seen["publish"] == "true true"  # a boolean, not the string 'true'
    assert seen["level"] == "true 3"  # a number
    assert seen["flavour"] == "main-plain quiet=false"  # defaults, one an expression
    assert seen["staging"] == ""
    assert seen["job"] == "build build"
    caller_ref = "acme/app/.github/workflows/ci.yml@refs/heads/main"
    assert seen["workflow_ref"] == f"{caller_ref} {caller_ref}"  # the caller's github context
    assert seen["env"] == "called unset called"  # the called workflow's env, not the caller's
    assert (out / "publish.txt").read_text() == "sha256:ghcr.io/acme/app\n"
    assert not (out / "pr-only.txt").exists()
    assert r.jobs["release"].outputs == {"digest": "sha256:ghcr.io/acme/app", "built": "success"}
    # outputs through needs, and an artifact of the called workflow downloaded by the caller
    assert (out / "after.txt").read_text() == "sha256:ghcr.io/acme/app success\nbuilt\n"
    assert {run.name for run in r.runs} >= {"release/build", "release/publish", "release"}


PERMISSIONS_CALLED = """\
on: workflow_call
{top}
jobs:
  reads:
    permissions: {{contents: read}}
    runs-on: ubuntu-24.04
    steps:
      - run: echo "${{ACTIONS_ID_TOKEN_REQUEST_URL:-none}}" > "$OUT/reads.txt"
  signs:
    permissions: {{contents: read, id-token: write}}
    runs-on: ubuntu-24.04
    steps:
      - run: |
          curl -sf -H "Authorization: bearer $ACTIONS_ID_TOKEN_REQUEST_TOKEN" \\
            "$ACTIONS_ID_TOKEN_REQUEST_URL&audience=sigstore" > "$OUT/signs.json"
  default:
    runs-on: ubuntu-24.04
    steps:
      - run: echo "${{ACTIONS_ID_TOKEN_REQUEST_URL:-none}}" > "$OUT/default.txt"
"""
PERMISSIONS_CALLER = """\
on: push
permissions: {contents: read}
jobs:
  plain:
    runs-on: ubuntu-24.04
    steps:
      - run: echo "${ACTIONS_ID_TOKEN_REQUEST_URL:-none}" > "$OUT/plain.txt"
  release:
    uses: ./.github/workflows/images.yml
    permissions: {contents: read, packages: write, id-token: write}
"""


@pytest.mark.parametrize(
    ("top", "default"),
    [
        ("", {"contents": "read", "packages": "write", "id-token": "write"}),  # the caller job's
        ("permissions: {contents: read}", {"contents": "read"}),  # the called workflow's
    ],
)
def test_the_id_token_endpoint_only_where_id_token_write_is_granted(
    tmp_path: Path, top: str, default: dict[str, str]
) -> None:
    called = PERMISSIONS_CALLED.format(top=top)
    issuer = OidcIssuer()
    try:
        endpoint = issuer.serve_actions(
            Workflow(repository="acme/app", workflow_file="ci.yml", job_workflow=REUSABLE + "@v1")
        )
        r, out = _rehearse(
            tmp_path, PERMISSIONS_CALLER, called, id_tokens=endpoint,
            env={"ACTIONS_ID_TOKEN_REQUEST_URL": "http://stale.invalid/?"},
        )  # fmt: skip
        token = json.loads((out / "signs.json").read_text())["value"]
        assert verify_token(token, frozenset({issuer.url}))["job_workflow_ref"] == REUSABLE + "@v1"
    finally:
        issuer.close()
    assert {n: j.result for n, j in r.jobs.items()} == dict.fromkeys(
        ("plain", "release/reads", "release/signs", "release/default", "release"), "success"
    ), r.log()
    assert r.jobs["plain"].permissions == {"contents": "read"}
    assert r.jobs["release"].permissions == {
        "contents": "read",
        "packages": "write",
        "id-token": "write",
    }
    assert r.jobs["release/reads"].permissions == {"contents": "read"}
    assert r.jobs["release/signs"].permissions == {"contents": "read", "id-token": "write"}
    assert r.jobs["release/default"].permissions == default
    assert (out / "plain.txt").read_text() == "none\n"  # not even base_env's
    assert (out / "reads.txt").read_text() == "none\n"
    want = endpoint.url if "id-token" in default else "none"
    assert (out / "default.txt").read_text() == f"{want}\n"
