"""A per-registry lock so two publishes (or a publish and a rollback) on one machine never
interleave their tag moves. Across machines, CI's ``concurrency`` group does the same."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from dcforge import log


def _path(registry: str) -> Path:
    base = Path(os.environ.get("XDG_RUNTIME_DIR") or tempfile.gettempdir()) / "dcforge-locks"
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
