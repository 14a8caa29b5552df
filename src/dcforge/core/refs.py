"""Image references: the host of a reference, a reference pinned to a digest, digests."""

from __future__ import annotations

import re


def registry_host(reference: str) -> str:
    """The host (no port) of an image reference: ``[::1]:5000/x`` → ``::1``."""
    hostport = reference.split("/", 1)[0]
    if hostport.startswith("["):
        return hostport[1:].split("]", 1)[0]
    return hostport.rsplit(":", 1)[0] if hostport.count(":") == 1 else hostport


def at_digest(reference: str, digest: str) -> str:
    """``repo:tag`` (or ``repo@…``) + digest → ``repo@digest``: pull, build FROM or download
    exactly that content, never what a tag points at later."""
    name = reference.split("@", 1)[0]
    if ":" in name.rsplit("/", 1)[-1]:
        name = name[: name.rfind(":")]
    return f"{name}@{digest}"


DIGEST_RE = re.compile(r"^sha256:[0-9a-f]{64}$")
