"""Run a GitHub Actions workflow file the way Actions would, on this machine.

Jobs in ``needs`` order, each job's ``if:`` and each step's ``if:`` evaluated with GitHub's
expression rules (loose equality, ``&&``/``||`` yielding operands, ``fromJSON``,
``hashFiles``, status functions); a matrix from its expression, one clean clone per matrix
job; ``run:`` steps through ``bash --noprofile --norc -eo pipefail`` with ``CI``,
``GITHUB_*`` and the ``GITHUB_OUTPUT``/``GITHUB_ENV``/``GITHUB_STEP_SUMMARY`` files set as
the runner sets them; job outputs from step outputs; artifacts handed between jobs as
files (``upload-artifact``'s least-common-ancestor root, ``download-artifact`` by name or
pattern); ``GITHUB_PATH`` as the runner applies it. With ``image`` (runner_images.py) every
``run:`` step sees this machine as that runner image, and the setup actions leave what they
leave there (emulation registered as setup-qemu-action does, cosign, oras and the
requested Python on ``GITHUB_PATH``: a job's own ``python -m venv`` and hash-locked
``pip install`` of nox then run as written, with no stand-in for nox); without it, actions
that only install what this machine has
(setup-python, setup-qemu, setup-buildx, setup-oras, cosign-installer, the runtime-token
action) are no-ops. Any action this module does not know fails the run, so a new action in
the workflow cannot slip past the rehearsal.

A job with ``uses:`` runs a reusable workflow (``on: workflow_call``) as GitHub does
(actions_calls.py checks the call): a workflow of this repository (``./.github/…``) or
the local copy ``workflows`` maps the ``uses:`` value (without its ``@ref``) to; its
inputs from ``with:`` (typed, defaults applied), its secrets from ``secrets:`` (or
``inherit``), the caller's ``github`` context and ``vars``, its own top-level ``env``
(not the caller's). Its jobs are recorded as ``"<caller job>/<its job>"``; the caller job
fails if one of them fails, and its outputs are ``on.workflow_call.outputs``. Artifacts
are shared across them, as within one run.

Each job records the permissions of its ``GITHUB_TOKEN``: its own ``permissions:``, else
its workflow's, else (in a called workflow) its caller job's, else the restricted
default; a called workflow's job asking for more than its caller job has fails the
caller job. With ``id_tokens``, a job with ``id-token: write`` gets
``ACTIONS_ID_TOKEN_REQUEST_URL`` and ``ACTIONS_ID_TOKEN_REQUEST_TOKEN``; no other job
has them.

``environments`` holds environment secrets: a job whose ``environment:`` names one sees
its secrets over the others, in a called workflow too (GitHub uses an environment's secret
instead of a passed one of the same name).

``overrides`` replaces the values of named environment variables after the workflow's own
(the endpoints a local run needs: registry, cache, signing); every one must be a variable
the workflow sets or a credential, and the test says which. ``job_overrides`` does the
same for one job alone (by its recorded name, ``caller/job`` in a called workflow): where
the workflow sets a variable in that job only, so must the override.
"""

from __future__ import annotations

import fnmatch
import glob
import hashlib
import json
import math
import os
import re
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import yaml

from tests.integration.actions_calls import (
    ID_TOKEN_VARS,
    CallError,
    call_inputs,
    call_secrets,
    check_nested,
    job_permissions,
    locate,
    workflow_call,
)
from tests.integration.runner_images import RunnerImage

# --- expressions ---------------------------------------------------------------------

_TOKEN = re.compile(
    r"\s*(?:(?P<str>'(?:[^']|'')*')|(?P<num>-?\d+(?:\.\d+)?)|(?P<op>==|!=|<=|>=|&&|\|\||[!<>()\[\].,*])"
    r"|(?P<name>[A-Za-z_][A-Za-z0-9_-]*))"
)


def _tokens(text: str) -> list[tuple[str, str]]:
    out, pos = [], 0
    text = text.strip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise ValueError(f"cannot parse expression at {text[pos:]!r}")
        kind = m.lastgroup or ""
        out.append((kind, m.group(kind)))
        pos = m.end()
    return out


def _number(v: Any) -> float:  # noqa: PLR0911 (GitHub's coercion table)
    if v is None:
        return 0.0
    if isinstance(v, bool):
        return 1.0 if v else 0.0
    if isinstance(v, (int, float)):
        return float(v)
    if isinstance(v, str):
        if v.strip() == "":
            return 0.0
        try:
            return float(v)
        except ValueError:
            return float("nan")
    return float("nan")


