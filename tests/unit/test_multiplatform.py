"""Multi-platform images (pure parts): the manifest's per-platform digests, reading an
index's children, dating an index for retention, joining platform parts. (The base
image's platforms and the CI matrix: test_build_plan.)"""

from __future__ import annotations

import copy
import datetime as dt
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from dcforge.core import manifest as mf
from dcforge.core import merge, oci_archive, permfile, release, settings
from dcforge.core import retention_plan as rp
from dcforge.core.errors import BuildError, ConfigError, ManifestError
from dcforge.infra.tools import buildx
from dcforge.stages import retention
from tests.projects import write_project
from tests.unit.test_manifest import GOOD

AMD, ARM, INDEX = ("sha256:" + c * 64 for c in "123")


def multi(**changes: Any) -> dict[str, Any]:
    doc = copy.deepcopy(GOOD)
    entry = doc["permutations"][0]
    entry.update(
        image_digest=INDEX,
        platforms=["linux/amd64", "linux/arm64"],
        platform_digests={"linux/amd64": AMD, "linux/arm64": ARM},
    )
    entry.update(changes)
    return doc


def test_a_multi_platform_entry_names_the_index_and_each_platform_image() -> None:
    entry = mf.parse(multi(), "m").permutations[0]
    assert entry.multi_platform
    assert entry.platform_images() == {"linux/amd64": AMD, "linux/arm64": ARM}
    assert entry.report_stem("linux/arm64") == "tiny-one@linux-arm64"
    single = mf.parse(GOOD, "m").permutations[0]
    assert single.platform_images() == {"linux/amd64": "sha256:" + "c" * 64}
    assert single.report_stem("linux/amd64") == "tiny-one"
    rel = release.parse(release.build(mf.parse(multi(), "m"), {}), "r")
    (image,) = rel.images
    assert image.signed_refs()[1:] == [f"{image.repository}@{AMD}", f"{image.repository}@{ARM}"]
    assert image.attested() == [("linux/amd64", AMD), ("linux/arm64", ARM)]


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"platform_digests": {}}, "platform_digests names nothing"),
        ({"platform_digests": {"linux/amd64": AMD}}, "builds \\['linux/amd64', 'linux/arm64'\\]"),
        (
            {"platform_digests": {"linux/amd64": AMD, "linux/arm64": ARM, "linux/s390x": ARM}},
            "platform_digests names",
        ),
        ({"platform_digests": {"linux/amd64": AMD, "linux/arm64": "sha256:x"}}, "platform_dig"),
        ({"platforms": ["linux/amd64", "linux/amd64"]}, "listed twice"),
        ({"platforms": ["linux/amd64"], "platform_digests": {"linux/amd64": AMD}}, "not image_d"),
    ],
)
def test_an_entry_whose_platforms_do_not_add_up_is_refused(
    changes: dict[str, Any], expected: str
) -> None:
    """Every platform that will be signed must have been recorded (and so gated)."""
    with pytest.raises(ManifestError, match=expected):
        mf.parse(multi(**changes), "m")


def child(arch: str, digest: str, **extra: Any) -> dict[str, Any]:
    return {"digest": digest, "platform": {"os": "linux", "architecture": arch}, **extra}


def test_index_children_by_platform_leave_out_attestation_manifests() -> None:
    index = {
        "manifests": [
            child("amd64", AMD),
            child("arm64", ARM, platform={"os": "linux", "architecture": "arm64", "variant": "v8"}),
            {"digest": INDEX, "platform": {"os": "unknown", "architecture": "unknown"}},
            child(
                "amd64", INDEX, annotations={"vnd.docker.reference.type": "attestation-manifest"}
            ),
        ]
    }
    assert oci_archive.index_children(index, "x") == {"linux/amd64": AMD, "linux/arm64/v8": ARM}
    assert oci_archive.index_children({"schemaVersion": 2}, "x") == {}
    with pytest.raises(BuildError, match="two images, or none, for linux/amd64"):
        oci_archive.index_children({"manifests": [child("amd64", AMD), child("amd64", ARM)]}, "x")


def perm(root: Path, platforms: str) -> permfile.Permutation:
    family = "family: tiny\nname: tiny\ncontext: ../images/tiny\nbase: b/busybox:1\n"
    write_project(root, families={"tiny.yaml": family + f"platforms: {platforms}\n"})
    (p,) = permfile.load_all(root / "permutations", root=root, registry="r/dc", builtins={})
    return p


def test_an_unknown_platform_is_refused_in_the_yaml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="platforms"):
        perm(tmp_path, "[linux/amd64, linux/arm65]")


NOW = dt.datetime(2026, 11, 28, tzinfo=dt.UTC)
OLD = NOW - dt.timedelta(days=200)


