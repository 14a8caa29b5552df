"""devcontainer.json permutations, built by the real Dev Containers CLI: a local Feature and
a Feature published to the registry, through gate, publish and verify; a moved Feature
digest rebuilds under --since; a failing image test fails the build by its check's name."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest

from dcforge.core import manifest as mf
from dcforge.core import trivydb
from dcforge.infra.runner import Runner
from dcforge.infra.tools import devcontainer_cli, registry
from tests.integration import oras_oracle
from tests.integration.conftest import (
    ROOT,
    PrivateRegistry,
    TrivyDb,
    base_env,
    env_for,
    git_commit,
    push_db,
    run_dcforge,
)
from tests.integration.test_labels import (
    commit_time,
    config_created,
    expected,
    labelled_project,
    newest_layer_times,
    oci_only,
)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module", autouse=True)
def debian_base(stack: str) -> None:
    """The Dev Containers CLI builds as root: a base with a passwd file (not busybox's)."""
    subprocess.run(
        [str(ROOT / "scripts/base-images"), "debian"], check=True, env=base_env(), timeout=900
    )


# A Feature that adds a user and a mark (its options), offline.
IDENTITY_INSTALL = """#!/bin/sh
set -e
useradd --create-home --uid 1000 "${USERNAME:-dev}"
echo "${MARK:-none}" > /etc/identity-mark
"""
IDENTITY_JSON = {
    "id": "identity",
    "version": "1.0.0",
    "name": "Debian identity",
    "options": {
        "username": {"type": "string", "default": "dev"},
        "mark": {"type": "string", "default": "none"},
    },
}
TEST_SH = """#!/bin/sh
cd "$(dirname "$0")"
. ./test-utils.sh
check "runs as the remote user" test "$(id -un)" = dev
check "identity mark" grep -qx "{mark}" /etc/identity-mark
reportResults
"""


def write_feature(folder: Path, version: str = "1.0.0") -> None:
    folder.mkdir(parents=True, exist_ok=True)
    doc = dict(IDENTITY_JSON, version=version)
    (folder / "devcontainer-feature.json").write_text(json.dumps(doc))
    (folder / "install.sh").write_text(IDENTITY_INSTALL)
    (folder / "install.sh").chmod(0o755)


def write_devcontainer(project: Path, name: str, features: dict[str, object], mark: str) -> None:
    folder = project / "images" / name / ".devcontainer"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "devcontainer.json").write_text(
        "// JSONC, as editors write it\n"
        + json.dumps({"image": "busybox", "features": features, "remoteUser": "dev"}, indent=1)[:-1]
        + ",\n}\n"  # a trailing comma
    )
    test = project / "images" / name / "test-project"
    test.mkdir()
    (test / "test.sh").write_text(TEST_SH.replace("{mark}", mark))
    (test / "test.sh").chmod(0o755)
    (project / "permutations" / f"{name}.yaml").write_text(
        f"family: {name}\nname: {name}\n"
        f"devcontainer: ../images/{name}/.devcontainer/devcontainer.json\n"
        'base: "{base_registry}/debian:bookworm"\ntags: [latest]\n'
        "smoke: [test -s /etc/identity-mark]\n"
        f"test: ../images/{name}/test-project/test.sh\n"
    )


@pytest.fixture(scope="module")
def clean_db(namespace: str, runner: Runner, tmp_path_factory: pytest.TempPathFactory) -> TrivyDb:
    """An offline DB whose one advisory matches nothing in Debian bookworm."""
    repository = push_db(
        runner,
        tmp_path_factory.mktemp("clean-db"),
        f"{namespace}/clean-trivy-db:2",
        [trivydb.Advisory("CVE-2099-0002", "no-such-source", "1.0-1", "CRITICAL")],
    )
    return TrivyDb(repository, tmp_path_factory.mktemp("clean-cache"))


def publish_feature(runner: Runner, source: Path, namespace: str) -> str:
    """The Feature published with the real CLI to ``localhost:5000/<namespace>``."""
    cli = devcontainer_cli.executable(runner, ROOT / ".dcforge")
    host, _, path = namespace.partition("/")
    report = devcontainer_cli.publish_features(runner, cli, source, host, path)
    assert (
        report["identity"]["version"]
        == json.loads((source / "devcontainer-feature.json").read_text())["version"]
    )
    return str(report["identity"]["digest"])


