"""Reusable workflow calls and ``GITHUB_TOKEN`` permissions, as GitHub applies them, for
the rehearsal (actions_runner.py).

What is checked before a called workflow's first job runs, as GitHub checks it when the
run starts ("Reusing workflows"; "Workflow syntax": ``jobs.<job_id>.uses``, ``with``,
``secrets``, ``on.workflow_call``):

* ``uses:`` names ``./.github/workflows/<file>`` of the same repository, or
  ``owner/repo/.github/workflows/<file>@ref`` (the rehearsal's local copy of it);
* ``with:`` names only inputs of ``on.workflow_call.inputs``, gives every required one,
  and each value has its input's type (a string is not a boolean, as GitHub refuses
  ``Unexpected value 'false'``); an input not given takes its default, else ``false``,
  ``0`` or ``''``;
* ``secrets:`` names only declared secrets and gives every required one, or is
  ``inherit``; ``GITHUB_TOKEN`` is always there;
* no job of the called workflow asks for more ``permissions`` than the caller job has
  (a called workflow can keep or reduce them, never raise them).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

# Every scope of ``permissions:`` (docs: "Controlling permissions for GITHUB_TOKEN").
SCOPES = (
    "actions", "attestations", "checks", "contents", "deployments", "discussions",
    "id-token", "issues", "models", "packages", "pages", "pull-requests",
    "repository-projects", "security-events", "statuses",
)  # fmt: skip
# The restricted default (a new repository's or organization's): what a job gets when no
# ``permissions:`` applies to it. id-token is ``none`` in both defaults.
DEFAULT_PERMISSIONS = {"contents": "read", "packages": "read"}
RANK = {"none": 0, "read": 1, "write": 2}
ID_TOKEN_VARS = ("ACTIONS_ID_TOKEN_REQUEST_URL", "ACTIONS_ID_TOKEN_REQUEST_TOKEN")
ZERO = {"boolean": False, "number": 0.0, "string": ""}


class CallError(Exception):
    """A call GitHub would refuse: the caller job fails with this message."""


def normalize(value: Any) -> dict[str, str]:
    """A ``permissions:`` value as {scope: read|write}, scopes at ``none`` left out."""
    if value in ("read-all", "write-all"):
        level = str(value).split("-", 1)[0]
        return dict.fromkeys(SCOPES, level)
    if not isinstance(value, dict):
        raise CallError(f"permissions must be read-all, write-all or a mapping, not {value!r}")
    for scope, level in value.items():
        if scope not in SCOPES or level not in RANK:
            raise CallError(f"unknown permission {scope}: {level}")
    return {scope: level for scope, level in value.items() if level != "none"}


def job_permissions(
    job: Mapping[str, Any], workflow: Mapping[str, Any], granted: Mapping[str, str] | None
) -> dict[str, str]:
    """A job's own ``permissions:``, else its workflow's; with neither, what its caller
    job was granted (in a called workflow), else the default."""
    own = job.get("permissions", workflow.get("permissions"))
    if own is not None:
        return normalize(own)
    return dict(DEFAULT_PERMISSIONS if granted is None else granted)


def _listed(permissions: Mapping[str, str]) -> str:
    return ", ".join(f"{scope}: {level}" for scope, level in permissions.items())


def check_nested(called: Mapping[str, Any], granted: Mapping[str, str]) -> None:
    """No job of ``called`` asks for a permission beyond ``granted`` (GitHub refuses the
    run, naming the job, before any job starts)."""
    for name, job in (called.get("jobs") or {}).items():
        own = job.get("permissions", called.get("permissions"))
        if own is None:
            continue
        asked = normalize(own)
        over = {s: lvl for s, lvl in asked.items() if RANK[lvl] > RANK[granted.get(s, "none")]}
        if over:
            allowed = {s: granted.get(s, "none") for s in over}
            raise CallError(
                f"The nested job '{name}' is requesting '{_listed(over)}', "
                f"but is only allowed '{_listed(allowed)}'."
            )


def locate(uses: str, repo: Path, workflows: Mapping[str, Path]) -> Path:
    """The local file a job's ``uses:`` names."""
    if uses.startswith("./"):
        path = repo / uses.split("@", 1)[0]
        if not path.is_file():
            raise CallError(f"uses: {uses}: no such workflow in the repository ({path})")
        return path
    if "@" not in uses:
        raise CallError(f"uses: {uses}: a workflow of another repository needs an @ref")
    name = uses.rsplit("@", 1)[0]
    if name not in workflows:
        raise CallError(
            f"uses: {uses}: the rehearsal has no copy of {name} "
            f"(Rehearsal.workflows has {sorted(workflows)})"
        )
    return Path(workflows[name])


