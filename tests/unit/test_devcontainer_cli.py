"""The ``docker`` dcforge hands the Dev Containers CLI: the real one, minus the inline
build cache the CLI asks for (its records carry build times: no two builds would match)."""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path

import pytest

from dcforge.infra.runner import Runner
from dcforge.infra.tools import devcontainer_cli


def run_shim(shim: Path, argv: list[str], monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """What the shim would exec for ``argv`` (run in-process, its exec caught)."""
    calls: list[list[str]] = []
    monkeypatch.setattr(os, "execv", lambda path, args: calls.append([path, *args[1:]]))
    script = shim.parent / "docker_shim.py"
    monkeypatch.setattr(sys, "argv", [str(script), *argv])
    exec(compile(script.read_text(), str(script), "exec"), {"__name__": "__main__"})  # noqa: S102
    (call,) = calls
    return call


def test_the_shim_drops_only_the_inline_cache_build_arg(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    docker = bindir / "docker"
    docker.write_text("#!/bin/sh\n")
    docker.chmod(0o755)
    shim = devcontainer_cli.docker_shim(Runner(env={"PATH": str(bindir)}), tmp_path / "s h'im")
    assert shim.stat().st_mode & 0o111 and shim.read_text().startswith("#!/bin/sh\n")
    assert shlex.split(shim.read_text().splitlines()[1]) == [
        "exec", sys.executable, "-I", str(shim.parent / "docker_shim.py"), "$@",
    ]  # fmt: skip
    argv = ["buildx", "build", "--build-arg", "BUILDKIT_INLINE_CACHE=1", "--build-arg", "A=1",
            "--label", "BUILDKIT_INLINE_CACHE=1", "-f", "Dockerfile", "."]  # fmt: skip
    assert run_shim(shim, argv, monkeypatch) == [
        str(docker), "buildx", "build", "--build-arg", "A=1",
        "--label", "BUILDKIT_INLINE_CACHE=1", "-f", "Dockerfile", ".",
    ]  # fmt: skip
    assert run_shim(shim, ["version"], monkeypatch) == [str(docker), "version"]
