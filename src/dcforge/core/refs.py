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
# The distribution spec's repository path components and tags (lowercase names).
REPOSITORY_PATH = re.compile(
    r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*"
)
TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}")


def split_reference(reference: str) -> tuple[str, str, str]:
    """``registry/path[:tag][@sha256:…]`` → (repository, tag, digest); ValueError for
    anything that names no registry host and repository."""
    name, at, digest = reference.partition("@")
    repository, tag = name, ""
    if ":" in name.rsplit("/", 1)[-1]:
        repository, _, tag = name.rpartition(":")
    host, _, path = repository.partition("/")
    if (
        not REPOSITORY_PATH.fullmatch(path)
        or not re.fullmatch(
            r"[A-Za-z0-9][A-Za-z0-9.-]*(:[0-9]+)?|\[[0-9A-Fa-f:.]+\](:[0-9]+)?", host
        )
        or (at and not DIGEST_RE.fullmatch(digest))
        or (":" in name.rsplit("/", 1)[-1] and not TAG.fullmatch(tag))
    ):
        raise ValueError(
            f"{reference!r} is not an image reference (registry/repository[:tag][@sha256:…])"
        )
    return repository, tag, digest
