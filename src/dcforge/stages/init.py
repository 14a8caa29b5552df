"""``dcforge init``: write the scaffold :mod:`dcforge.core.scaffold` plans into a folder.

Nothing is overwritten unless asked: when any file of the scaffold is already there, init
names them and writes nothing; with ``force`` it names them, then replaces them. Each file
is written atomically (a link in its place is replaced, never written through).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from dcforge.core import scaffold
from dcforge.core.errors import ConfigError, DcforgeError
from dcforge.core.files import atomic_write_bytes
from dcforge.infra import log


@dataclass(frozen=True)
class InitOptions:
    directory: Path
    force: bool = False
    version: str = "unknown"  # dcforge's, pinned in the scaffold's requirements.txt


def run(options: InitOptions) -> list[str]:
    """Write the scaffold into ``options.directory`` (made if missing); the paths written."""
    root = options.directory
    if os.path.lexists(root) and not root.is_dir():
        raise ConfigError(f"init: {root} is not a folder")
    files = scaffold.plan(options.version)
    _check(root, files, options.force)
    for f in files:
        target = root / f.path
        atomic_write_bytes(target, f.content)
        _chmod(target, f.mode)
    log.info(f"init: wrote {len(files)} files into {root}")
    if not _in_git_repository(root):
        log.warn(f"init: {root} is not in a git repository: run `git init` there")
    return [f.path for f in files]


def _check(root: Path, files: list[scaffold.ScaffoldFile], force: bool) -> None:
    """Refuse (one line naming them) when a planned path is taken; with ``force``, say
    what will be replaced."""
    stuck = scaffold.blocked(root, files)
    if stuck:
        raise ConfigError(f"init: cannot write over {', '.join(stuck)} in {root}")
    taken = scaffold.existing(root, files)
    if taken and not force:
        raise ConfigError(
            f"init: {root} already has {', '.join(taken)} — nothing written; --force replaces them"
        )
    if taken:
        log.info(f"init: replacing {len(taken)} file(s): {', '.join(taken)}")


def _chmod(path: Path, mode: int) -> None:
    try:
        os.chmod(path, mode)
    except OSError as err:
        raise DcforgeError(f"could not set the mode of {path}: {err.strerror}") from err


def _in_git_repository(root: Path) -> bool:
    return any((folder / ".git").exists() for folder in (root.resolve(), *root.resolve().parents))