def test_an_index_is_as_old_as_its_newest_child_and_goes_with_its_children() -> None:
    """An index has no config to date it: without this every multi-platform image would be
    kept forever as "age unknown"; dated, it and its children are deleted together."""
    repo = "reg/dc/multi"
    index = rp.Version(repo, INDEX, ("multi-" + "a" * 40,), None, (AMD, ARM))
    versions = [
        index,
        rp.Version(repo, AMD, (), OLD),
        rp.Version(repo, ARM, (), OLD - dt.timedelta(days=1)),
        rp.Version(repo, "sha256:" + "4" * 64, (f"sha256-{ARM[7:]}.sig",)),
    ]
    dated = retention._date_indexes(versions)
    assert dated[0].created == OLD
    plan = rp.plan(dated, [], None, rp.RetentionPolicy(now=NOW))
    assert {v.digest for v in plan.delete} == {INDEX, AMD, ARM, "sha256:" + "4" * 64}
    assert plan.delete[0].digest == INDEX  # the index before its children
    young = retention._date_indexes([index, versions[1], rp.Version(repo, ARM, (), NOW)])
    assert rp.plan(young, [], None, rp.RetentionPolicy(now=NOW)).delete == []
    unknown = retention._date_indexes([index, versions[1], rp.Version(repo, ARM)])
    assert unknown[0].created is None  # a child of unknown age: the index stays unknown


def test_the_builder_platforms_of_every_node() -> None:
    text = """Name:          multi
Driver:        docker-container

Nodes:
Name:             multi0
Platforms:        linux/amd64*, linux/amd64/v2, linux/386
Labels:
 org.mobyproject.buildkit.worker.executor: oci

Name:             multi1
Endpoint:         ssh://builder@arm64-host
Platforms:        linux/arm64*, linux/arm/v7
"""
    assert buildx.parse_builder_platforms(text) == {
        "linux/amd64",
        "linux/amd64/v2",
        "linux/386",
        "linux/arm64",
        "linux/arm/v7",
    }
    assert buildx.parse_builder_platforms("Name: x\nDriver: docker\n") == set()


def part(platform: str, digest: str, **changes: Any) -> mf.Entry:
    doc = copy.deepcopy(GOOD)
    entry = doc["permutations"][0]
    entry.update(
        image_digest=digest,
        platforms=[platform],
        platform_digests={platform: digest},
        part_of=["linux/amd64", "linux/arm64"],
    )
    entry.update(changes)
    return mf.parse(doc, "part").permutations[0]


@pytest.mark.parametrize(
    ("arm64", "expected"),
    [
        ({"input_hash": "sha256:" + "9" * 64}, "disagree on input_hash"),
        ({"tags": ["localhost:5000/dcforge/tiny:other"]}, "disagree on tags"),
        (
            {"base_image": {"ref": "localhost:5000/library/busybox:latest", "digest": AMD}},
            "FROM different base images",
        ),
        ({"platforms": ["linux/amd64"], "platform_digests": {"linux/amd64": ARM}}, "cover"),
    ],
)
def test_platform_parts_that_are_not_one_permutation_never_merge(
    tmp_path: Path, arm64: dict[str, Any], expected: str
) -> None:
    group = [
        (tmp_path, part("linux/amd64", AMD)),
        (tmp_path, part("linux/arm64", ARM, **arm64)),
    ]
    with pytest.raises(ManifestError, match=expected):
        merge.join_parts("tiny-one", group, tmp_path)
    assert not (tmp_path / "tiny-one.tar").exists()


def test_a_part_names_one_of_the_platforms_it_is_part_of() -> None:
    with pytest.raises(ManifestError, match="a platform part builds one of"):
        part("linux/s390x", AMD)
    m = replace(mf.parse(GOOD, "m"), permutations=[part("linux/amd64", AMD)])
    with pytest.raises(ManifestError, match="merge the platform parts"):
        m.check_complete("m")


@pytest.mark.parametrize(
    "raw", ["arm64", "linux/arm64=", "linux/arm64=a,linux/arm64=b", "linux=x", "=x"]
)
def test_native_runners_that_do_not_parse_are_refused(tmp_path: Path, raw: str) -> None:
    with pytest.raises(ConfigError, match="native_runners"):
        settings.Settings(root=tmp_path, native_runners=raw)
    ok = settings.Settings(root=tmp_path, native_runners=" linux/arm64 = arm , ")
    assert ok.runner_labels == {"linux/arm64": "arm"}


@pytest.mark.parametrize(
    "extra",
    [
        {"digest": INDEX, "platform": {"os": "unknown", "architecture": "unknown"}},
        child("s390x", INDEX, annotations={"vnd.docker.reference.type": "attestation-manifest"}),
        child("s390x", INDEX, mediaType="application/vnd.oci.image.index.v1+json"),
        {"digest": INDEX, "mediaType": "application/vnd.oci.image.manifest.v1+json"},
    ],
)
def test_an_archive_index_holds_platform_images_and_nothing_else(extra: dict[str, Any]) -> None:
    """Whatever else an index names would be pushed with it (skopeo --all) unscanned."""
    image = "application/vnd.oci.image.manifest.v1+json"
    index = {"manifests": [child("amd64", AMD, mediaType=image), extra]}
    with pytest.raises(BuildError, match="not one platform's image"):
        oci_archive.index_children(index, "x.tar", strict=True)


def test_a_grouped_job_names_its_permutations_comma_separated(tmp_path: Path) -> None:
    p = perm(tmp_path, "[linux/amd64]")
    other = replace(p, name="other")
    assert permfile.select([p, other], ["other,tiny"]) == [other, p]
    assert permfile.select([p, other], ["tiny", "tiny, other"]) == [p, other]
    with pytest.raises(ConfigError, match="unknown permutation 'nope'"):
        permfile.select([p, other], ["tiny,nope"])
