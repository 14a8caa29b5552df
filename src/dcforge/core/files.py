"""Files: atomic writes (a reader sees the old file or the new one, never half of one),
and whether a path stays inside a folder."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tarfile
import tempfile
from pathlib import Path, PurePosixPath
from typing import Any

from dcforge.core.errors import DcforgeError


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except OSError as err:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise DcforgeError(f"could not write {path}: {err.strerror or err}") from err
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def atomic_write_json(path: Path, data: Any) -> None:
    atomic_write_bytes(path, (json.dumps(data, indent=2, sort_keys=False) + "\n").encode())


def append_line(path: str, text: str, what: str) -> None:
    """Append to a file the CI runner gave us (GITHUB_OUTPUT, GITHUB_STEP_SUMMARY)."""
    try:
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(text)
    except OSError as err:
        raise DcforgeError(f"{what}={path}: cannot append ({err.strerror})") from None


def inside(root: Path, candidate: Path) -> bool:
    """``candidate`` (links resolved) is ``root`` or below it."""
    try:
        candidate.resolve().relative_to(root.resolve())
    except ValueError:
        return False
    return True


def extract_plain(tar: tarfile.TarFile, directory: Path) -> None:
    """Unpack ``tar``'s directories and regular files into ``directory``; a link, a device,
    an absolute path or a ``..`` is refused (``tarfile.TarError``). What an OCI archive
    holds, unpacked the way tarfile's "data" filter would, on every Python 3.11 (the filter
    only came with 3.11.4; Debian 12's Python is 3.11.2)."""
    for member in tar:
        name = PurePosixPath(member.name)
        if name.is_absolute() or ".." in name.parts:
            raise tarfile.TarError(f"{member.name!r} would land outside the folder")
        target = directory.joinpath(*name.parts)
        if member.isdir():
            target.mkdir(parents=True, exist_ok=True)
            continue
        if not member.isfile():
            raise tarfile.TarError(f"{member.name!r} is not a regular file or a folder")
        source = tar.extractfile(member)
        if source is None:
            raise tarfile.TarError(f"{member.name!r} has no content")
        target.parent.mkdir(parents=True, exist_ok=True)
        with source, target.open("wb") as out:
            shutil.copyfileobj(source, out)
