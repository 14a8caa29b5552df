"""devcontainer.json permutations, Feature references and pins, image metadata, image-test
output: pure logic (the real CLI builds in tests/integration/test_devcontainer.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dcforge.core import devcontainer, permfile
from dcforge.core.errors import ConfigError
from dcforge.core.hashing import input_hash

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


def load(root: Path) -> list[permfile.Permutation]:
    return permfile.load_all(root / "permutations", root=root, registry="r", builtins=BUILTINS)


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
        # What would build something dcforge does not pin, hash or label:
        (FAMILY, '{"image": "d", "dockerFile": "Dockerfile.evil", "context": "/"}', "'dockerFile'"),
        (FAMILY, '{"image": "d", "context": "/"}', "field 'context'"),
        (FAMILY, '{"build": {"dockerfile": "D", "options": ["--label", "x=y"]}}', "build.options"),
        (FAMILY, '{"build": {"dockerfile": "D", "cacheFrom": "evil/cache"}}', "build.cacheFrom"),
        (FAMILY, '{"build": {"dockerfile": "D", "target": "other"}}', "build.target"),
        (FAMILY, '{"build": {"dockerfile": "D", "args": ["A=1"]}}', "'build.args': must be"),
        # The runner's environment must not reach the build or the image:
        (
            FAMILY,
            '{"image": "d", "containerEnv": {"T": "${localEnv:GITHUB_TOKEN}"}}',
            "containerEnv.T",
        ),
        (FAMILY, '{"image": "d", "features": {"./feat": {"m": "${localEnv:HOME}"}}}', "features"),
        (
            FAMILY,
            '{"build": {"dockerfile": "D", "context": "${localWorkspaceFolder}"}}',
            "build.context",
        ),
        (
            FAMILY + "build_args: {}\n",
            '{"image": "d", "remoteEnv": {"X": "${env:T}"}}',
            "remoteEnv.X",
        ),
        (FAMILY.replace('level: "{v}"', 'level: "${{localEnv:T}}"'), "", "features"),
        # Feature references outside the OCI grammar, and keys that are not strings:
        (FAMILY, '{"image": "d", "features": {"HTTPS://x.test/f.tgz": {}}}', "tarball URL"),
        (FAMILY, '{"image": "d", "features": {"--config=a.b/c": {}}}', "not an OCI reference"),
        (FAMILY, '{"image": "d", "features": {" ghcr.io/x/y:1": {}}}', "not an OCI reference"),
        (FAMILY, '{"image": "d", "features": {"ghcr.io/X/y:1": {}}}', "not an OCI reference"),
        (FAMILY.replace("./feat:", "1:"), "", "a Feature is named by a string"),
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
    assert devcontainer.read_lock(tmp_path / "devcontainer.json") == {
        "ghcr.io/a/f:1": f"ghcr.io/a/f@{DIGEST}"
    }
    for bad in (f"ghcr.io/evil/f@{DIGEST}", "ghcr.io/a/f:2", "ghcr.io/a/f@sha256:1"):
        lock.write_text(json.dumps({"features": {"ghcr.io/a/f:1": {"resolved": bad}}}))
        with pytest.raises(ConfigError, match=r"devcontainer-lock\.json: field 'features"):
            devcontainer.read_lock(tmp_path / "devcontainer.json")


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


def test_a_devcontainer_json_in_the_project_root_is_refused(tmp_path: Path) -> None:
    root = project(
        tmp_path, FAMILY.replace("../img/.devcontainer/devcontainer.json", "../.devcontainer.json")
    )
    (root / ".devcontainer.json").write_text('{"image": "d"}')
    with pytest.raises(ConfigError, match="project's root"):
        load(root)


def test_the_lock_of_a_dot_devcontainer_json_is_read_and_checked_at_load(tmp_path: Path) -> None:
    assert devcontainer.lock_file(Path("/a/.devcontainer.json")) == Path(
        "/a/.devcontainer-lock.json"
    )
    root = project(tmp_path, FAMILY)
    (root / "img/.devcontainer/devcontainer-lock.json").write_text('{"features": []}')
    with pytest.raises(ConfigError, match=r"devcontainer-lock\.json: field 'features'"):
        load(root)


def test_a_version_shorthand_survives_the_permutation_options() -> None:
    out = devcontainer.render(
        {"image": "d", "features": {"ghcr.io/a/node:1": "18"}},
        devcontainer.Shape("image", ("ghcr.io/a/node:1",)),
        base=BASE, build_args={}, feature_options={"ghcr.io/a/node:1": {"nvm": "x"}}, pins={},
    )  # fmt: skip
    assert out["features"] == {"ghcr.io/a/node:1": {"version": "18", "nvm": "x"}}


def test_the_base_images_own_feature_entries_are_the_bases() -> None:
    base = json.dumps(
        [{"id": "ghcr.io/devcontainers/features/common-utils:2"}, {"remoteUser": "v"}]
    )
    label = json.dumps([*json.loads(base), {"id": "./local"}])
    assert devcontainer.unpinned_features(label, {}, base) == []
    # Not the base's prefix (forged or reordered): every id counts.
    assert devcontainer.unpinned_features(label, {}, "[]") == [
        "ghcr.io/devcontainers/features/common-utils:2"
    ]
    assert devcontainer.unpinned_features('{"id": 1}', {}) == ["(not a list)"]


def test_with_a_nonce_only_marked_checks_count() -> None:
    nonce = "n0nce"
    output = (
        "\n🧪 Testing remote user\ndcforge-check n0nce start remote user\n"
        "✅  Passed!\n"  # printed by the program under test
        "dcforge-check n0nce fail remote user\n"
        "dcforge-check n0nce start died\n"
        "dcforge-check other pass forged\n"
    )
    assert devcontainer.parse_checks(output, nonce) == [
        {"name": "remote user", "passed": False},
        {"name": "died", "passed": False},
    ]
