"""Workflow rules for dcforge's reusable workflow and for the jobs that call one.

A **reusable workflow** (``on: workflow_call``, dcforge's ``images.yml``) runs no nox
session: the caller's checkout gives data only, so nothing of it (its noxfile, its tasks)
runs on the runner. Every ``run:`` there is the dcforge install step (``DCFORGE_INSTALL`` in
:mod:`dcforge.infra.workflows`, at the version the workflow's top-level ``env`` pins, which
must be the checkout's own package version) or ``DCFORGE COMMAND …`` lines, one call a line,
after that step; COMMAND is a real dcforge command (the CLI's, handed in). "Parity with the
sessions" here means: a job holding PRIVILEGED write tokens runs only the commands the
hash-locked sessions run (``LOCKED_SESSIONS``, each session running the command of its
name) plus ``signing-identity``, which reads the job's own OIDC token; any other job may
run any real command.

A **calling job** (a job-level ``uses:``) has no steps: what it may do is what it grants and
passes. Its ``uses:`` is pinned by commit SHA (unless local), it passes secrets by name
(never ``secrets: inherit``), its ``permissions:`` are spelt out, and when it grants
PRIVILEGED tokens a non-default ref cannot publish with them: its ``if:`` or its
``with.publish`` &&-joins the default-branch guard. It cannot run in an environment, so it
passes no environment secret (a called job in an environment reads that environment's).

:func:`dcforge.infra.workflows.problems` applies these rules (pure: a parsed workflow in,
problems out) alongside the shared ones (pins, injection, concurrency, …);
:func:`lint_scaffold` lints the workflow ``dcforge init`` writes, which is such a caller.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Collection
from pathlib import Path
from typing import Any

import yaml

from dcforge.core import scaffold
from dcforge.infra import workflows as shared
from dcforge.infra.runner import Runner

# What a job holding PRIVILEGED write tokens may run: the commands of the hash-locked
# sessions, and signing-identity (who this job signs as, from its own OIDC token).
PRIVILEGED_COMMANDS = shared.LOCKED_SESSIONS | {"signing-identity"}
LOCAL_WORKFLOW = "./.github/workflows/"


def is_reusable(wf: dict[str, Any]) -> bool:
    """Whether the workflow is called by others (``on:`` has ``workflow_call``)."""
    events = wf.get("on") or {}
    return "workflow_call" in ([events] if isinstance(events, str) else list(events))


def job_problems(
    path: Path, job_name: str, job: dict[str, Any], commands: Collection[str], privileged: bool
) -> list[str]:
    """A reusable workflow's job runs dcforge only: installed first, real commands, one a
    line; with PRIVILEGED tokens, only :data:`PRIVILEGED_COMMANDS`."""
    out = []
    for where, lines, installed in shared.run_steps(path, job_name, job, shared.is_dcforge_install):
        calls = [shared.DCFORGE_CALL.fullmatch(line) for line in lines]
        bad = [line for line, call in zip(lines, calls, strict=True) if call is None]
        if bad:
            out.append(
                f"{where}: {bad[0][:60]!r}: a reusable workflow runs only"
                f" {shared.DCFORGE} COMMAND, one call a line (never nox or the caller's code)"
            )
            continue
        if not installed:
            out.append(
                f"{where}: calls {shared.DCFORGE} before a step installs it: run first"
                f" {shared.DCFORGE_INSTALL!r}"
            )
        for command in [call["command"] for call in calls if call]:
            if command not in commands:
                out.append(f"{where}: dcforge has no command {command!r}")
            elif privileged and command not in PRIVILEGED_COMMANDS:
                out.append(
                    f"{where}: this job holds write tokens but runs dcforge {command}: only"
                    f" {sorted(PRIVILEGED_COMMANDS)} may run there"
                )
    return out


def env_problems(path: Path, wf: dict[str, Any]) -> list[str]:
    """What the top-level ``env`` fixes for every job: ``DCFORGE_VERSION`` is the checkout's
    ``[project].version``, ``DCFORGE_SHA256`` a sha256, ``DCFORGE_DIST`` dist; no job or
    step sets any of :data:`FIXED`."""
    pyproject = shared.checkout(path) / "pyproject.toml"
    project = shared.pyproject(path).get("project") or {}
    wanted = project.get("version") if isinstance(project, dict) else None
    pinned = (wf.get("env") or {}).get("DCFORGE_VERSION")
    out = []
    if not isinstance(wanted, str):
        out.append(
            f"{path.name}: no [project].version in {pyproject}: cannot check DCFORGE_VERSION"
        )
    elif str(pinned) != wanted:
        out.append(
            f"{path.name}: env DCFORGE_VERSION is {pinned!r}, the package is {wanted!r}:"
            f" set DCFORGE_VERSION: {wanted!r}"
        )
    top = wf.get("env") or {}
    if not re.fullmatch(r"[0-9a-f]{64}", str(top.get("DCFORGE_SHA256", ""))):
        out.append(f"{path.name}: env DCFORGE_SHA256 must be the published wheel's sha256 (64 hex)")
    if top.get("DCFORGE_DIST") != "dist":
        out.append(
            f"{path.name}: env DCFORGE_DIST must be dist: the artifacts are dist/, and the"
            " caller's [tool.dcforge] must not point publish at files its checkout holds"
        )
    for job_name, job in (wf.get("jobs") or {}).items():
        holders = [job, *(job.get("steps") or [])]
        for name in sorted({n for h in holders for n in (h.get("env") or {})} & FIXED):
            out.append(f"{path.name}: job {job_name} sets {name}: only the top-level env may")
    return out


# Set once for the whole reusable workflow (the state folder by the install step, per job).
FIXED = frozenset({"DCFORGE_VERSION", "DCFORGE_SHA256", "DCFORGE_DIST", "DCFORGE_STATE_DIR"})
# What could run code of the checkout's, or change what a step's shell or Python loads.
RISKY_ENV = re.compile(r"BASH_ENV|ENV|PYTHON\w*|LD_\w+|PIP_\w+|NODE_OPTIONS|GIT_\w+")


def step_problems(path: Path, wf: dict[str, Any]) -> list[str]:
    """No step of a reusable workflow picks its shell or working directory, and no env
    names what makes bash or Python load something else (BASH_ENV, PYTHON*, LD_*, …)."""
    out = []
    holders: list[tuple[str, dict[str, Any]]] = [("env", wf)]
    for job_name, job in (wf.get("jobs") or {}).items():
        holders.append((f"job {job_name}", job))
        for i, step in enumerate(job.get("steps") or []):
            where = f"job {job_name} step {i + 1}"
            holders.append((where, step))
            out += [
                f"{path.name}: {where}: {key}: a reusable workflow's steps run bash in the"
                " job's own directory (the install cds away from the checkout)"
                for key in ("shell", "working-directory")
                if key in step
            ]
    for where, holder in holders:
        out += [
            f"{path.name}: {where}: env {name} could make a step load the caller's code"
            for name in sorted(holder.get("env") or {})
            if RISKY_ENV.fullmatch(str(name))
        ]
    return out


def caller_problems(path: Path, job_name: str, job: dict[str, Any], guard: str) -> list[str]:
    """A job that calls a reusable workflow: pinned, secrets by name, rights spelt out, and
    no publishing off the default branch with PRIVILEGED tokens."""
    where = f"{path.name}: job {job_name}"
    uses, out = str(job["uses"]), []
    if not uses.startswith(LOCAL_WORKFLOW) and not shared.PINNED.match(uses):
        out.append(f"{where}: {uses} is not pinned to a full commit SHA")
    if job.get("secrets") == "inherit":
        out.append(f"{where}: secrets: inherit hands over every secret: pass each by name")
    perms = job.get("permissions")
    if not isinstance(perms, dict):
        out.append(f"{where} calls {uses} without a permissions: mapping: grant what it needs")
        perms = {}
    writes = sorted({k for k, v in perms.items() if v == "write"} & shared.PRIVILEGED)
    publish = (job.get("with") or {}).get("publish")
    if writes and not shared.guarded(job.get("if"), guard) and not shared.guarded(publish, guard):
        out.append(
            f"{where} grants {writes} but may publish off the default branch: give it if:"
            f" {guard}, or with: publish: an expression &&-joining it (no ||)"
        )
    named = sorted(set(shared.SECRET_REF.findall(yaml.safe_dump(job))) & shared.ENVIRONMENT_SECRETS)
    out += [
        f"{where} passes secrets.{name}: a calling job runs in no environment, so it would be"
        " a repository secret (SECRETS.md); the called job's environment holds its own"
        for name in named
    ]
    return out


def lint_scaffold(runner: Runner, config: Path | None, commands: Collection[str]) -> list[str]:
    """:func:`~dcforge.infra.workflows.lint` over the workflows ``dcforge init`` writes,
    rendered with :data:`~dcforge.core.scaffold.EXAMPLE_WORKFLOW_CALL` into a checkout of
    their own; each problem prefixed ``scaffold:``."""
    with tempfile.TemporaryDirectory(prefix="dcforge-scaffold-") as tmp:
        directory = Path(tmp) / ".github" / "workflows"
        directory.mkdir(parents=True)
        for made in scaffold.plan("unknown", scaffold.EXAMPLE_WORKFLOW_CALL):
            if made.path.startswith(".github/workflows/"):
                (Path(tmp) / made.path).write_bytes(made.content)
        return [f"scaffold: {p}" for p in shared.lint(runner, directory, config, commands)]
