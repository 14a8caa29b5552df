"""A per-registry lock so two publishes (or a publish and a rollback) on one machine never
interleave their tag moves. Across machines, CI's ``concurrency`` group does the same."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path

from dcforge.infra import log

_base = {"dir": Path(tempfile.gettempdir()) / "dcforge-locks"}


def directory_for(env: Mapping[str, str]) -> Path:
    """Where dcforge processes keep their locks: ``$XDG_RUNTIME_DIR`` (per user session) or
    the temp folder. Processes meet at one file when they share that setting — one user's
    sessions do; a cron job or sudo may not (CI serialises with its concurrency group)."""
    return Path(env.get("XDG_RUNTIME_DIR") or tempfile.gettempdir()) / "dcforge-locks"


def configure(directory: Path) -> None:
    _base["dir"] = directory


def _path(registry: str) -> Path:
    base = _base["dir"]
    base.mkdir(parents=True, exist_ok=True)
    return base / (hashlib.sha256(registry.encode()).hexdigest()[:16] + ".lock")


@contextlib.contextmanager
def _exclusive(key: str, waiting: str) -> Iterator[None]:
    """Hold the lock file of ``key``: one holder across processes and threads (each call
    opens the file anew, and flock locks belong to the open file)."""
    with _path(key).open("a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if waiting:
                log.info(waiting)
            fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def registry_lock(registry: str) -> contextlib.AbstractContextManager[None]:
    return _exclusive(registry, f"waiting for another publish/rollback on {registry} to finish")


def image_store_lock(engine: str) -> contextlib.AbstractContextManager[None]:
    """Loads into and removals from one engine's image store, one at a time: containerd
    unpacks a loaded image onto its base's snapshots, and removing another image that
    shares that base collects them mid-unpack ("parent snapshot ... does not exist")."""
    return _exclusive(f"engine-images {engine}", "")