def _equal(a: Any, b: Any) -> bool:
    if type(a) is type(b) or (isinstance(a, (int, float)) and isinstance(b, (int, float))):
        if isinstance(a, str):
            return bool(a.lower() == b.lower())
        if isinstance(a, (dict, list)):
            return a is b
        return bool(a == b)
    return _number(a) == _number(b)


def truthy(v: Any) -> bool:
    if isinstance(v, float) and math.isnan(v):
        return False
    return v not in (None, False, 0, 0.0, "")


def to_string(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    if isinstance(v, (dict, list)):
        return json.dumps(v)
    return str(v)


class _Parser:
    def __init__(self, text: str, scope: Mapping[str, Any], functions: Mapping[str, Any]):
        self.toks, self.i, self.scope, self.functions = _tokens(text), 0, scope, functions

    def peek(self) -> tuple[str, str]:
        return self.toks[self.i] if self.i < len(self.toks) else ("end", "")

    def take(self, value: str | None = None) -> tuple[str, str]:
        tok = self.peek()
        if value is not None and tok[1] != value:
            raise ValueError(f"expected {value!r}, found {tok[1]!r}")
        self.i += 1
        return tok

    def parse(self) -> Any:
        value = self.or_()
        if self.peek()[0] != "end":
            raise ValueError(f"unexpected {self.peek()[1]!r}")
        return value

    def or_(self) -> Any:
        left = self.and_()
        while self.peek()[1] == "||":
            self.take()
            right = self.and_()
            left = left if truthy(left) else right
        return left

    def and_(self) -> Any:
        left = self.cmp()
        while self.peek()[1] == "&&":
            self.take()
            right = self.cmp()
            left = right if truthy(left) else left
        return left

    def cmp(self) -> Any:
        left = self.unary()
        while self.peek()[1] in ("==", "!=", "<", "<=", ">", ">="):
            op = self.take()[1]
            right = self.unary()
            if op == "==":
                left = _equal(left, right)
            elif op == "!=":
                left = not _equal(left, right)
            else:
                a, b = _number(left), _number(right)
                left = {"<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b}[op]
        return left

    def unary(self) -> Any:
        if self.peek()[1] == "!":
            self.take()
            return not truthy(self.unary())
        return self.postfix()

    def postfix(self) -> Any:
        value = self.primary()
        while self.peek()[1] in (".", "["):
            if self.take()[1] == ".":
                key: Any = self.take()[1]
            else:
                key = self.or_()
                self.take("]")
            value = _index(value, key)
        return value

    def primary(self) -> Any:  # noqa: PLR0911 (one return per kind of token)
        kind, text = self.take()
        if kind == "str":
            return text[1:-1].replace("''", "'")
        if kind == "num":
            return float(text)
        if text == "(":
            value = self.or_()
            self.take(")")
            return value
        if kind == "name":
            if text in ("true", "false"):
                return text == "true"
            if text == "null":
                return None
            if self.peek()[1] == "(":
                self.take()
                args = []
                while self.peek()[1] != ")":
                    args.append(self.or_())
                    if self.peek()[1] == ",":
                        self.take()
                self.take(")")
                fn = self.functions.get(text.lower())
                if fn is None:
                    raise ValueError(f"unknown function {text}()")
                return fn(*args)
            if text not in self.scope:
                raise ValueError(f"unknown context {text!r}")
            return self.scope[text]
        raise ValueError(f"unexpected {text!r}")


def _index(value: Any, key: Any) -> Any:
    if isinstance(value, dict):
        for k, v in value.items():
            if isinstance(key, str) and k.lower() == key.lower():
                return v
        return None
    if isinstance(value, list) and isinstance(key, float) and key.is_integer():
        return value[int(key)] if 0 <= int(key) < len(value) else None
    return None


# --- the runner ----------------------------------------------------------------------

NO_OP_ACTIONS = frozenset(
    {
        "actions/setup-python",
        "docker/setup-qemu-action",
        "docker/setup-buildx-action",
        "crazy-max/ghaction-github-runtime",
        "oras-project/setup-oras",
        "sigstore/cosign-installer",
    }
)


@dataclass
class Event:
    name: str  # push | pull_request | workflow_dispatch
    ref: str
    sha: str
    payload: dict[str, Any] = field(default_factory=dict)
    inputs: dict[str, Any] = field(default_factory=dict)


@dataclass
class StepRun:
    job: str
    name: str
    outcome: str  # success | failure | skipped
    log: str = ""


@dataclass
class JobRun:
    name: str  # a called workflow's job: "<caller job>/<its job>"
    result: str  # success | failure | skipped
    outputs: dict[str, str] = field(default_factory=dict)
    steps: list[StepRun] = field(default_factory=list)
    workspace: Path | None = None
    permissions: dict[str, str] = field(default_factory=dict)  # the job's GITHUB_TOKEN's


class IdTokenService(Protocol):
    """Where a job with ``id-token: write`` asks for its OIDC token: the runner's
    ``ACTIONS_ID_TOKEN_REQUEST_URL`` and ``ACTIONS_ID_TOKEN_REQUEST_TOKEN``."""

    @property
    def url(self) -> str: ...

    @property
    def request_token(self) -> str: ...


@dataclass
class _Frame:
    """The workflow whose jobs run: the rehearsed one, or one a job calls (``uses:``)."""

    doc: Mapping[str, Any]
    inputs: Mapping[str, Any]
    secrets: Mapping[str, str]
    prefix: str = ""  # "<caller job>/" in a called workflow
    granted: Mapping[str, str] | None = None  # the caller job's permissions
    jobs: dict[str, JobRun] = field(default_factory=dict)  # by the workflow's own job ids


@dataclass
class _JobState:
    """One job instance as its steps run: what they see and what they leave."""

    record: JobRun
    runner_dir: Path
    scope: dict[str, Any]  # the job's expression contexts, secrets included
    defaults: dict[str, str]  # what the runner sets
    declared: dict[str, str]  # the workflow's env, then the job's
    added_env: dict[str, str] = field(default_factory=dict)  # GITHUB_ENV
    added_path: list[str] = field(default_factory=list)  # GITHUB_PATH, newest first
    steps: dict[str, Any] = field(default_factory=dict)  # the steps context


@dataclass
class Transfer:
    artifact: str
    upload_job: str
    files: int
    bytes: int


@dataclass
class Rehearsal:
    workflow: Path
    repo: Path  # a git repository the jobs clone (at event.sha)
    work: Path
    event: Event
    base_env: Mapping[str, str]
    overrides: Mapping[str, str] = field(default_factory=dict)
    secrets: Mapping[str, str] = field(default_factory=dict)
    variables: Mapping[str, str] = field(default_factory=dict)  # the `vars` context
    repository: str = "acme/images"
    image: RunnerImage | None = None  # the runner image the jobs see (runner_images.py)
    # `uses:` of a reusable workflow without its @ref → the local file rehearsed for it
    workflows: Mapping[str, Path] = field(default_factory=dict)
    id_tokens: IdTokenService | None = None  # for jobs with `id-token: write`
    job_overrides: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    # environment name → its secrets: a job with `environment:` sees them over the others
    # (in a called workflow too, where GitHub uses them instead of a passed secret)
    environments: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    jobs: dict[str, JobRun] = field(default_factory=dict)
    runs: list[JobRun] = field(default_factory=list)
    artifacts: dict[str, Path] = field(default_factory=dict)
    transfers: list[Transfer] = field(default_factory=list)
    downloads: list[tuple[str, str, int]] = field(default_factory=list)  # job, artifact, bytes
    commands: list[tuple[str, str]] = field(default_factory=list)  # job, run: text
    _instance: int = 0

    def __post_init__(self) -> None:
        self.doc = yaml.safe_load(self.workflow.read_text())
        self.run_id = "4242"

    # contexts
    def github(self, job: str) -> dict[str, Any]:
        ref = self.event.ref
        return {
            "event_name": self.event.name,
            "ref": ref,
            "ref_name": ref.split("/", 2)[-1],
            "sha": self.event.sha,
            "repository": self.repository,
            "repository_owner": self.repository.split("/")[0],
            "run_id": self.run_id,
            "run_number": "7",
            "run_attempt": "1",
            "server_url": "https://github.com",
            "api_url": "https://api.github.com",
            "workflow": self.doc.get("name", ""),
            "workflow_ref": f"{self.repository}/.github/workflows/{self.workflow.name}@{ref}",
            "job": job,
            "event": self.event.payload,
            "actor": "rehearsal",
            "head_ref": self.event.payload.get("pull_request", {}).get("head", {}).get("ref", ""),
            "base_ref": self.event.payload.get("pull_request", {}).get("base", {}).get("ref", ""),
        }

    def evaluate(self, text: str, scope: Mapping[str, Any], cwd: Path | None = None) -> Any:
        def hash_files(*patterns: str) -> str:
            found = sorted(
                p for pat in patterns for p in glob.glob(str((cwd or self.work) / pat))
                if os.path.isfile(p)
            )  # fmt: skip
            if not found:
                return ""
            h = hashlib.sha256()
            for p in found:
                h.update(hashlib.sha256(Path(p).read_bytes()).digest())
            return h.hexdigest()

        status = scope.get("__status__", "success")
        functions = {
            "fromjson": lambda s: json.loads(to_string(s)),
            "tojson": lambda v: json.dumps(v, indent=2),
            "contains": lambda a, b: (
                any(_equal(x, b) for x in a)
                if isinstance(a, list)
                else to_string(b).lower() in to_string(a).lower()
            ),
            "startswith": lambda a, b: to_string(a).lower().startswith(to_string(b).lower()),
            "endswith": lambda a, b: to_string(a).lower().endswith(to_string(b).lower()),
            "format": lambda f, *a: re.sub(
                r"\{(\d+)\}", lambda m: to_string(a[int(m.group(1))]), to_string(f)
            ),
            "join": lambda a, sep=",": to_string(sep).join(to_string(x) for x in a),
            "hashfiles": hash_files,
            "always": lambda: True,
            "success": lambda: status == "success",
            "failure": lambda: status == "failure",
            "cancelled": lambda: False,
        }
        return _Parser(text, scope, functions).parse()

    def template(self, value: Any, scope: Mapping[str, Any], cwd: Path | None = None) -> Any:
        """``${{ … }}`` in a value: a lone expression keeps its type, else interpolation."""
        if isinstance(value, dict):
            return {k: self.template(v, scope, cwd) for k, v in value.items()}
        if isinstance(value, list):
            return [self.template(v, scope, cwd) for v in value]
        if not isinstance(value, str) or "${{" not in value:
            return value
        whole = re.fullmatch(r"\s*\$\{\{(.*?)\}\}\s*", value, re.S)
        if whole and "${{" not in whole.group(1):
            return self.evaluate(whole.group(1), scope, cwd)
        return re.sub(
            r"\$\{\{(.*?)\}\}",
            lambda m: to_string(self.evaluate(m.group(1), scope, cwd)),
            value,
            flags=re.S,
        )

    def condition(self, cond: Any, scope: Mapping[str, Any], default: str) -> bool:
        if cond is None:
            cond = default
        if isinstance(cond, bool):
            return cond
        text = str(cond).strip()
        m = re.fullmatch(r"\$\{\{(.*)\}\}", text, re.S)
        text = m.group(1) if m else text
        if not re.search(r"\b(always|success|failure|cancelled)\(", text):
            text = f"success() && ({text})"
        return truthy(self.evaluate(text, scope))

    # the run
    def run(self) -> dict[str, JobRun]:
        self._run_jobs(_Frame(self.doc, self.event.inputs, self.secrets))
        return self.jobs

    def _run_jobs(self, frame: _Frame) -> None:
        pending = dict(frame.doc["jobs"])
        while pending:
            ready = [
                name for name, job in pending.items()
                if all(n in frame.jobs for n in _needs(job))
            ]  # fmt: skip
            if not ready:
                raise ValueError(f"jobs with unmet needs: {sorted(pending)}")
            for name in ready:
                record = self._job(name, pending.pop(name), frame)
                frame.jobs[name] = self.jobs[frame.prefix + name] = record

    def _needs_context(self, job: Mapping[str, Any], frame: _Frame) -> dict[str, Any]:
        return {
            n: {"result": frame.jobs[n].result, "outputs": frame.jobs[n].outputs}
            for n in _needs(job)
        }

    def _job(self, name: str, job: Mapping[str, Any], frame: _Frame) -> JobRun:
        needs = self._needs_context(job, frame)
        upstream_ok = all(n["result"] == "success" for n in needs.values())
        scope = {
            "github": self.github(name),
            "inputs": dict(frame.inputs),
            "needs": needs,
            "vars": dict(self.variables),
            "__status__": "success" if upstream_ok else "failure",
        }
        full = frame.prefix + name
        if not self.condition(job.get("if"), scope, "success()"):
            return JobRun(full, "skipped")
        if "uses" in job:
            return self._call(full, job, scope, frame)
        permissions = job_permissions(job, frame.doc, frame.granted)
        matrix = (job.get("strategy") or {}).get("matrix")
        combos = _combinations(self.template(matrix, scope)) if matrix is not None else [{}]
        runs = [
            self._instance_run(name, job, {**scope, "matrix": c}, frame, permissions)
            for c in combos
        ]
        result = "success" if all(r.result == "success" for r in runs) else "failure"
        outputs: dict[str, str] = {}
        for r in runs:
            outputs.update(r.outputs)
        steps = [s for r in runs for s in r.steps]
        return JobRun(full, result, outputs, steps, permissions=permissions)

    # reusable workflows
    def _call(
        self, name: str, job: Mapping[str, Any], scope: dict[str, Any], frame: _Frame
    ) -> JobRun:
        """A job that runs a reusable workflow: its jobs in their ``needs`` order, each
        recorded as "<name>/<its job>"; this job's outputs from ``on.workflow_call.outputs``.
        A call GitHub would refuse fails this job before any of them runs."""
        uses = str(job["uses"])
        record = JobRun(name, "success")
        try:
            record.permissions = job_permissions(job, frame.doc, frame.granted)
            called, spec, inputs, secrets = self._resolve_call(job, scope, frame, record)
        except CallError as err:
            return self._called(record, uses, f"{uses}: {err}", failed=True)
        inner = _Frame(called, inputs, secrets, f"{name}/", record.permissions)
        self._run_jobs(inner)
        jobs = {n: {"result": r.result, "outputs": r.outputs} for n, r in inner.jobs.items()}
        out_scope = {**scope, "inputs": inputs, "jobs": jobs}
        record.outputs = {
            k: to_string(self.template((v or {}).get("value"), out_scope))
            for k, v in (spec.get("outputs") or {}).items()
        }
        failed = sorted(n for n, r in inner.jobs.items() if r.result == "failure")
        results = ", ".join(f"{n}: {r.result}" for n, r in inner.jobs.items())
        log = f"called {uses} with inputs {sorted(inputs)}, secrets {sorted(secrets)}: {results}"
        return self._called(record, uses, log, failed=bool(failed))

    def _resolve_call(
        self, job: Mapping[str, Any], scope: dict[str, Any], frame: _Frame, record: JobRun
    ) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any], dict[str, str]]:
        """The called workflow, its ``on.workflow_call``, and the inputs and secrets it
        gets; CallError for what GitHub refuses when the run starts."""
        if "steps" in job or "strategy" in job:
            raise CallError("a job with uses: has no steps (and the rehearsal calls no matrix)")
        called = yaml.safe_load(locate(str(job["uses"]), self.repo, self.workflows).read_text())
        spec = workflow_call(called)
        try:  # with: sees github, needs, vars and inputs, not secrets
            given = self.template(job.get("with") or {}, scope)
        except ValueError as err:
            raise CallError(f"with: {err}") from None
        inputs = call_inputs(
            spec.get("inputs") or {},
            given,
            lambda v: self.template(v, {"github": scope["github"]}),
            to_string,
        )
        secret_scope = {**scope, "secrets": dict(frame.secrets)}
        secrets = call_secrets(
            spec.get("secrets") or {},
            job.get("secrets", {}),
            frame.secrets,
            lambda v: self.template(v, secret_scope),
            to_string,
        )
        check_nested(called, record.permissions)
        return called, spec, inputs, secrets

    def _called(self, record: JobRun, uses: str, log: str, *, failed: bool) -> JobRun:
        record.result = "failure" if failed else "success"
        record.steps.append(StepRun(record.name, f"uses: {uses}", record.result, log))
        self.runs.append(record)
        return record

    # one job
    def _instance_run(
        self,
        name: str,
        job: Mapping[str, Any],
        scope: dict[str, Any],
        frame: _Frame,
        permissions: dict[str, str],
    ) -> JobRun:
        self._instance += 1
        full = frame.prefix + name
        workspace = self.work / f"{full.replace('/', '-')}-{self._instance}"
        workspace.mkdir(parents=True)  # empty until a checkout, as the runner leaves it
        runner_dir = self.work / f"_runner-{self._instance}"
        (runner_dir / "temp").mkdir(parents=True)
        if self.image is not None:
            self.image.prepare(runner_dir)
        env_scope = {**scope, "secrets": {**frame.secrets, **self._environment_secrets(job, scope)}}
        state = _JobState(
            JobRun(full, "success", workspace=workspace, permissions=permissions),
            runner_dir,
            env_scope,
            self._defaults(name, scope["github"], workspace, runner_dir, permissions),
            {
                **_strings(self.template(frame.doc.get("env") or {}, env_scope)),
                **_strings(self.template(job.get("env") or {}, env_scope)),
            },
        )
        for index, step in enumerate(job.get("steps") or []):
            self._job_step(state, index, step)
        out_scope = {**env_scope, "steps": state.steps}
        state.record.outputs = _strings(self.template(job.get("outputs") or {}, out_scope))
        self.runs.append(state.record)
        return state.record

    def _defaults(
        self,
        job: str,
        github: Mapping[str, Any],
        workspace: Path,
        runner_dir: Path,
        permissions: Mapping[str, str],
    ) -> dict[str, str]:
        """The variables the runner sets for every step of a job."""
        event_path = runner_dir / "event.json"
        event_path.write_text(json.dumps(self.event.payload))
        id_token: dict[str, str] = {}
        if self.id_tokens is not None and permissions.get("id-token") == "write":
            url, token = ID_TOKEN_VARS
            id_token = {url: self.id_tokens.url, token: self.id_tokens.request_token}
        return {
            "CI": "true",
            "GITHUB_ACTIONS": "true",
            "GITHUB_EVENT_NAME": self.event.name,
            "GITHUB_EVENT_PATH": str(event_path),
            "GITHUB_REF": self.event.ref,
            "GITHUB_REF_NAME": github["ref_name"],
            "GITHUB_SHA": self.event.sha,
            "GITHUB_REPOSITORY": self.repository,
            "GITHUB_REPOSITORY_OWNER": github["repository_owner"],
            "GITHUB_RUN_ID": self.run_id,
            "GITHUB_RUN_NUMBER": "7",
            "GITHUB_RUN_ATTEMPT": "1",
            "GITHUB_SERVER_URL": github["server_url"],
            "GITHUB_API_URL": github["api_url"],
            "GITHUB_WORKFLOW": github["workflow"],
            "GITHUB_WORKFLOW_REF": github["workflow_ref"],
            "GITHUB_JOB": job,
            "GITHUB_ACTOR": "rehearsal",
            "GITHUB_WORKSPACE": str(workspace),
            "GITHUB_HEAD_REF": github["head_ref"],
            "GITHUB_BASE_REF": github["base_ref"],
            "RUNNER_OS": "Linux",
            "RUNNER_TEMP": str(runner_dir / "temp"),
            **id_token,
        }

    def _environment_secrets(self, job: Mapping[str, Any], scope: dict[str, Any]) -> dict[str, str]:
        named = job.get("environment")
        if isinstance(named, dict):
            named = named.get("name")
        if not named:
            return {}
        return dict(self.environments.get(to_string(self.template(named, scope)), {}))

    def _job_step(self, state: _JobState, index: int, step: Mapping[str, Any]) -> None:
        record = state.record
        step_id = step.get("id") or f"__{index}"
        step_scope = {
            **state.scope,
            "steps": state.steps,
            "env": {**state.declared, **state.added_env},
            # the runner context of a step (docs: contexts, runner): its temp directory
            "runner": {"temp": state.defaults["RUNNER_TEMP"], "os": "Linux", "arch": "X64"},
            "__status__": record.result,
        }
        label = step.get("name") or step.get("uses") or step.get("run", "")[:40]
        if not self.condition(step.get("if"), step_scope, "success()"):
            record.steps.append(StepRun(record.name, label, "skipped"))
            state.steps[step_id] = {"outputs": {}, "outcome": "skipped"}
            return
        step_env = _strings(self.template(step.get("env") or {}, step_scope))
        files = {
            "GITHUB_OUTPUT": state.runner_dir / f"output-{index}",
            "GITHUB_ENV": state.runner_dir / f"env-{index}",
            "GITHUB_STEP_SUMMARY": state.runner_dir / f"summary-{index}.md",
            "GITHUB_PATH": state.runner_dir / f"path-{index}",
        }
        for f in files.values():
            f.touch()
        env = {
            **{k: v for k, v in self.base_env.items() if k not in ID_TOKEN_VARS},
            **state.defaults,
            **state.declared,
            **state.added_env,
            **step_env,
            **{k: str(v) for k, v in files.items()},
            **self.overrides,
            **self.job_overrides.get(record.name, {}),
        }
        if state.added_path:
            env["PATH"] = os.pathsep.join([*state.added_path, env.get("PATH", os.defpath)])
        assert record.workspace is not None
        ok, log = self._step(record.name, step, step_scope, env, record.workspace)
        state.added_path[:0] = reversed(files["GITHUB_PATH"].read_text().split())
        outputs = _read_kv(files["GITHUB_OUTPUT"].read_text())
        state.added_env.update(_read_kv(files["GITHUB_ENV"].read_text()))
        summary = files["GITHUB_STEP_SUMMARY"].read_text()
        outcome = "success" if ok else "failure"
        record.steps.append(StepRun(record.name, label, outcome, log + summary))
        state.steps[step_id] = {"outputs": outputs, "outcome": outcome}
        if not ok:
            record.result = "failure"

    def _step(  # noqa: PLR0911 (one return per kind of step)
        self,
        job: str,
        step: Mapping[str, Any],
        scope: Mapping[str, Any],
        env: Mapping[str, str],
        workspace: Path,
    ) -> tuple[bool, str]:
        if "run" in step:
            script = self.template(step["run"], scope, workspace)
            self.commands.append((job, str(step["run"])))
            argv = ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", script]
            if self.image is not None:
                argv = self.image.wrap(argv, Path(env["RUNNER_TEMP"]).parent)
            proc = subprocess.run(
                argv,
                cwd=workspace, env=dict(env), capture_output=True, text=True, check=False,
                timeout=3600,
            )  # fmt: skip
            return proc.returncode == 0, f"$ {script}\n{proc.stdout}{proc.stderr}"
        uses = str(step["uses"])
        action = uses.split("@", 1)[0]
        given = self.template(step.get("with") or {}, scope, workspace)
        if action == "actions/checkout":
            return self._checkout(workspace, str(given.get("fetch-depth", "1")))
        if action == "actions/upload-artifact":
            return self._upload(job, given, workspace)
        if action == "actions/download-artifact":
            return self._download(job, given, workspace)
        if action == "github/codeql-action/upload-sarif":
            sarif = workspace / str(given["sarif_file"])
            doc = json.loads(sarif.read_text())
            return doc.get("version") == "2.1.0", f"SARIF {sarif} (not uploaded)"
        if action in NO_OP_ACTIONS and self.image is not None:
            runner_dir = Path(env["RUNNER_TEMP"]).parent
            added = self.image.setup_action(action, dict(given), runner_dir)
            with Path(env["GITHUB_PATH"]).open("a") as fh:
                fh.writelines(f"{folder}\n" for folder in added)
            return True, f"{uses}: as on {self.image.label} (PATH += {added})"
        if action in NO_OP_ACTIONS:
            return True, f"{uses}: this machine has it"
        return False, f"the rehearsal does not know the action {uses}"

    def _checkout(self, workspace: Path, depth: str) -> tuple[bool, str]:
        """As actions/checkout does: the event's commit alone (fetch-depth 1, its default),
        or the whole history (0)."""
        if depth == "0":
            subprocess.run(["git", "clone", "-q", str(self.repo), str(workspace)], check=True)
            subprocess.run(
                ["git", "-C", str(workspace), "checkout", "-q", self.event.sha], check=True
            )
            return True, f"checked out {self.event.sha} with its history"
        # Fetching a commit by SHA, as the action does, needs the source to allow it.
        subprocess.run(
            ["git", "-C", str(self.repo), "config", "uploadpack.allowAnySHA1InWant", "true"],
            check=True,
        )
        workspace.mkdir(parents=True, exist_ok=True)
        for argv in (
            ["init", "-q"],
            ["remote", "add", "origin", f"file://{self.repo}"],
            ["fetch", "-q", f"--depth={depth}", "origin", self.event.sha],
            ["checkout", "-q", "FETCH_HEAD"],
        ):
            subprocess.run(["git", "-C", str(workspace), *argv], check=True)
        return True, f"checked out {self.event.sha} (depth {depth})"

    def _upload(self, job: str, given: Mapping[str, Any], workspace: Path) -> tuple[bool, str]:
        name = str(given["name"])
        patterns = [p.strip() for p in str(given["path"]).splitlines() if p.strip()]
        found: list[Path] = []
        for pattern in patterns:
            found += [Path(p) for p in glob.glob(str(workspace / pattern), recursive=True)]
        files = sorted(
            {f for p in found for f in ([p] if p.is_file() else p.rglob("*")) if f.is_file()}
        )
        if not files:
            ok = given.get("if-no-files-found", "warn") != "error"
            return ok, f"no files for artifact {name}"
        if name in self.artifacts:
            return False, f"an artifact named {name} exists already"
        # GitHub's rule: the artifact's root is the least common ancestor of the search
        # paths (each pattern up to its first wildcard).
        roots = [str(_search_root(workspace, pattern)) for pattern in patterns]
        root = Path(os.path.commonpath(roots))
        root = root.parent if root.is_file() else root
        store = self.work / "_artifacts" / name
        for f in files:
            dest = store / f.relative_to(root)
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(f, dest)
        self.artifacts[name] = store
        size = sum(f.stat().st_size for f in files)
        self.transfers.append(Transfer(name, job, len(files), size))
        return True, f"uploaded {name}: {len(files)} file(s), {size} bytes"

    def _download(self, job: str, given: Mapping[str, Any], workspace: Path) -> tuple[bool, str]:
        path = workspace / str(given.get("path") or ".")
        if given.get("name"):
            names = [str(given["name"])]
            split = False
        else:
            names = [
                n for n in self.artifacts if fnmatch.fnmatchcase(n, str(given.get("pattern", "*")))
            ]
            split = not given.get("merge-multiple")
        if not names or any(n not in self.artifacts for n in names):
            return False, f"no artifact {names}"
        for n in names:
            dest = path / n if split else path
            shutil.copytree(self.artifacts[n], dest, dirs_exist_ok=True)
            size = sum(f.stat().st_size for f in self.artifacts[n].rglob("*") if f.is_file())
            self.downloads.append((job, n, size))
        return True, f"downloaded {names}"

    def log(self) -> str:
        """Every step's log, a failed step's last: a long log cut in its middle (as CI
        reports cut it) still shows why the rehearsal failed."""
        steps = [s for r in self.runs for s in r.steps]
        ordered = [s for s in steps if s.outcome != "failure"] + [
            s for s in steps if s.outcome == "failure"
        ]
        return "\n".join(f"--- {s.job}: {s.name} [{s.outcome}]\n{s.log}" for s in ordered)


