"""The rendered copy of a devcontainer.json permutation's folder (files only, no CLI): the
build form's Dockerfile gets the labels the CLI would drop, each taken literally."""

from __future__ import annotations

import json
import re
from pathlib import Path

from dcforge.core import bake, build_plan, image_labels
from dcforge.core.settings import load as load_settings
from dcforge.infra import devcontainer_build
from tests.projects import write_project

FAMILY = """\
family: built
description: 'Costs $HOME, "quoted" and \\ one backslash'
name: built
devcontainer: ../images/built/.devcontainer/devcontainer.json
base: "{base_registry}/debian:bookworm"
"""
SOURCE = image_labels.Source("c" * 40, 1714564800, "")
DIGEST = "sha256:" + "d" * 64


def test_the_build_form_gets_every_label_as_a_literal_dockerfile_word(tmp_path: Path) -> None:
    """A LABEL line is parsed by the Dockerfile frontend: a bare ``$`` would be expanded and
    a ``"`` end the word, so each is escaped; what the image gets is the label as asked."""
    root = write_project(tmp_path, families={"built.yaml": FAMILY})
    folder = root / "images/built/.devcontainer"
    folder.mkdir(parents=True)
    (folder / "Dockerfile").write_text("ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\n")
    (folder / "devcontainer.json").write_text(json.dumps({"build": {"dockerfile": "Dockerfile"}}))
    settings = load_settings(root, {})
    (perm,) = build_plan.load_permutations(settings)
    item = build_plan.PlannedPermutation(perm, DIGEST, "sha256:" + "e" * 64)
    (target,) = bake.targets(settings, {}, [item], tmp_path / "in", SOURCE)
    (tmp_path / "in").mkdir()
    workspace, _, _ = devcontainer_build.render_workspace(item, target)
    label_line = (workspace / ".devcontainer/Dockerfile").read_text().splitlines()[-1]
    assert label_line.startswith("LABEL ")
    words = dict(re.findall(r'"((?:[^"\\]|\\.)*)"="((?:[^"\\]|\\.)*)"', label_line))
    # The Dockerfile frontend takes \" \$ \\ as the character itself inside double quotes.
    literal = {k: re.sub(r"\\([\"$\\])", r"\1", v) for k, v in words.items()}
    assert literal == dict(target.labels)
    assert literal["org.opencontainers.image.description"] == (
        'Costs $HOME, "quoted" and \\ one backslash'
    )
