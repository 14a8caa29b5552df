"""The standard OCI labels and annotations, and the commit's time, read back from what was
pushed: after build + gate + publish, each image config's labels, each image manifest's
and (multi-platform) the index's annotations are what was asked, and ``created`` — the
label, the annotation and the config's own — is the commit's time (SOURCE_DATE_EPOCH);
the files the build wrote carry that time too (rewrite-timestamp)."""

from __future__ import annotations

import datetime as dt
import gzip
import io
import json
import subprocess
import tarfile
import uuid
from pathlib import Path
from typing import Any

import pytest

from dcforge.core import manifest as mf
from dcforge.infra.runner import Runner
from tests.integration import oras_oracle as registry
from tests.integration.conftest import (
    PrivateRegistry,
    TrivyDb,
    build_and_gate,
    env_for,
    git_commit,
    run_dcforge,
)
from tests.integration.test_multiarch import PLATFORMS, multi_project

pytestmark = pytest.mark.integration

ORIGIN = "https://example.invalid/acme/images.git"
OCI = "org.opencontainers.image."


def commit_time(root: Path) -> int:
    out = subprocess.run(
        ["git", "-C", str(root), "show", "-s", "--format=%ct", "HEAD"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return int(out.stdout.strip())


def rfc3339(epoch: int) -> str:
    return dt.datetime.fromtimestamp(epoch, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def expected(m: mf.Manifest, e: mf.Entry, *, description: str, epoch: int) -> dict[str, str]:
    """What every image of ``e`` must say, written out by hand (not by dcforge's code)."""
    return {
        f"{OCI}source": ORIGIN,
        f"{OCI}revision": m.git_sha,
        f"{OCI}created": rfc3339(epoch),
        f"{OCI}version": e.floating_tags[0],
        f"{OCI}title": e.name,
        f"{OCI}description": description,
        f"{OCI}licenses": "MIT",
        f"{OCI}base.name": e.base_image.ref,
        f"{OCI}base.digest": e.base_image.digest,
    }


def oci_only(found: dict[str, str] | None) -> dict[str, str]:
    return {k: v for k, v in (found or {}).items() if k.startswith(OCI)}


def config_created(config: dict[str, Any]) -> dt.datetime:
    return dt.datetime.fromisoformat(str(config["created"]).replace("Z", "+00:00"))


def labelled_project(
    root: Path, description: str = "The {family} image, built by dcforge."
) -> None:
    """The project's images described (``description``, templated), licensed and with an
    origin remote, committed."""
    with (root / "pyproject.toml").open("a") as fh:
        fh.write('licenses = "MIT"\n')
    for family in (root / "permutations").glob("*.yaml"):
        # A JSON string is a YAML double-quoted scalar: any character, taken literally.
        family.write_text(f"description: {json.dumps(description)}\n" + family.read_text())
    subprocess.run(["git", "-C", str(root), "remote", "add", "origin", ORIGIN], check=True)
    git_commit(root, "labels")


def newest_layer_times(tarball: Path, manifest_digest: str) -> dict[str, int]:
    """path → mtime of every file in the image's last layer (what the build's RUN wrote)."""
    with tarfile.open(tarball) as tar:

        def blob(digest: str) -> bytes:
            member = tar.extractfile(f"blobs/sha256/{digest.split(':', 1)[1]}")
            assert member is not None
            return member.read()

        manifest = json.loads(blob(manifest_digest))
        layer = blob(manifest["layers"][-1]["digest"])
    data = gzip.decompress(layer) if layer[:2] == b"\x1f\x8b" else layer
    with tarfile.open(fileobj=io.BytesIO(data)) as layer_tar:
        return {
            m.name.removeprefix("./"): int(m.mtime) for m in layer_tar.getmembers() if m.isfile()
        }


def test_pushed_images_carry_the_oci_labels_and_annotations_dated_by_the_commit(
    project: Path, private_registry: PrivateRegistry, trivy_db: TrivyDb, runner: Runner
) -> None:
    # A greeting of this test's own: the RUN after its COPY runs now (after the commit),
    # not from an earlier test's BuildKit cache, so its file is rewritten to the epoch.
    (project / "images/tiny/greeting.txt").write_text(f"labels {uuid.uuid4().hex}\n")
    labelled_project(project)
    epoch = commit_time(project)
    env = env_for(private_registry, trivy_db)
    m = build_and_gate(project, env)
    assert m.source_date_epoch == epoch
    published = run_dcforge("publish", cwd=project, env=env)
    assert published.returncode == 0, published.stderr
    for e in m.permutations:
        want = expected(m, e, description="The tiny image, built by dcforge.", epoch=epoch)
        # A single-platform image: one manifest (no index), annotated; its config labelled.
        served = registry.manifest(runner, f"{e.repository}:{e.floating_tags[0]}", plain_http=True)
        assert served["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
        assert oci_only(served.get("annotations")) == want
        config = registry.blob_json(
            runner, f"{e.repository}@{served['config']['digest']}", plain_http=True
        )
        labels = config["config"]["Labels"]
        assert oci_only(labels) == want
        assert labels["dev.dcforge.permutation"] == e.name  # dcforge's own stay
        assert labels["dev.dcforge.input-hash"] == e.input_hash
        # created: the label, the annotation and the config's own are the commit's time …
        assert config_created(config) == dt.datetime.fromtimestamp(epoch, dt.UTC)
        # … and the files the build's RUN wrote were rewritten to it (rewrite-timestamp).
        times = newest_layer_times(project / "dist" / e.tarball, e.image_digest)
        assert times["etc/built-greeting"] == epoch
        assert max(times.values()) <= epoch


def test_a_multi_platform_index_and_each_of_its_images_are_annotated(
    tmp_path: Path, private_registry: PrivateRegistry, trivy_db: TrivyDb, runner: Runner
) -> None:
    """One machine builds both platforms (arm64 emulated): BuildKit writes the index, which
    gets the annotations too; each platform's manifest and config say the same."""
    root = multi_project(tmp_path / "p", f"{private_registry.host}/dc")
    labelled_project(root)
    epoch = commit_time(root)
    env = env_for(private_registry, trivy_db)
    for step in (("build", "--no-prune"), ("gate",), ("publish",)):
        result = run_dcforge(*step, cwd=root, env=env, timeout=1200)
        assert result.returncode == 0, result.stderr
    m = mf.load(root / "dist/manifest.json")
    (e,) = m.permutations
    want = expected(m, e, description="The multi image, built by dcforge.", epoch=epoch)
    index = registry.manifest(runner, f"{e.repository}:latest", plain_http=True)
    assert index["mediaType"] == "application/vnd.oci.image.index.v1+json"
    assert oci_only(index.get("annotations")) == want
    for platform in PLATFORMS:
        child = registry.manifest(
            runner, f"{e.repository}@{e.platform_digests[platform]}", plain_http=True
        )
        assert oci_only(child.get("annotations")) == want, platform
        config = registry.blob_json(
            runner, f"{e.repository}@{child['config']['digest']}", plain_http=True
        )
        assert oci_only(config["config"]["Labels"]) == want, platform
        assert config_created(config) == dt.datetime.fromtimestamp(epoch, dt.UTC)


def test_platform_parts_merge_into_an_index_annotated_like_a_one_machine_build(
    tmp_path: Path, private_registry: PrivateRegistry, trivy_db: TrivyDb, runner: Runner
) -> None:
    """Each part is a single-platform build (BuildKit writes no index for it): the merge's
    index takes the annotations the parts' manifests agree on."""
    root = multi_project(tmp_path / "p", f"{private_registry.host}/dc")
    labelled_project(root)
    epoch = commit_time(root)
    env = env_for(private_registry, trivy_db)
    dirs = []
    for platform in PLATFORMS:
        out = tmp_path / f"part-{platform.split('/')[1]}"
        built = run_dcforge(
            "build", "--no-prune", "--platform", platform, cwd=root,
            env={**env, "DCFORGE_DIST": str(out)}, timeout=1200,
        )  # fmt: skip
        assert built.returncode == 0, built.stderr
        dirs.append(str(out))
    merged = run_dcforge("merge-manifests", *dirs, cwd=root, env=env)
    assert merged.returncode == 0, merged.stderr
    for step in ("gate", "publish"):
        result = run_dcforge(step, cwd=root, env=env, timeout=1200)
        assert result.returncode == 0, result.stderr
    m = mf.load(root / "dist/manifest.json")
    (e,) = m.permutations
    assert m.source_date_epoch == epoch
    want = expected(m, e, description="The multi image, built by dcforge.", epoch=epoch)
    index = registry.manifest(runner, f"{e.repository}:latest", plain_http=True)
    assert oci_only(index.get("annotations")) == want
    for platform in PLATFORMS:
        child = registry.manifest(
            runner, f"{e.repository}@{e.platform_digests[platform]}", plain_http=True
        )
        assert oci_only(child.get("annotations")) == want, platform