def ok(result: object) -> str:
    assert getattr(result, "returncode", 1) == 0, getattr(result, "stderr", "")
    return str(getattr(result, "stderr", ""))


def test_local_and_registry_features_build_gate_publish_verify_and_a_moved_feature_rebuilds(
    project: Path,
    private_registry: PrivateRegistry,
    clean_db: TrivyDb,
    runner: Runner,
    namespace: str,
    tmp_path: Path,
) -> None:
    features_ns = f"{namespace}/features-{uuid.uuid4().hex[:6]}"
    source = tmp_path / "feature-src" / "identity"
    write_feature(source)
    first = publish_feature(runner, source, features_ns)
    remote = f"{features_ns}/identity:1"
    env = env_for(private_registry, clean_db)
    write_feature(project / "images/local-feat/.devcontainer/identity")  # before the json
    write_devcontainer(project, "local-feat", {"./identity": {}}, mark="local")
    write_devcontainer(project, "remote-feat", {remote: {"mark": "json"}}, mark="from-yaml")
    # The permutation's options (templated like every field) win over the devcontainer.json's.
    with (project / "permutations/local-feat.yaml").open("a") as fh:
        fh.write('features:\n  ./identity: {mark: "{family}"}\n')
    (project / "permutations/local-feat.yaml").write_text(
        (project / "permutations/local-feat.yaml")
        .read_text()
        .replace("family: local-feat", "family: local")
    )
    with (project / "permutations/remote-feat.yaml").open("a") as fh:
        fh.write("features:\n  " + remote + ': {mark: "from-yaml"}\n')
    git_commit(project, "devcontainer permutations")

    out = ok(run_dcforge("build", "--no-prune", cwd=project, env=env))
    assert "image test ok (2 check(s)" in out
    m = mf.load(project / "dist/manifest.json")
    local, remote_entry = m.entry("local-feat"), m.entry("remote-feat")
    assert local.features == {}
    assert remote_entry.features == {remote: f"{features_ns}/identity@{first}"}
    report = json.loads((project / "dist/reports/remote-feat.image-test.json").read_text())
    assert [c["passed"] for c in report["platforms"][0]["checks"]] == [True, True]
    assert report["platforms"][0]["user"] == "dev"
    # The CLI wrote the devcontainer.metadata label (with the Feature's id), not dcforge.
    config = registry_config(project / "dist" / local.tarball, local.image_digest)
    label = json.loads(config["config"]["Labels"]["devcontainer.metadata"])
    assert {"id": "./identity"} in label and label[-1]["remoteUser"] == "dev"

    ok(run_dcforge("gate", cwd=project, env=env))
    ok(run_dcforge("publish", cwd=project, env=env))
    ok(run_dcforge("verify", cwd=project, env=env))
    # The provenance lists the registry Feature as a resolved dependency, by digest.
    predicate = attested_provenance(runner, private_registry, remote_entry)
    deps = predicate["buildDefinition"]["resolvedDependencies"]
    assert {"uri": f"oci://{features_ns}/identity", "digest": {"sha256": first[7:]},
            "name": "devcontainer-feature", "annotations": {"reference": remote}} in deps  # fmt: skip

    # Nothing changed: both reused. Then the Feature's tag moves: only remote-feat rebuilds.
    git_commit(project, "no change")
    out = ok(run_dcforge("build", "--no-prune", "--since", "last-known-good", cwd=project, env=env))
    assert "4 reused, 0 to build" in out
    write_feature(source, version="1.0.1")
    moved = publish_feature(runner, source, features_ns)
    assert moved != first
    out = ok(run_dcforge("build", "--no-prune", "--since", "last-known-good", cwd=project, env=env))
    assert "3 reused, 1 to build" in out
    again = mf.load(project / "dist/manifest.json")
    assert again.entry("local-feat").reused
    assert not again.entry("remote-feat").reused
    assert again.entry("remote-feat").features == {remote: f"{features_ns}/identity@{moved}"}
    assert again.entry("remote-feat").input_hash != remote_entry.input_hash

    check_the_lock(project, env, remote, f"{features_ns}/identity@{first}", namespace)


