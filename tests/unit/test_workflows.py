"""The workflows call the same sessions developers run, pinned, least-privileged."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from dcforge import config, workflows

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = sorted((ROOT / ".github/workflows").glob("*.yml"))


def nox_sessions() -> set[str]:
    tree = ast.parse((ROOT / "noxfile.py").read_text())
    return {
        fn.name
        for fn in tree.body
        if isinstance(fn, ast.FunctionDef)
        and any("session" in ast.unparse(d) for d in fn.decorator_list)
    }


def invoke_tasks() -> set[str]:
    tree = ast.parse((ROOT / "tasks.py").read_text())
    names = set()
    for fn in tree.body:
        if isinstance(fn, ast.FunctionDef) and any(
            "task" in ast.unparse(d) for d in fn.decorator_list
        ):
            names.add(fn.name.replace("_", "-"))
    return names


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_dcforge_rules_hold(path: Path) -> None:
    assert workflows.problems(path) == []


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_every_run_step_calls_a_real_session_or_task(path: Path) -> None:
    wf = workflows.load(path)
    sessions, tasks = nox_sessions(), invoke_tasks()
    for job in wf["jobs"].values():
        for step in job["steps"]:
            if "run" in step:
                called = list(workflows.SESSION_CALL.finditer(step["run"]))
                assert called, step["run"]
                for m in called:
                    assert (m["session"] in sessions) if m["session"] else (m["task"] in tasks)


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_every_action_is_pinned_to_a_commit(path: Path) -> None:
    for job in workflows.load(path)["jobs"].values():
        for step in job["steps"]:
            if "uses" in step:
                assert workflows.PINNED.match(step["uses"]), step["uses"]


def test_publish_is_unreachable_from_pull_requests() -> None:
    wf = workflows.load(ROOT / ".github/workflows/build-publish.yml")
    for name in ("publish", "republish"):
        job = wf["jobs"][name]
        assert "github.ref == 'refs/heads/main'" in job["if"]
        assert job["environment"] == "production"
        assert job["permissions"]["packages"] == "write"
    assert "github.event_name != 'pull_request'" in wf["jobs"]["publish"]["if"]
    # Jobs that run on pull requests never hold write tokens for packages or OIDC.
    for name in ("plan", "build", "gate"):
        perms = wf["jobs"][name].get("permissions", wf["permissions"])
        assert perms.get("packages") != "write"
        assert perms.get("id-token") != "write"
    assert "pull_request_target" not in wf["on"]


def test_the_plan_matrix_is_the_shipped_permutations() -> None:
    perms = config.load_all(
        ROOT / "permutations",
        root=ROOT,
        registry="r",
        builtins={"registry": "r", "base_registry": "b"},
    )
    wf = workflows.load(ROOT / ".github/workflows/build-publish.yml")
    assert wf["jobs"]["build"]["strategy"]["matrix"] == "${{ fromJSON(needs.plan.outputs.matrix) }}"
    # `dcforge plan --json` prints exactly this shape (checked end to end in integration).
    assert sorted(p.name for p in perms) == [
        "base-bookworm",
        "node-18-bookworm",
        "python-3.11-bookworm",
    ]


def test_artifacts_are_kept_30_days() -> None:
    wf = workflows.load(ROOT / ".github/workflows/build-publish.yml")
    for job in wf["jobs"].values():
        for step in job["steps"]:
            if step.get("uses", "").startswith("actions/upload-artifact@"):
                assert step["with"]["retention-days"] == 30


def test_rules_catch_injection_unpinned_and_missing_parity(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yml"
    bad.write_text(
        "on: [pull_request_target]\npermissions: write-all\njobs:\n  x:\n    runs-on: ubuntu-24.04\n"
        "    permissions: {packages: write}\n    steps:\n"
        "      - uses: actions/checkout@v4\n"
        '      - run: echo "${{ github.event.pull_request.title }}"\n'
    )
    found = "\n".join(workflows.problems(bad))
    for needle in (
        "pull_request_target",
        "top-level permissions",
        "does not publish",
        "not pinned",
        "persist-credentials",
        "expression expanded",
        "must call a nox",
    ):
        assert needle in found
