"""devcontainer.json permutations, Feature references and pins, image metadata, image-test
output: pure logic (the real CLI builds in tests/integration/test_devcontainer.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dcforge import config, devcontainer
from dcforge.errors import ConfigError
from dcforge.hashing import input_hash

BUILTINS = {"registry": "r", "base_registry": "b"}
BASE = "b/debian@sha256:" + "1" * 64
DIGEST = "sha256:" + "2" * 64


def project(tmp_path: Path, family: str, devcontainer_json: str = "", **files: str) -> Path:
    (tmp_path / "permutations").mkdir()
    (tmp_path / "permutations/f.yaml").write_text(family)
    folder = tmp_path / "img/.devcontainer"
    folder.mkdir(parents=True)
    (folder / "devcontainer.json").write_text(
        devcontainer_json or '{"image": "debian", "features": {"./feat": {}}}'
    )
    (folder / "feat").mkdir()
    (folder / "feat/devcontainer-feature.json").write_text('{"id": "feat", "version": "1.0.0"}')
    (folder / "feat/install.sh").write_text("#!/bin/sh\n")
    for name, text in files.items():
        path = tmp_path / name.replace("__", "/")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return tmp_path


FAMILY = """\
family: dc
matrix:
  v: ["1", "2"]
name: "dc-{v}"
devcontainer: ../img/.devcontainer/devcontainer.json
base: "{base_registry}/debian:bookworm"
features:
  ./feat: {level: "{v}", fast: true}
