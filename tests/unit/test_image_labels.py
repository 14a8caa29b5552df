"""The standard OCI labels and annotations of an image (pure): what each key says, which
are left out, and where the repository URL comes from."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from dcforge.core import image_labels, permfile, provenance
from tests.projects import TINY_FAMILY, write_project

BUILTINS = {"base_registry": "localhost:5000/library", "registry": "r"}
BASE = "sha256:" + "b" * 64
SHA = "c" * 40
SOURCE = image_labels.Source(SHA, 1714564800, "https://github.com/acme/images")

FAMILY = """\
family: py
description: |
  Python {python}
  on   Debian.
licenses: "{license}"
matrix:
  python: ["3.12"]
  license: [MIT]
name: "py-{python}"
context: ../images/tiny
base: "{base_registry}/busybox:latest"
tags: ["{python}-bookworm", "{python}"]
"""


def load(root: Path, licenses: str = "") -> dict[str, permfile.Permutation]:
    perms = permfile.load_all(
        root / "permutations", root=root, registry="r", builtins=BUILTINS, licenses=licenses
    )
    return {p.name: p for p in perms}


def test_every_key_says_what_the_oci_spec_means(tmp_path: Path) -> None:
    root = write_project(tmp_path, families={"py.yaml": FAMILY})
    (perm,) = load(root, licenses="Apache-2.0").values()
    assert image_labels.oci_labels(perm, BASE, SOURCE) == {
        "org.opencontainers.image.source": "https://github.com/acme/images",
        "org.opencontainers.image.revision": SHA,
        "org.opencontainers.image.created": "2024-05-01T12:00:00Z",
        "org.opencontainers.image.version": "3.12-bookworm",
        "org.opencontainers.image.title": "py-3.12",
        # Templated like every other field, and on one line (a YAML block joined).
        "org.opencontainers.image.description": "Python 3.12 on Debian.",
        # The family's own licenses win over the project's.
        "org.opencontainers.image.licenses": "MIT",
        "org.opencontainers.image.base.name": "localhost:5000/library/busybox:latest",
        "org.opencontainers.image.base.digest": BASE,
    }


def test_empty_values_are_left_out_not_written_empty(tmp_path: Path) -> None:
    """No description, no licenses anywhere, no repository URL: no such key. The version
    of a permutation without floating tags is its name (never the immutable tag)."""
    root = write_project(tmp_path)
    perm = replace(load(root)["tiny-one"], floating_tags=())
    found = image_labels.oci_labels(perm, BASE, replace(SOURCE, url=""))
    for key in ("source", "description", "licenses"):
        assert f"org.opencontainers.image.{key}" not in found
    assert found["org.opencontainers.image.version"] == "tiny-one"
    assert all(found.values())


def test_the_project_licenses_apply_unless_the_family_names_its_own(tmp_path: Path) -> None:
    opted_out = (
        FAMILY.replace('licenses: "{license}"', 'licenses: ""')
        .replace("family: py", "family: px")
        .replace('name: "py-', 'name: "px-')
        .replace('tags: ["', 'tags: ["px-')
    )
    families = {"tiny.yaml": TINY_FAMILY, "py.yaml": FAMILY, "px.yaml": opted_out}
    root = write_project(tmp_path, families=families)
    perms = load(root, licenses="Apache-2.0")
    assert perms["tiny-one"].licenses == "Apache-2.0"  # the project's
    assert perms["py-3.12"].licenses == "MIT"  # the family's own, templated
    assert perms["px-3.12"].licenses == ""  # an explicit empty one: none at all


@pytest.mark.parametrize(
    ("ref", "name"),
    [
        ("localhost:5000/library/debian:bookworm", "localhost:5000/library/debian:bookworm"),
        ("ghcr.io/a/b:1@sha256:" + "1" * 64, "ghcr.io/a/b:1"),
        ("ghcr.io/a/b@sha256:" + "1" * 64, "ghcr.io/a/b"),
    ],
)
def test_the_base_name_is_the_reference_as_written_without_a_digest(ref: str, name: str) -> None:
    assert image_labels.base_name(ref) == name


@pytest.mark.parametrize(
    ("epoch", "text"),
    [(0, "1970-01-01T00:00:00Z"), (1714564800, "2024-05-01T12:00:00Z")],
)
def test_created_is_rfc3339_in_utc(epoch: int, text: str) -> None:
    assert image_labels.created(epoch) == text


def test_the_source_is_the_github_repository_in_actions_else_the_remote() -> None:
    actions = {"GITHUB_SERVER_URL": "https://github.com", "GITHUB_REPOSITORY": "acme/images"}
    assert image_labels.source_url(actions, "git@x:y/z.git") == "https://github.com/acme/images"
    remote = "https://user:token@git.example/acme/images.git"
    assert image_labels.source_url({}, remote) == "https://git.example/acme/images.git"
    assert image_labels.source_url({}, "") == ""
    assert image_labels.source_url({}, provenance.LOCAL_SOURCE) == ""