def check_the_lock(project: Path, env: dict[str, str], remote: str, pinned: str, ns: str) -> None:
    """A committed devcontainer-lock.json pins the Feature (a moved tag is not followed);
    a lock naming another repository is refused before anything builds."""
    lock = project / "images/remote-feat/.devcontainer/devcontainer-lock.json"
    digest = pinned.split("@", 1)[1]
    lock.write_text(json.dumps({"features": {remote: {"resolved": pinned, "integrity": digest}}}))
    git_commit(project, "lock")
    ok(run_dcforge("build", "--no-prune", cwd=project, env=env))
    assert mf.load(project / "dist/manifest.json").entry("remote-feat").features == {remote: pinned}
    lock.write_text(json.dumps({"features": {remote: {"resolved": f"{ns}/evil@{digest}"}}}))
    git_commit(project, "bad lock")
    bad = run_dcforge("build", "--no-prune", cwd=project, env=env)
    assert bad.returncode != 0
    assert "devcontainer-lock.json: field 'features." in bad.stderr
    assert "Traceback" not in bad.stderr


def test_a_failing_image_check_fails_the_build_by_name(
    project: Path, private_registry: PrivateRegistry, clean_db: TrivyDb
) -> None:
    env = env_for(private_registry, clean_db)
    write_feature(project / "images/checked/.devcontainer/identity")
    write_devcontainer(project, "checked", {"./identity": {"mark": "actual"}}, mark="expected")
    git_commit(project, "a test that fails")
    result = run_dcforge("build", "--no-prune", cwd=project, env=env)
    assert result.returncode != 0
    assert "image test check 'identity mark' failed on linux/amd64 as dev" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (project / "dist/manifest.json").exists()
    report = json.loads((project / "dist/reports/checked.image-test.json").read_text())
    assert report["platforms"][0]["checks"] == [
        {"name": "runs as the remote user", "passed": True},
        {"name": "identity mark", "passed": False},
    ]


def test_features_that_cannot_be_pinned_are_refused_before_building(
    project: Path, private_registry: PrivateRegistry, clean_db: TrivyDb, namespace: str
) -> None:
    env = env_for(private_registry, clean_db)
    write_feature(project / "images/pinless/.devcontainer/identity")
    cases = {
        "https://example.invalid/feature.tgz": "is a tarball URL, which cannot be pinned",
        "devcontainers/features/git": "names no registry",
        f"{namespace}/features/absent:1": "Feature "
        + f"{namespace}/features/absent:1: cannot resolve",
    }
    write_devcontainer(project, "pinless", {"./identity": {}}, mark="none")
    yaml_file = project / "permutations/pinless.yaml"
    original = yaml_file.read_text()
    for ref, message in cases.items():
        yaml_file.write_text(original + f'features:\n  "{ref}": {{}}\n')
        git_commit(project, ref)
        result = run_dcforge("build", "--no-prune", cwd=project, env=env)
        assert result.returncode != 0, ref
        assert message in result.stderr, result.stderr
        assert "Traceback" not in result.stderr
        assert not (project / "dist/manifest.json").exists()


def registry_config(tarball: Path, digest: str) -> dict[str, Any]:
    """The image config of ``digest`` in an OCI archive."""
    import tarfile

    with tarfile.open(tarball) as tar:

        def blob(d: str) -> dict[str, Any]:
            member = tar.extractfile(f"blobs/sha256/{d.split(':', 1)[1]}")
            assert member is not None
            return dict(json.loads(member.read()))

        manifest = blob(digest)
        return blob(str(manifest["config"]["digest"]))


def attested_provenance(runner: Runner, reg: PrivateRegistry, entry: mf.Entry) -> dict[str, Any]:
    """The SLSA predicate cosign verifies for ``entry`` (through dcforge's own verify: the
    attestation is fetched with cosign download attestation)."""
    out = runner.run(
        ["cosign", "download", "attestation", "--allow-http-registry",
         "--predicate-type", "https://slsa.dev/provenance/v1",
         f"{entry.repository}@{entry.image_digest}"],
        timeout=120, mutates=False,
    ).stdout  # fmt: skip
    for line in out.splitlines():
        import base64

        envelope = json.loads(line)
        statement = json.loads(base64.b64decode(envelope["payload"]))
        if statement["predicateType"] == "https://slsa.dev/provenance/v1":
            return dict(statement["predicate"])
    raise AssertionError(f"no SLSA provenance for {entry.name}")


__all__ = ["registry"]


