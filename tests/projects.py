"""Build throwaway dcforge projects on disk for tests."""

from __future__ import annotations

import textwrap
from pathlib import Path

BUSYBOX_DOCKERFILE = """\
ARG BASE_IMAGE
FROM ${BASE_IMAGE}
ARG GREETING=hello
COPY greeting.txt /etc/greeting
RUN echo "${GREETING}" > /etc/built-greeting
"""


def write_project(
    root: Path,
    *,
    registry: str = "localhost:5000/test",
    base_registry: str = "localhost:5000/library",
    families: dict[str, str] | None = None,
    extra_settings: str = "",
) -> Path:
    """A project with a pyproject, an image context and family YAML files."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "pyproject.toml").write_text(
        textwrap.dedent(
            f"""\
            [project]
            name = "sample"
            version = "0"

            [tool.dcforge]
            registry = "{registry}"
            base_registry = "{base_registry}"
            """
        )
        + extra_settings
    )
    ctx = root / "images" / "tiny"
    ctx.mkdir(parents=True, exist_ok=True)
    (ctx / "Dockerfile").write_text(BUSYBOX_DOCKERFILE)
    (ctx / "greeting.txt").write_text("hi\n")
    perms = root / "permutations"
    perms.mkdir(exist_ok=True)
    if families is None:
        families = {"tiny.yaml": TINY_FAMILY}
    for name, text in families.items():
        (perms / name).write_text(textwrap.dedent(text))
    return root


TINY_FAMILY = """\
family: tiny
matrix:
  flavor: [one, two]
name: "tiny-{flavor}"
context: ../images/tiny
base: "{base_registry}/busybox:latest"
build_args:
  GREETING: "hello {flavor}"
tags: ["{flavor}"]
smoke:
  - grep -q "hello {flavor}" /etc/built-greeting
"""
