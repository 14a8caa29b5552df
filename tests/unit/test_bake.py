"""Bake targets (pure): how targets split over bake sessions, what a refresh asks of
buildx, and the labels, annotations, build arg and output every target carries."""

from __future__ import annotations

import csv
from dataclasses import replace
from pathlib import Path

import pytest

from dcforge.core import bake, build_plan, image_labels
from dcforge.core.settings import Settings
from dcforge.core.settings import load as load_settings
from tests.projects import TINY_FAMILY, write_project


def target(name: str) -> bake.Target:
    return bake.Target(
        name=name,
        context=Path("."),
        dockerfile=Path("Dockerfile"),
        args={},
        platforms=("linux/amd64",),
        tags=[],
        labels={},
        output_tar=Path(f"{name}.tar"),
    )


@pytest.mark.parametrize(
    ("n", "sessions", "expected"), [(5, 1, 1), (5, 2, 2), (2, 8, 2), (0, 3, 1)]
)
def test_targets_split_over_at_most_the_asked_sessions(
    n: int, sessions: int, expected: int
) -> None:
    targets = [target(f"p{i}") for i in range(n)]
    groups = bake.groups(targets, sessions)
    assert len(groups) == expected
    assert sorted(t.name for g in groups for t in g) == sorted(t.name for t in targets)


def test_a_refreshed_target_is_built_with_no_cache_at_all() -> None:
    """A refresh exists because the cached apt-get layer hands back the vulnerable package:
    no cache import, every step rebuilt, the base pulled again."""
    plain = replace(target("a"), cache_from=["type=gha,scope=main-a"])
    refreshed = replace(target("b"), cache_from=["type=gha,scope=main-b"], no_cache=True)
    definition = bake.bake_definition([plain, refreshed])["target"]
    assert "no-cache" not in definition["a"] and definition["a"]["cache-from"] != []
    assert definition["b"]["no-cache"] is True and definition["b"]["pull"] is True
    assert definition["b"]["cache-from"] == []


SOURCE = image_labels.Source("c" * 40, 1714564800, "https://github.com/acme/images")
BASE = "sha256:" + "b" * 64
MULTI_FAMILY = """\
family: multi
description: Two platforms, one index.
name: multi
context: ../images/tiny
base: "{base_registry}/busybox:latest"
platforms: [linux/amd64, linux/arm64]
tags: [latest]
"""


def planned(tmp_path: Path) -> tuple[Settings, dict[str, build_plan.PlannedPermutation]]:
    root = write_project(
        tmp_path,
        families={"tiny.yaml": TINY_FAMILY, "multi.yaml": MULTI_FAMILY},
        extra_settings='licenses = "MIT"\n',
    )
    settings = load_settings(root, {})
    perms = build_plan.load_permutations(settings)
    items = [build_plan.PlannedPermutation(p, BASE, "sha256:" + "e" * 64) for p in perms]
    return settings, {item.perm.name: item for item in items}


def test_every_target_is_labelled_annotated_and_dated_by_the_commit(tmp_path: Path) -> None:
    """The bake file asks for the OCI labels next to dcforge's own, the same keys as
    manifest annotations (and index ones for a multi-platform image only: BuildKit refuses
    them on a single-platform export), SOURCE_DATE_EPOCH as a build arg, and every layer's
    file times rewritten to it."""
    settings, items = planned(tmp_path)
    targets = bake.targets(settings, {}, list(items.values()), tmp_path / "in", SOURCE)
    definition = bake.bake_definition(targets)["target"]
    one, multi = definition["tiny-one"], definition["multi"]
    oci = image_labels.oci_labels(items["tiny-one"].perm, BASE, SOURCE)
    assert oci["org.opencontainers.image.licenses"] == "MIT"  # the project's setting
    assert one["labels"] == {
        **oci,
        "dev.dcforge.permutation": "tiny-one",
        "dev.dcforge.input-hash": "sha256:" + "e" * 64,
        "dev.dcforge.base.digest": BASE,
    }
    assert one["annotations"] == [f"manifest:{k}={v}" for k, v in oci.items()]
    assert one["args"]["SOURCE_DATE_EPOCH"] == "1714564800"
    assert one["args"]["GREETING"] == "hello one"
    assert one["output"] == [f"type=oci,dest={tmp_path / 'in/tiny-one.tar'},rewrite-timestamp=true"]
    assert one["tags"] == [f"localhost:5000/test/tiny:tiny-one-{'c' * 40}"]
    levels = {a.split(":", 1)[0] for a in multi["annotations"]}
    assert levels == {"manifest", "index"}
    assert (
        "index:org.opencontainers.image.description=Two platforms, one index."
        in multi["annotations"]
    )
    assert "index:org.opencontainers.image.created=2024-05-01T12:00:00Z" in multi["annotations"]


def test_the_dev_containers_cli_gets_the_annotations_in_its_output_as_csv(tmp_path: Path) -> None:
    """The CLI has no --annotation: the OCI exporter's annotation-<level>.<key> attributes
    ride in --output, which buildx reads as CSV (a comma or a quote in a value is quoted)."""
    t = replace(
        target("dc"),
        platforms=("linux/amd64", "linux/arm64"),
        annotations={"org.opencontainers.image.description": 'a, "b"'},
        epoch=5,
    )
    fields = next(csv.reader([t.oci_output(with_annotations=True)]))
    assert fields == [
        "type=oci",
        "dest=dc.tar",
        "rewrite-timestamp=true",
        'annotation-manifest.org.opencontainers.image.description=a, "b"',
        'annotation-index.org.opencontainers.image.description=a, "b"',
    ]
    assert t.build_args() == {"SOURCE_DATE_EPOCH": "5"}
    # Without an epoch (a target made by hand): nothing to rewrite to, no build arg.
    assert target("x").oci_output() == "type=oci,dest=x.tar"
    assert target("x").build_args() == {}
