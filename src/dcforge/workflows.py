"""Workflow checks: our own rules (pure) plus actionlint and zizmor (real binaries)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from dcforge.errors import ConfigError, ToolError
from dcforge.runner import Runner

PINNED = re.compile(r"^[^@\s]+@[0-9a-f]{40}$")
SESSION_CALL = re.compile(
    r"""(?:^|[\s"'])(?:nox(?:==[^\s"']+)?["']?\s+-s\s+(?P<session>[a-z][a-z-]*)"""
    r"""|invoke\s+(?P<task>[a-z][a-z-]*))"""
)
UNTRUSTED = re.compile(r"\$\{\{\s*github\.event\.")


def load(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text())
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: not a workflow")
    # YAML 1.1 reads the key `on` as True.
    if True in data and "on" not in data:
        data["on"] = data.pop(True)
    return data


def problems(path: Path) -> list[str]:
    """dcforge's rules: parity with the sessions, SHA pins, no injection, least privilege."""
    wf = load(path)
    out = []
    events = wf.get("on") or {}
    names = [events] if isinstance(events, str) else list(events)
    if "pull_request_target" in names:
        out.append(f"{path.name}: pull_request_target is not allowed")
    if wf.get("permissions") not in ({"contents": "read"}, {}):
        out.append(f"{path.name}: top-level permissions must be contents: read")
    for job_name, job in (wf.get("jobs") or {}).items():
        perms = job.get("permissions") or {}
        writes = {k for k, v in perms.items() if v == "write"}
        if (
            writes & {"packages", "id-token"}
            and "publish" not in job_name
            and job_name not in ("republish", "rollback", "retention")
        ):
            out.append(f"{path.name}: job {job_name} has {sorted(writes)} but does not publish")
        for i, step in enumerate(job.get("steps") or []):
            where = f"{path.name}: {job_name} step {i + 1}"
            uses = step.get("uses")
            if uses and not uses.startswith("./") and not PINNED.match(uses):
                out.append(f"{where}: {uses} is not pinned to a full commit SHA")
            with_ = step.get("with") or {}
            if (uses or "").startswith("actions/checkout@") and with_.get(
                "persist-credentials"
            ) is not False:
                out.append(f"{where}: checkout without persist-credentials: false")
            run = step.get("run")
            if run is not None:
                if UNTRUSTED.search(run) or "${{" in run:
                    out.append(f"{where}: expression expanded inside run: (pass it through env)")
                if not SESSION_CALL.search(run):
                    out.append(f"{where}: run: must call a nox session or invoke task")
    return out


def calls(path: Path) -> list[tuple[str, str]]:
    """Every (kind, name) a run: step calls: ("nox", session) or ("invoke", task)."""
    found = []
    for job in (load(path).get("jobs") or {}).values():
        for step in job.get("steps") or []:
            for m in SESSION_CALL.finditer(step.get("run") or ""):
                found.append(("nox", m["session"]) if m["session"] else ("invoke", m["task"]))
    return found


def lint(runner: Runner, directory: Path, config: Path | None) -> list[str]:
    files = sorted([*directory.glob("*.yml"), *directory.glob("*.yaml")])
    if not files:
        raise ConfigError(f"{directory}: no workflow files")
    found = [p for f in files for p in problems(f)]
    for argv in (
        ["actionlint", "-no-color", *map(str, files)],
        [
            "zizmor",
            "--offline",
            "--no-progress",
            *(["--config", str(config)] if config else []),
            str(directory),
        ],
    ):
        result = runner.run(argv, timeout=300, check=False, mutates=False)
        if result.returncode != 0:
            text = (result.stdout + result.stderr).strip()
            if result.returncode not in (1, 10, 11, 12, 13, 14):
                raise ToolError(f"{argv[0]} exited {result.returncode}: {text[-300:]}")
            found.append(f"{argv[0]}: {text}")
    return found