def test_a_feature_pulled_in_by_depends_on_must_be_declared_and_pinned(
    project: Path,
    private_registry: PrivateRegistry,
    clean_db: TrivyDb,
    runner: Runner,
    namespace: str,
    tmp_path: Path,
) -> None:
    """The CLI resolves a Feature's dependsOn itself, by tag: such a Feature would be in the
    image unpinned and unrecorded. Refused; declared, it is pinned and deduplicated."""
    features_ns = f"{namespace}/dep-{uuid.uuid4().hex[:6]}"
    identity = tmp_path / "src" / "identity"
    write_feature(identity)
    publish_feature(runner, identity, features_ns)
    needs = tmp_path / "src2" / "needs"
    needs.mkdir(parents=True)
    (needs / "devcontainer-feature.json").write_text(
        json.dumps({"id": "needs", "version": "1.0.0", "name": "Needs",
                    "dependsOn": {f"{features_ns}/identity:1": {}}})
    )  # fmt: skip
    (needs / "install.sh").write_text("#!/bin/sh\necho needs > /etc/needs\n")
    (needs / "install.sh").chmod(0o755)
    cli = devcontainer_cli.executable(runner, ROOT / ".dcforge")
    host, _, path = features_ns.partition("/")
    devcontainer_cli.publish_features(runner, cli, needs, host, f"{path}-n")
    env = env_for(private_registry, clean_db)
    write_devcontainer(project, "dep", {f"{features_ns}-n/needs:1": {}}, mark="none")
    git_commit(project, "only needs")
    result = run_dcforge("build", "--no-prune", cwd=project, env=env)
    assert result.returncode != 0
    assert f"got Feature(s) {features_ns}/identity:1 that dcforge did not pin" in result.stderr
    assert not (project / "dist/manifest.json").exists()
    config = project / "images/dep/.devcontainer/devcontainer.json"
    config.write_text(
        json.dumps({"image": "x", "remoteUser": "dev", "features": {
            f"{features_ns}-n/needs:1": {}, f"{features_ns}/identity:1": {}}})
    )  # fmt: skip
    git_commit(project, "declared")
    ok(run_dcforge("build", "--no-prune", cwd=project, env=env))
    pins = mf.load(project / "dist/manifest.json").entry("dep").features
    assert set(pins) == {f"{features_ns}-n/needs:1", f"{features_ns}/identity:1"}


def test_the_build_form_gets_the_pinned_base_and_the_matrix_build_args(
    project: Path, private_registry: PrivateRegistry, clean_db: TrivyDb
) -> None:
    folder = project / "images/built/.devcontainer"
    write_feature(folder / "identity")
    dockerfile = 'ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\nARG FLAVOUR=plain\nRUN echo "$FLAVOUR" > /etc/flavour\n'
    (folder / "Dockerfile.real").write_text(dockerfile)
    # An absolute link (inside the context) still points into the repository from the copy.
    (folder / "Dockerfile").symlink_to(folder / "Dockerfile.real")
    (folder / "devcontainer.json").write_text(json.dumps({
        "build": {"dockerfile": "Dockerfile", "args": {"FLAVOUR": "json", "BASE_IMAGE": "evil"}},
        "features": {"./identity": {}},
    }))  # fmt: skip
    (project / "permutations/built.yaml").write_text(
        "family: built\nmatrix:\n  flavour: [sour]\nname: built-{flavour}\n"
        "devcontainer: ../images/built/.devcontainer/devcontainer.json\n"
        'base: "{base_registry}/debian:bookworm"\nbuild_args: {FLAVOUR: "{flavour}"}\n'
        "smoke: [grep -qx sour /etc/flavour, test -s /etc/identity-mark]\n"
    )
    git_commit(project, "build form")
    env = env_for(private_registry, clean_db)
    ok(run_dcforge("build", "--no-prune", "--permutation", "built-sour", cwd=project, env=env))
    entry = mf.load(project / "dist/manifest.json").entry("built-sour")
    config = registry_config(project / "dist" / entry.tarball, entry.image_digest)
    assert config["config"]["Labels"]["dev.dcforge.base.digest"] == entry.base_image.digest
    assert (folder / "Dockerfile.real").read_text() == dockerfile


