"""A per-registry lock so two publishes (or a publish and a rollback) on one machine never
interleave their tag moves. Across machines, CI's ``concurrency`` group does the same."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path

from dcforge import log

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
def registry_lock(registry: str) -> Iterator[None]:
    path = _path(registry)
    with path.open("a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.info(f"waiting for another publish/rollback on {registry} to finish")
            fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
