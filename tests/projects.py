"""Build throwaway dcforge projects on disk for tests."""

from __future__ import annotations

import textwrap
from pathlib import Path

BUSYBOX_DOCKERFILE = """\
ARG BASE_IMAGE
FROM ${BASE_IMAGE}
ARG GREETING=hello
COPY greeting.txt /etc/greeting
COPY os-release /etc/os-release
COPY status /var/lib/dpkg/status
RUN echo "${GREETING}" > /etc/built-greeting && echo 12.5 > /etc/debian_version
"""

# The gate wants an image whose OS Trivy can detect and whose OS packages it scans; the
# busybox test images say they are Debian 12 with one dpkg-registered package.
OS_RELEASE = 'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nID=debian\nVERSION_ID="12"\n'
DPKG_STATUS = """\
Package: busybox
Status: install ok installed
Priority: optional
Section: shells
Installed-Size: 800
Maintainer: Debian Install System Team <debian-boot@lists.debian.org>
Architecture: amd64
Source: busybox
Version: 1:1.35.0-4
Description: tiny utilities for small and embedded systems
"""


# The planted advisory of the tests' DB (CVE-2099-0001, source zlib) is fixed in 1:1.3.0-1.
VULNERABLE_ZLIB = "1:1.2.13.dfsg-1"


def zlib_status(version: str = VULNERABLE_ZLIB, arch: str = "amd64") -> str:
    """A dpkg status stanza for zlib1g (append it to DPKG_STATUS)."""
    return f"""
Package: zlib1g
Status: install ok installed
Priority: optional
Section: libs
Installed-Size: 160
Maintainer: Mark Brown <broonie@debian.org>
Architecture: {arch}
Source: zlib
Version: {version}
Description: compression library - runtime
"""


def write_debian_identity(ctx: Path) -> None:
    """os-release + a dpkg status, so that Trivy sees a Debian 12 image (COPY them in)."""
    (ctx / "os-release").write_text(OS_RELEASE)
    (ctx / "status").write_text(DPKG_STATUS)


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
    write_debian_identity(ctx)
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