def test_an_image_not_built_on_its_pinned_base_is_refused(
    project: Path, private_registry: PrivateRegistry, clean_db: TrivyDb
) -> None:
    """A build-form Dockerfile that ignores BASE_IMAGE (a FROM by tag) builds on something
    the manifest does not record: its layers do not start with the base's."""
    folder = project / "images/hard/.devcontainer"
    write_feature(folder / "identity")
    (folder / "Dockerfile").write_text(
        "ARG BASE_IMAGE\nFROM localhost:5000/library/debian:bookworm\nRUN true\n"
    )
    (folder / "devcontainer.json").write_text(
        json.dumps({"build": {"dockerfile": "Dockerfile"}, "features": {"./identity": {}}})
    )
    (project / "permutations/hard.yaml").write_text(
        "family: hard\nname: hard\ndevcontainer: ../images/hard/.devcontainer/devcontainer.json\n"
        'base: "{base_registry}/busybox:latest"\n'
    )
    git_commit(project, "hard-coded FROM")
    stderr = refused(project, env_for(private_registry, clean_db), "hard")
    assert "'hard' (linux/amd64) is not built on its base" in stderr


def test_a_dockerfile_label_that_breaks_the_metadata_spec_fails_the_build(
    project: Path, private_registry: PrivateRegistry, clean_db: TrivyDb
) -> None:
    """'metadata' is checked when the YAML is loaded; a LABEL the Dockerfile writes itself
    is checked on the built image (the base's own label is the base's)."""
    ctx = project / "images/labelled"
    ctx.mkdir(parents=True)
    (ctx / "Dockerfile").write_text(
        "ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\n"
        'LABEL devcontainer.metadata=\'[{"id":"labelled","remoteUser":"root"}]\'\n'
    )
    (project / "permutations/labelled.yaml").write_text(
        "family: labelled\nname: labelled\ncontext: ../images/labelled\n"
        'base: "{base_registry}/busybox:latest"\n'
    )
    git_commit(project, "a LABEL with an id")
    stderr = refused(project, env_for(private_registry, clean_db), "labelled")
    assert "devcontainer.metadata label 0.id: an image's metadata carries no id" in stderr


def refused(project: Path, env: dict[str, str], name: str) -> str:
    """``build --permutation name`` fails cleanly (one message, no traceback): its stderr."""
    result = run_dcforge("build", "--no-prune", "--permutation", name, cwd=project, env=env)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    return result.stderr


def test_the_cli_built_images_carry_the_oci_labels_and_annotations_dated_by_the_commit(
    project: Path, private_registry: PrivateRegistry, clean_db: TrivyDb, runner: Runner
) -> None:
    """The Dev Containers CLI path: the image form gets the labels through --label and the
    annotations as --output's exporter attributes (CSV: a comma or quote in a value is
    quoted), the build form its labels as a LABEL line (``$`` and quotes taken literally);
    both are dated by the commit through SOURCE_DATE_EPOCH in the CLI's environment."""
    write_feature(project / "images/labelled/.devcontainer/identity")
    write_devcontainer(project, "labelled", {"./identity": {}}, mark="none")
    folder = project / "images/built/.devcontainer"
    write_feature(folder / "identity")
    (folder / "Dockerfile").write_text(
        "ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\nRUN echo built > /built\n"
    )
    (folder / "devcontainer.json").write_text(json.dumps({
        "build": {"dockerfile": "Dockerfile"}, "features": {"./identity": {}},
    }))  # fmt: skip
    (project / "permutations/built.yaml").write_text(
        "family: built\nname: built\ndevcontainer: ../images/built/.devcontainer/devcontainer.json\n"
        'base: "{base_registry}/debian:bookworm"\ntags: [latest]\n'
    )
    labelled_project(project, description='The {family} image: costs $HOME, "quoted", a, b.')
    epoch = commit_time(project)
    env = env_for(private_registry, clean_db)
    names = ("--permutation", "labelled", "--permutation", "built")
    ok(run_dcforge("build", "--no-prune", *names, cwd=project, env=env))
    ok(run_dcforge("gate", cwd=project, env=env))
    ok(run_dcforge("publish", cwd=project, env=env))
    m = mf.load(project / "dist/manifest.json")
    assert m.source_date_epoch == epoch
    for e in m.permutations:
        want = expected(
            m, e, description=f'The {e.family} image: costs $HOME, "quoted", a, b.', epoch=epoch
        )
        served = oras_oracle.manifest(runner, f"{e.repository}:latest", plain_http=True)
        assert oci_only(served.get("annotations")) == want, e.name
        config = oras_oracle.blob_json(
            runner, f"{e.repository}@{served['config']['digest']}", plain_http=True
        )
        assert oci_only(config["config"]["Labels"]) == want, e.name
        assert config_created(config) == dt.datetime.fromtimestamp(epoch, dt.UTC), e.name
        times = newest_layer_times(project / "dist" / e.tarball, e.image_digest)
        assert max(times.values(), default=0) <= epoch, e.name