def workflow_call(doc: Mapping[Any, Any]) -> dict[str, Any]:
    """``on.workflow_call`` of a called workflow (PyYAML reads the key ``on`` as True)."""
    on = doc.get("on", doc.get(True))
    if isinstance(on, str):
        on = {on: None}
    elif isinstance(on, list):
        on = dict.fromkeys(on)
    if not isinstance(on, dict) or "workflow_call" not in on:
        raise CallError("the called workflow has no on.workflow_call: it is not reusable")
    return dict(on["workflow_call"] or {})


def _coerce(name: str, kind: str, value: Any, stringify: Callable[[Any], str]) -> Any:
    if kind == "boolean" and isinstance(value, bool):
        return value
    if kind == "number" and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if kind == "string" and (value is None or isinstance(value, (str, bool, int, float))):
        return stringify(value)
    if kind not in ZERO:
        raise CallError(f"input {name}: type must be boolean, number or string, not {kind!r}")
    raise CallError(f"input {name}: Unexpected value {stringify(value)!r} for a {kind} input")


def _default(kind: str, value: Any) -> Any:
    """A declared default: ``'false'`` for a boolean is ``false``."""
    if kind == "boolean" and isinstance(value, str):
        return value.strip().lower() == "true"
    if kind == "number" and isinstance(value, str):
        return float(value)
    return value


def call_inputs(
    declared: Mapping[str, Any],
    given: Mapping[str, Any],
    template: Callable[[Any], Any],
    stringify: Callable[[Any], str],
) -> dict[str, Any]:
    """The called workflow's ``inputs`` context from the caller's ``with:`` (templated
    already); ``template`` evaluates a default's ``${{ }}`` in the caller's github context."""
    names = {k.lower(): k for k in declared}
    unknown = sorted(k for k in given if k.lower() not in names)
    if unknown:
        raise CallError(f"with: input {unknown[0]} is not declared in on.workflow_call.inputs")
    by_name = {k.lower(): v for k, v in given.items()}
    inputs: dict[str, Any] = {}
    for name, declaration in declared.items():
        spec = declaration or {}
        kind = spec.get("type")
        if kind is None:
            raise CallError(f"input {name} of the called workflow has no type")
        if name.lower() in by_name:
            value = by_name[name.lower()]
        elif spec.get("required"):
            raise CallError(f"with: input {name} is required by the called workflow")
        elif "default" in spec:
            value = _default(kind, template(spec["default"]))
        else:
            value = ZERO.get(kind, "")
        inputs[name] = _coerce(name, kind, value, stringify)
    return inputs


def call_secrets(
    declared: Mapping[str, Any],
    passed: Any,
    caller: Mapping[str, str],
    template: Callable[[Any], Any],
    stringify: Callable[[Any], str],
) -> dict[str, str]:
    """The called workflow's ``secrets`` context from the caller's ``secrets:`` (a mapping
    ``template`` evaluates in the caller's secrets, or ``inherit``)."""
    if passed == "inherit":
        return {"GITHUB_TOKEN": caller.get("GITHUB_TOKEN", ""), **caller}
    if not isinstance(passed, dict):
        raise CallError(f"secrets: must be a mapping or inherit, not {passed!r}")
    names = {k.lower(): k for k in declared}
    unknown = sorted(k for k in passed if k.lower() not in names)
    if unknown:
        raise CallError(f"secrets: {unknown[0]} is not declared in on.workflow_call.secrets")
    given = {k.lower() for k in passed}
    for name, spec in declared.items():
        if (spec or {}).get("required") and name.lower() not in given:
            raise CallError(f"secrets: {name} is required by the called workflow")
    out = {names[k.lower()]: stringify(template(v)) for k, v in passed.items()}
    return {**out, "GITHUB_TOKEN": caller.get("GITHUB_TOKEN", "")}
