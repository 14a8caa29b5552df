"""What a tool check remembers: a binary's version and sha256, tied to that very file
(device, inode, size, modification and change times). Any change to the file, or to what
is remembered, means asking the binary again — never taking a stale answer."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from dcforge.core.errors import ToolError
from dcforge.core.hashing import file_sha256
from dcforge.infra import toolchain
from dcforge.infra.runner import Runner

PINS = {"trivy": "0.76.0"}


def _binary(tmp_path: Path) -> tuple[Runner, Path]:
    binary = tmp_path / "bin/trivy"
    binary.parent.mkdir()
    binary.write_bytes(b"\x7fELF not really trivy")
    binary.chmod(0o755)
    return Runner(env={"PATH": str(binary.parent)}), binary


def _remember(seen: Path, binary: Path, version: str) -> None:
    stamp = toolchain._stamp(str(binary.resolve()))
    entry = {"stamp": stamp, "version": version}
    seen.write_text(json.dumps({str(binary.resolve()): entry}))


def test_a_remembered_binary_is_not_asked_again(tmp_path: Path) -> None:
    runner, binary = _binary(tmp_path)
    seen = tmp_path / "seen.json"
    _remember(seen, binary, "0.76.0")
    # The unit tests refuse to start processes: this passes only from what is remembered.
    tool = toolchain.check(runner, "trivy", PINS, seen=seen)
    # The sha256 is always the file's own, now: never a remembered one.
    assert (tool.version, tool.sha256) == ("0.76.0", file_sha256(binary))


def test_a_remembered_other_version_is_refused(tmp_path: Path) -> None:
    runner, binary = _binary(tmp_path)
    seen = tmp_path / "seen.json"
    _remember(seen, binary, "0.75.0")
    with pytest.raises(ToolError, match=r"version 0\.75\.0, but dcforge pins 0\.76\.0"):
        toolchain.check(runner, "trivy", PINS, seen=seen)


def test_any_change_to_the_file_forgets_it(tmp_path: Path) -> None:
    _, binary = _binary(tmp_path)
    seen = tmp_path / "seen.json"
    _remember(seen, binary, "0.76.0")
    path = str(binary.resolve())
    stamp = toolchain._stamp(path)
    assert toolchain._recall(seen, path, stamp) is not None
    # Same size, modification time put back: the change time still tells.
    before = binary.stat()
    binary.write_bytes(b"\x7fELF not really TRIVY")
    os.utime(binary, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert toolchain._stamp(path)[2:4] == stamp[2:4]
    assert toolchain._recall(seen, path, toolchain._stamp(path)) is None
    # Replaced by another file under the same name: another inode.
    (tmp_path / "other").write_bytes(binary.read_bytes())
    os.replace(tmp_path / "other", binary)
    assert toolchain._recall(seen, path, toolchain._stamp(path)) is None


def test_a_damaged_memory_is_no_memory(tmp_path: Path) -> None:
    _, binary = _binary(tmp_path)
    path = str(binary.resolve())
    seen = tmp_path / "seen.json"
    stamp = toolchain._stamp(path)
    damaged = [{path: "x"}, {path: {"v": 1}}, {path: {"stamp": stamp, "version": 7}}]
    for text in ("{not json", "[]", *map(json.dumps, damaged)):
        seen.write_text(text)
        assert toolchain._recall(seen, path, toolchain._stamp(path)) is None
