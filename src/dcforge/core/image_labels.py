"""The standard OCI labels and annotations every image carries (pure): where it comes from
(repository, commit), when (the commit's time, ``SOURCE_DATE_EPOCH``), what it is (title,
version, description, licenses) and what it is built on (the base as written, and the
digest the build used), as the OCI image spec's pre-defined annotation keys name them.

The same key/value pairs become the image config's labels and the annotations of its
manifest (and of the index of a multi-platform image): what registries show (GHCR links
a package to its repository by ``org.opencontainers.image.source``) and what Renovate or
Dependabot follow (``base.name`` + ``base.digest``). ``dev.dcforge.*`` labels stay for
what OCI has no key for (:mod:`dcforge.core.bake`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from dcforge.core import permfile, provenance

PREFIX = "org.opencontainers.image."
# Keys in the order they are written (labels and annotations alike).
KEYS = (
    "source",
    "revision",
    "created",
    "version",
    "title",
    "description",
    "licenses",
    "base.name",
    "base.digest",
)


@dataclass(frozen=True)
class Source:
    """What a build is built from: the commit (its SHA and committer time, which is the
    build's ``SOURCE_DATE_EPOCH``) and the repository's URL ('' when it has none a
    consumer could follow)."""

    revision: str
    epoch: int
    url: str = ""


def created(epoch: int) -> str:
    """``SOURCE_DATE_EPOCH`` as RFC 3339 in UTC, to the second, as BuildKit writes it."""
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def source_url(env: Mapping[str, str], remote_url: str) -> str:
    """The repository URL the ``source`` label names: the GitHub repository in Actions,
    else the ``origin`` remote without credentials (:func:`provenance.source_uri`); ''
    when there is none a consumer could follow."""
    url = provenance.source_uri(env, remote_url)
    return "" if url == provenance.LOCAL_SOURCE else url


def version(perm: permfile.Permutation) -> str:
    """The permutation's first floating tag (the version a consumer pulls it by, e.g.
    ``3.12-bookworm``), else its name: never the immutable tag, which ``revision`` says."""
    return perm.floating_tags[0] if perm.floating_tags else perm.name


def base_name(base_ref: str) -> str:
    """The base reference as written, without a digest (``repo:tag``, or ``repo``)."""
    return base_ref.split("@", 1)[0]


def oci_labels(perm: permfile.Permutation, base_digest: str, source: Source) -> dict[str, str]:
    """``org.opencontainers.image.*`` → value for ``perm`` built from ``source`` on the
    base ``base_digest``. An empty value (no description, no licenses, no repository URL)
    is left out rather than written empty."""
    values = {
        "source": source.url,
        "revision": source.revision,
        "created": created(source.epoch),
        "version": version(perm),
        "title": perm.name,
        "description": perm.description,
        "licenses": perm.licenses,
        "base.name": base_name(perm.base_ref),
        "base.digest": base_digest,
    }
    return {PREFIX + key: values[key] for key in KEYS if values[key]}
