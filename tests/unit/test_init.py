"""dcforge.stages.init (``dcforge init``): a new images repository that dcforge's own
readers accept, written only where nothing is in the way."""

from __future__ import annotations

import ast
import datetime as dt
import json
import tomllib
from pathlib import Path

import pytest
import yaml

from dcforge.cli import main as cli
from dcforge.cli import nox_sessions
from dcforge.core import build_plan, devcontainer, permfile, scaffold, settings, waivers
from dcforge.core.errors import ConfigError
from dcforge.infra import log
from dcforge.stages import init
from tests.unit.test_scaffold import EXPECTED, ROOT


@pytest.fixture
def said(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """What init logs (info and warnings), in order."""
    lines: list[str] = []
    monkeypatch.setattr(log, "info", lines.append)
    monkeypatch.setattr(log, "warn", lines.append)
    return lines


@pytest.fixture
def repo(tmp_path: Path, said: list[str]) -> Path:
    """An empty git repository (as ``git init`` leaves one) with the scaffold written."""
    root = tmp_path / "images"
    (root / ".git").mkdir(parents=True)
    written = init.run(init.InitOptions(root, version="1.2.3"))
    assert sorted(written) == sorted(EXPECTED)
    return root


def _files(root: Path) -> set[str]:
    return {
        str(p.relative_to(root))
        for p in root.rglob("*")
        if p.is_file() and ".git" not in p.relative_to(root).parts[:1]
    }


def test_init_writes_every_file_into_an_empty_repository(repo: Path, said: list[str]) -> None:
    assert _files(repo) == EXPECTED
    assert said == [f"init: wrote {len(EXPECTED)} files into {repo}"]
    assert (repo / "images/features/.devcontainer/dev-user/install.sh").stat().st_mode & 0o111


def test_outside_a_git_repository_it_says_so(tmp_path: Path, said: list[str]) -> None:
    init.run(init.InitOptions(tmp_path / "new"))
    assert "not in a git repository" in said[-1]


def test_the_example_permutations_load_with_dcforges_loader(repo: Path) -> None:
    conf = settings.load(repo, {})
    perms = build_plan.load_permutations(conf)
    assert [(p.name, p.devcontainer_form) for p in perms] == [
        ("base-bookworm", ""),
        ("features-bookworm", "image"),
    ]
    base, features = perms
    assert base.dockerfile == repo / "images/base/Dockerfile"
    assert base.repository == "localhost:5000/images/base"
    assert json.loads(base.metadata) == [{"remoteUser": "vscode"}]
    assert features.feature_refs() == ["./dev-user"]
    config = features.devcontainer
    assert config is not None
    devcontainer.check_local_feature(config, config.parent, "./dev-user")


def test_the_settings_are_dcforges_defaults_plus_the_registry(repo: Path) -> None:
    table = tomllib.loads((repo / "pyproject.toml").read_text())["tool"]["dcforge"]
    conf = settings.load(repo, {})
    defaults = settings.Settings(root=repo)
    for key, value in table.items():
        if key != "registry":
            assert getattr(defaults, key) == value, f"{key}: the scaffold says {value!r}"
    assert conf.registry == "localhost:5000/images"


def test_every_setting_the_scaffold_names_has_a_comment(repo: Path) -> None:
    lines = (repo / "pyproject.toml").read_text().split("[tool.dcforge]\n", 1)[1].splitlines()
    for i, line in enumerate(lines):
        if "=" in line and not line.startswith("#"):
            before = lines[i - 1]
            assert before.startswith("#") or "=" in before, f"no comment above {line!r}"


def test_waivers_yaml_loads_empty(repo: Path) -> None:
    found = waivers.load_waivers(repo / "waivers.yaml", max_days=90, today=dt.date(2026, 1, 1))
    assert found == []
    assert "# Example:" in (repo / "waivers.yaml").read_text()


def test_every_yaml_and_json_file_parses(repo: Path) -> None:
    for path in [*repo.rglob("*.yaml"), *repo.rglob("*.yml")]:
        assert isinstance(yaml.safe_load(path.read_text()), dict), path
    for path in repo.rglob("*.json"):
        assert devcontainer.read_config(path), path
    dependabot = yaml.safe_load((repo / ".github/dependabot.yml").read_text())
    ecosystems = {u["package-ecosystem"] for u in dependabot["updates"]}
    assert {"github-actions", "pip"} <= ecosystems


def test_the_workflow_calls_the_reusable_one_with_the_least_rights(repo: Path) -> None:
    """One job, the call: it grants exactly what the reusable workflow's jobs ask for (the
    call fails with less; more would reach nobody), publishes only for a push to main and
    passes only the pull requests' staging credential, by name."""
    workflow = yaml.safe_load((repo / ".github/workflows/images.yml").read_text())
    assert workflow["permissions"] == {"contents": "read"}
    (job,) = workflow["jobs"].values()
    assert job["uses"] == (
        f"{scaffold.WORKFLOW_OWNER}/dcforge/.github/workflows/{scaffold.WORKFLOW_FILE}"
        f"@{scaffold.WORKFLOW_REF}"
    )
    assert "steps" not in job and "if" not in job
    called = yaml.safe_load((ROOT / ".github/workflows" / scaffold.WORKFLOW_FILE).read_text())
    asked: dict[str, str] = {}
    for called_job in called["jobs"].values():
        asked |= called_job.get("permissions") or called["permissions"]
    assert asked == {
        "contents": "read",
        "packages": "write",
        "id-token": "write",
        "security-events": "write",
    }
    assert job["permissions"] == asked
    assert job["with"]["publish"] == (
        "${{ github.event_name != 'pull_request' && github.ref == 'refs/heads/main' }}"
    )
    # Inputs and secrets the reusable workflow declares, and nothing else.
    declared = called[True]["workflow_call"]
    assert set(job["with"]) <= set(declared["inputs"])
    assert {k for k, v in declared["inputs"].items() if v.get("required")} <= set(job["with"])
    assert job["secrets"] == {
        "DCFORGE_STAGING_PASSWORD": "${{ secrets.DCFORGE_PR_STAGING_PASSWORD }}"
    }
    assert set(job["secrets"]) <= set(declared["secrets"])


def test_gitignore_keeps_state_and_output_out(repo: Path) -> None:
    ignored = set((repo / ".gitignore").read_text().split())
    assert {".dcforge/", "dist/", ".venv/", ".nox/"} <= ignored


def test_noxfile_and_tasks_are_a_few_lines_of_python_over_dcforge(repo: Path) -> None:
    for name, module in (
        ("noxfile.py", "dcforge.cli.nox_sessions"),
        ("tasks.py", "dcforge.cli.tasks"),
    ):
        text = (repo / name).read_text()
        tree = ast.parse(compile(text, name, "exec", ast.PyCF_ONLY_AST))
        imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        assert module in imported, name
        assert len(text.splitlines()) <= 20, name
    noxfile = (repo / "noxfile.py").read_text()
    assert 'register(nox, requirements="requirements.txt")' in noxfile
    assert "\ndcforge==1.2.3\n" in (repo / "requirements.txt").read_text()
    assert set(nox_sessions.SESSIONS) >= {"main", "build", "gate", "publish", "verify"}


# --- refusing to overwrite, and --force --------------------------------------------------------


def test_init_refuses_when_a_file_is_there_and_writes_nothing(
    tmp_path: Path, said: list[str]
) -> None:
    (tmp_path / "noxfile.py").write_text("# mine\n")
    (tmp_path / "permutations").mkdir()
    (tmp_path / "permutations/base.yaml").write_text("mine: true\n")
    with pytest.raises(ConfigError) as err:
        init.run(init.InitOptions(tmp_path))
    assert err.value.exit_code == 2
    assert "\n" not in str(err.value)
    assert "noxfile.py, permutations/base.yaml" in str(err.value)
    assert "--force" in str(err.value)
    assert (tmp_path / "noxfile.py").read_text() == "# mine\n"
    assert _files(tmp_path) == {"noxfile.py", "permutations/base.yaml"}


def test_force_names_what_it_replaces_then_replaces_it(tmp_path: Path, said: list[str]) -> None:
    (tmp_path / "noxfile.py").write_text("# mine\n")
    (tmp_path / "SECRETS.md").write_text("mine\n")
    init.run(init.InitOptions(tmp_path, force=True))
    assert said[0] == "init: replacing 2 file(s): SECRETS.md, noxfile.py"
    assert "register(nox" in (tmp_path / "noxfile.py").read_text()
    assert _files(tmp_path) == EXPECTED


def test_force_never_replaces_a_folder_or_writes_through_a_link(tmp_path: Path) -> None:
    (tmp_path / "tasks.py").mkdir()
    outside = tmp_path.parent / f"{tmp_path.name}-outside"
    outside.mkdir()
    (tmp_path / "permutations").symlink_to(outside)
    with pytest.raises(ConfigError, match=r"permutations \(not a folder\), tasks.py \(a folder\)"):
        init.run(init.InitOptions(tmp_path, force=True))
    assert list(outside.iterdir()) == []


def test_a_file_as_the_target_folder_is_refused(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match="is not a folder"):
        init.run(init.InitOptions(tmp_path / "file"))


# --- the command line ----------------------------------------------------------------------------


def test_dcforge_init_reads_no_settings_and_exits_2_when_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, said: list[str]
) -> None:
    """``python -m dcforge init DIR``: the project around the current directory is not read
    (its settings may be anything); a second init is refused with status 2."""
    (tmp_path / "pyproject.toml").write_text("[tool.dcforge]\nno_such_key = 1\n")
    monkeypatch.chdir(tmp_path)
    assert cli.main(["init", "repo"]) == 0
    assert _files(tmp_path / "repo") == EXPECTED
    before = (tmp_path / "repo/noxfile.py").read_bytes()
    assert cli.main(["init", "repo"]) == 2
    assert (tmp_path / "repo/noxfile.py").read_bytes() == before
    assert cli.main(["init", "repo", "--force"]) == 0


def test_dcforge_init_defaults_to_the_current_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, said: list[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    assert cli.run(["init"], {}) == 0
    assert _files(tmp_path) == EXPECTED
    assert permfile.load_all(
        tmp_path / "permutations", root=tmp_path, registry="r", builtins={"base_registry": "b"}
    )