"""


def load(root: Path) -> list[config.Permutation]:
    return config.load_all(root / "permutations", root=root, registry="r", builtins=BUILTINS)


def test_a_devcontainer_permutation_loads_with_templated_feature_options(tmp_path: Path) -> None:
    root = project(tmp_path, FAMILY)
    one, two = load(root)
    assert one.devcontainer == root / "img/.devcontainer/devcontainer.json"
    assert one.context == root / "img/.devcontainer"
    assert one.devcontainer_form == "image"
    assert dict(one.features) == {"./feat": json.dumps({"fast": True, "level": "1"})}
    assert json.loads(dict(two.features)["./feat"])["level"] == "2"
    assert one.feature_refs() == ["./feat"]


@pytest.mark.parametrize(
    ("family", "json_text", "message"),
    [
        (FAMILY + "context: ../img\n", "", "name either 'context'"),
        (FAMILY.replace("devcontainer:", "context: ../img\nx:"), "", "unknown key 'x'"),
        (FAMILY + "build_args: {A: b}\n", "", "has no effect on an 'image' devcontainer.json"),
        (FAMILY + "metadata: [{remoteUser: x}]\n", "", "the Dev Containers CLI writes"),
        (FAMILY, '{"dockerComposeFile": "c.yml"}', "Docker Compose devcontainer.json"),
        (FAMILY, '{"name": "x"}', "needs 'image' or 'build.dockerfile'"),
        (FAMILY, '{"build": {"dockerfile": "../../Dockerfile"}}', "must stay inside"),
        (FAMILY, '{"build": {"dockerfile": "Missing"}}', "does not exist"),
        (FAMILY, '{"image": "d", features: {"./nope": {}}}', "./nope"),
        (FAMILY, '{"image": "d", "features": {"../outside": {}}}', "must be a folder inside"),
        (FAMILY, '{"image": "d" "features"}', "not valid devcontainer.json"),
        (FAMILY, '{"image": "d", "features": {"https://x.test/f.tgz": {}}}', "tarball URL"),
        (FAMILY, '{"image": "d", "features": {"owner/repo/feature": {}}}', "names no registry"),
        (FAMILY, '{"image": "d", "features": {"ghcr.io/a/b@sha256:12": {}}}', "not a sha256"),
        (FAMILY.replace("./feat:", "ghcr.io/x/y:1:\n    a: b\n  ./none:"), "", "./none"),
    ],
)
def test_what_cannot_be_built_into_one_pinned_image_is_refused(
    tmp_path: Path, family: str, json_text: str, message: str
) -> None:
    root = project(tmp_path, family, json_text)
    with pytest.raises(ConfigError) as err:
        load(root)
    assert message in str(err.value)
    assert str(root) in str(err.value)


def test_features_on_a_dockerfile_permutation_are_refused(tmp_path: Path) -> None:
    family = "family: d\nname: d\ncontext: ../ctx\nbase: b/x:1\nfeatures:\n  ghcr.io/a/b:1: {}\n"
    root = project(tmp_path, family, ctx__Dockerfile="FROM scratch\n")
    with pytest.raises(ConfigError, match=r"needs a devcontainer\.json permutation"):
        load(root)


def test_jsonc_comments_and_trailing_commas_are_read(tmp_path: Path) -> None:
    text = '// a comment\n{\n  "image": "d", /* more */\n  "features": {"./feat": {},},\n}\n'
    root = project(tmp_path, FAMILY, text)
    assert load(root)[0].feature_refs() == ["./feat"]


def test_render_pins_base_and_features_and_merges_options() -> None:
    data = {
        "image": "debian:latest",
        "features": {"ghcr.io/a/f:1": {"x": "json", "y": "json"}, "./local": True},
        "remoteUser": "vscode",
    }
    shape = devcontainer.Shape("image", tuple(data["features"]))
    out = devcontainer.render(
        data,
        shape,
        base=BASE,
        build_args={},
        feature_options={"ghcr.io/a/f:1": {"y": "yaml"}, "ghcr.io/a/new": {"z": 1}},
        pins={"ghcr.io/a/f:1": f"ghcr.io/a/f@{DIGEST}", "ghcr.io/a/new": f"ghcr.io/a/new@{DIGEST}"},
    )
    assert out["image"] == BASE
    assert out["features"] == {
        f"ghcr.io/a/f@{DIGEST}": {"x": "json", "y": "yaml"},
        "./local": True,
        f"ghcr.io/a/new@{DIGEST}": {"z": 1},
    }
    assert out["remoteUser"] == "vscode"
    assert data["image"] == "debian:latest"  # the input is not changed


def test_render_of_the_build_form_sets_base_image_and_build_args() -> None:
    data = {"build": {"dockerfile": "Dockerfile", "args": {"A": "json", "BASE_IMAGE": "evil"}}}
    out = devcontainer.render(
        data,
        devcontainer.Shape("build", ()),
        base=BASE,
        build_args={"A": "yaml"},
        feature_options={},
        pins={},
    )
    assert out["build"]["args"] == {"A": "yaml", "BASE_IMAGE": BASE}


def test_feature_repository() -> None:
    assert devcontainer.feature_repository("ghcr.io/a/b/git:1") == "ghcr.io/a/b/git"
    assert (
        devcontainer.feature_repository(f"localhost:5000/a/git@{DIGEST}") == "localhost:5000/a/git"
    )
    assert devcontainer.feature_repository("localhost:5000/a/git") == "localhost:5000/a/git"


def test_a_lock_must_pin_the_same_repository_by_digest(tmp_path: Path) -> None:
    lock = tmp_path / devcontainer.LOCK_FILE
    lock.write_text(
        json.dumps({"features": {"ghcr.io/a/f:1": {"resolved": f"ghcr.io/a/f@{DIGEST}"}}})
    )
    assert devcontainer.read_lock(tmp_path) == {"ghcr.io/a/f:1": f"ghcr.io/a/f@{DIGEST}"}
    for bad in (f"ghcr.io/evil/f@{DIGEST}", "ghcr.io/a/f:2", "ghcr.io/a/f@sha256:1"):
        lock.write_text(json.dumps({"features": {"ghcr.io/a/f:1": {"resolved": bad}}}))
        with pytest.raises(ConfigError, match=r"devcontainer-lock\.json: field 'features"):
            devcontainer.read_lock(tmp_path)


def test_a_moved_feature_digest_is_a_new_input_hash(tmp_path: Path) -> None:
    perm = load(project(tmp_path, FAMILY))[0]
    one = input_hash(perm, DIGEST, None, {"ghcr.io/a/f:1": f"ghcr.io/a/f@{DIGEST}"})
    moved = input_hash(perm, DIGEST, None, {"ghcr.io/a/f:1": "ghcr.io/a/f@sha256:" + "3" * 64})
    assert one != moved
    assert one == input_hash(perm, DIGEST, None, {"ghcr.io/a/f:1": f"ghcr.io/a/f@{DIGEST}"})


@pytest.mark.parametrize(
    ("metadata", "problems"),
    [
        ([{"remoteUser": "vscode", "customizations": {}}], []),
        ([{"id": "x", "remoteUser": "vscode"}], ["0.id"]),
        ([{"remoteUsr": "vscode"}], ["0.remoteUsr"]),
        ([{"remoteUser": 1}, "x"], ["0.remoteUser", "1"]),
        ({"remoteUser": "vscode"}, [""]),
        ([], [""]),
    ],
)
def test_metadata_is_checked_against_the_spec(metadata: object, problems: list[str]) -> None:
    assert [loc for loc, _ in devcontainer.metadata_errors(metadata)] == problems


def test_a_dockerfile_permutation_gets_every_metadata_problem_one_line_each(
    tmp_path: Path,
) -> None:
    family = (
        "family: d\nname: d\ncontext: ../ctx\nbase: b/x:1\n"
        "metadata:\n  - {id: d, remoteUser: vscode, bogus: 1}\n"
    )
    root = project(tmp_path, family, ctx__Dockerfile="FROM scratch\n")
    with pytest.raises(ConfigError) as err:
        load(root)
    lines = str(err.value).splitlines()
    assert len(lines) == 2
    assert all(line.startswith(f"{root}/permutations/f.yaml: field 'metadata.0.") for line in lines)
    good = family.replace("id: d, ", "").replace(", bogus: 1", "")
    (root / "permutations/f.yaml").write_text(good)
    assert json.loads(load(root)[0].metadata) == [{"remoteUser": "vscode"}]


def test_a_metadata_build_arg_with_an_id_is_refused(tmp_path: Path) -> None:
    family = (
        "family: d\nname: d\ncontext: ../ctx\nbase: b/x:1\n"
        'build_args:\n  DEVCONTAINER_METADATA: \'[{{"id": "d"}}]\'\n'
    )
    root = project(tmp_path, family, ctx__Dockerfile="FROM scratch\n")
    with pytest.raises(ConfigError, match=r"build_args\.DEVCONTAINER_METADATA\.0\.id"):
        load(root)


def test_remote_user_is_the_last_one_declared() -> None:
    label = '[{"id": "./f"}, {"remoteUser": "a"}, {"containerUser": "c"}, {"remoteUser": "b"}]'
    assert devcontainer.remote_user(label) == "b"
    assert devcontainer.remote_user('[{"containerUser": "c"}]') == "c"
    assert devcontainer.remote_user("not json") == ""


def test_checks_are_read_from_what_check_prints() -> None:
    output = (
        "\n🧪 Testing python\n✅  Passed!\n"
        "\n🧪 Testing pip\n❌ pip check failed.\n"
        "\n🧪 Testing several.\n✅ Passed!\n"
        "\n🧪 Testing died here\n"
    )
    assert devcontainer.parse_checks(output) == [
        {"name": "python", "passed": True},
        {"name": "pip", "passed": False},
        {"name": "several", "passed": True},
        {"name": "died here", "passed": False},
    ]


def test_features_the_cli_installed_unpinned_are_found() -> None:
    pinned = {"ghcr.io/a/f:1": f"ghcr.io/a/f@{DIGEST}"}
    label = json.dumps([{"id": "./local"}, {"id": f"ghcr.io/a/f@{DIGEST}"}, {"remoteUser": "x"}])
    assert devcontainer.unpinned_features(label, pinned) == []
    label = json.dumps([{"id": "ghcr.io/a/dep:2"}, {"id": f"ghcr.io/a/f@{DIGEST}"}])
    assert devcontainer.unpinned_features(label, pinned) == ["ghcr.io/a/dep:2"]
    assert devcontainer.unpinned_features("{", pinned)
