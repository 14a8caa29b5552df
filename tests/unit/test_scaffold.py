"""dcforge.core.scaffold: the files ``dcforge init`` plans, read from package data."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from dcforge.core import scaffold

ROOT = Path(__file__).resolve().parents[2]
EXPECTED = {
    ".github/dependabot.yml",
    ".github/workflows/images.yml",
    ".gitignore",
    "SECRETS.md",
    "images/base/Dockerfile",
    "images/features/.devcontainer/devcontainer.json",
    "images/features/.devcontainer/dev-user/devcontainer-feature.json",
    "images/features/.devcontainer/dev-user/install.sh",
    "noxfile.py",
    "permutations/base.yaml",
    "permutations/features.yaml",
    "pyproject.toml",
    "requirements.txt",
    "tasks.py",
    "trivy.yaml",
    "waivers.yaml",
}


@pytest.mark.parametrize(
    ("template", "target"),
    [
        ("dot-github/workflows/images.yml", ".github/workflows/images.yml"),
        ("dot-gitignore", ".gitignore"),
        ("noxfile.py.tmpl", "noxfile.py"),
        ("images/x/dot-devcontainer/devcontainer.json", "images/x/.devcontainer/devcontainer.json"),
        ("permutations/base.yaml", "permutations/base.yaml"),
    ],
)
def test_a_template_path_names_its_target(template: str, target: str) -> None:
    assert scaffold.target_path(template) == target


def test_the_plan_holds_every_file_once_with_every_placeholder_filled() -> None:
    files = scaffold.plan("1.2.3")
    assert [f.path for f in files] == sorted(EXPECTED)
    for f in files:
        assert not scaffold.PLACEHOLDER.search(f.content.decode()), f.path
    modes = {f.path: f.mode for f in files}
    assert modes["images/features/.devcontainer/dev-user/install.sh"] == 0o755
    assert modes["noxfile.py"] == 0o644


def test_dcforge_is_pinned_to_the_running_version_and_the_workflow_is_a_placeholder() -> None:
    files = {f.path: f.content.decode() for f in scaffold.plan("1.2.3")}
    assert "\ndcforge==1.2.3\n" in files["requirements.txt"]
    assert re.search(r"^dcforge$", files_of("unknown")["requirements.txt"], re.M)
    # One job calls the reusable workflow; its owner and commit are the adopter's to fill in.
    template = "src/dcforge/resources/scaffold/dot-github/workflows/images.yml"
    assert re.findall(r"uses: (\S+)", (ROOT / template).read_text()) == [
        "@DCFORGE_WORKFLOW_OWNER@/dcforge/.github/workflows/@DCFORGE_WORKFLOW@@@DCFORGE_WORKFLOW_REF@"
    ]
    uses = re.findall(r"uses: (\S+)", files[".github/workflows/images.yml"])
    wanted = (
        f"{scaffold.WORKFLOW_OWNER}/dcforge/.github/workflows/images.yml@{scaffold.WORKFLOW_REF}"
    )
    assert uses == [wanted]
    # `nox -s lint` lints it as an adopter fills it in: an owner, a commit SHA.
    example = scaffold.plan("1.2.3", scaffold.EXAMPLE_WORKFLOW_CALL)
    (workflow,) = [f.content.decode() for f in example if f.path == ".github/workflows/images.yml"]
    sha = scaffold.EXAMPLE_WORKFLOW_CALL["DCFORGE_WORKFLOW_REF"]
    assert re.fullmatch("[0-9a-f]{40}", sha)
    assert re.findall(r"uses: (\S+)", workflow) == [
        f"example-owner/dcforge/.github/workflows/images.yml@{sha}"
    ]


def files_of(version: str) -> dict[str, str]:
    return {f.path: f.content.decode() for f in scaffold.plan(version)}


def test_trivy_yaml_is_dcforges_own() -> None:
    (trivy,) = [f for f in scaffold.plan("1") if f.path == "trivy.yaml"]
    assert trivy.content == (ROOT / "src/dcforge/resources/trivy.yaml").read_bytes()


def test_a_placeholder_without_a_value_is_a_bug() -> None:
    assert scaffold.render("a @X@ b", {"X": "y"}) == "a y b"
    assert scaffold.render("me@example.com ${{ x }}", {}) == "me@example.com ${{ x }}"
    with pytest.raises(KeyError, match="@NOPE@"):
        scaffold.render("@NOPE@", {}, "t")


def test_existing_names_what_is_there_files_links_and_folders(tmp_path: Path) -> None:
    files = scaffold.plan("1")
    assert scaffold.existing(tmp_path, files) == []
    (tmp_path / "noxfile.py").write_text("mine")
    (tmp_path / "trivy.yaml").symlink_to(tmp_path / "nowhere")
    (tmp_path / "tasks.py").mkdir()
    assert scaffold.existing(tmp_path, files) == ["noxfile.py", "tasks.py", "trivy.yaml"]
    assert scaffold.blocked(tmp_path, files) == ["tasks.py (a folder)"]


def test_a_file_or_link_where_a_folder_goes_is_blocked(tmp_path: Path) -> None:
    files = scaffold.plan("1")
    (tmp_path / "permutations").write_text("not a folder")
    os.symlink(tmp_path.parent, tmp_path / "images")
    assert scaffold.blocked(tmp_path, files) == [
        "images (not a folder)",
        "permutations (not a folder)",
    ]


def test_the_templates_ship_in_the_wheel() -> None:
    """pyproject's package-data takes the scaffold's folders too (an installed dcforge has no
    source tree to read them from), and no template hides behind a leading dot."""
    import tomllib

    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "resources/scaffold/**/*" in data["tool"]["setuptools"]["package-data"]["dcforge"]
    templates = ROOT / "src/dcforge/resources" / scaffold.TEMPLATES
    hidden = [p for p in templates.rglob(".*") if p.name != "__pycache__"]
    assert not hidden, f"name them dot-…: {hidden}"