def _search_root(workspace: Path, pattern: str) -> Path:
    fixed: list[str] = []
    for part in Path(pattern).parts:
        if any(c in part for c in "*?["):
            break
        fixed.append(part)
    return workspace.joinpath(*fixed)


def _strings(values: Mapping[str, Any]) -> dict[str, str]:
    return {k: to_string(v) for k, v in values.items()}


def _needs(job: Mapping[str, Any]) -> list[str]:
    needs = job.get("needs") or []
    return [needs] if isinstance(needs, str) else list(needs)


def _combinations(matrix: Any) -> list[dict[str, Any]]:
    if not isinstance(matrix, dict):
        raise ValueError(f"a matrix must be a mapping, got {matrix!r}")
    axes = {k: v for k, v in matrix.items() if k not in ("include", "exclude")}
    combos: list[dict[str, Any]] = [{}]
    for key, values in axes.items():
        combos = [{**c, key: v} for c in combos for v in values]
    if not axes:
        combos = []
    for extra in matrix.get("include") or []:
        combos.append(dict(extra))
    if not combos:
        raise ValueError("the matrix has no job")
    return combos


def _read_kv(text: str) -> dict[str, str]:
    """``name=value`` lines and ``name<<DELIM`` … ``DELIM`` blocks (GITHUB_OUTPUT, GITHUB_ENV)."""
    out: dict[str, str] = {}
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if "<<" in line and ("=" not in line or line.index("<<") < line.index("=")):
            key, delim = line.split("<<", 1)
            end = lines.index(delim, i + 1)
            out[key] = "\n".join(lines[i + 1 : end])
            i = end + 1
            continue
        if "=" in line:
            key, value = line.split("=", 1)
            out[key] = value
        i += 1
    return out


def commands_of(workflow: Path) -> Sequence[str]:
    """Every ``run:`` text of a workflow (what the rehearsal must have run)."""
    doc = yaml.safe_load(workflow.read_text())
    return [str(s["run"]) for j in doc["jobs"].values() for s in j.get("steps") or [] if "run" in s]
