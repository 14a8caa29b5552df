"""Bake targets (pure): a planned permutation → what buildx (or, for a devcontainer.json,
the Dev Containers CLI) is asked to build, the bake file they make, and how they split
over bake sessions. :mod:`dcforge.infra.tools.buildx` runs the bake."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dcforge.core import cache, image_labels, staging
from dcforge.core.build_plan import PlannedPermutation
from dcforge.core.errors import BuildError
from dcforge.core.hashing import file_sha256
from dcforge.core.refs import at_digest
from dcforge.core.settings import Settings

# BuildKit loses track of a bake's jobs with hundreds of targets in one invocation ("failed
# to receive status: … no such job", seen here at 256): a session bakes at most this many
# at a time.
BAKE_MAX_TARGETS = 32


@dataclass(frozen=True)
class Target:
    """One bake target: everything buildx needs to build one permutation."""

    name: str
    context: Path
    dockerfile: Path
    args: Mapping[str, str]
    platforms: Sequence[str]
    tags: Sequence[str]
    labels: Mapping[str, str]
    output_tar: Path
    cache_from: Sequence[str] = ()
    cache_to: Sequence[str] = ()
    no_cache: bool = False  # every step rebuilt (a refresh: the fix is in the package mirror)
    devcontainer: Path | None = None  # a devcontainer.json: the Dev Containers CLI builds it
    # The OCI annotations of every image manifest (and of the index, when there is one).
    annotations: Mapping[str, str] = field(default_factory=dict)
    # SOURCE_DATE_EPOCH (the commit's time): the build arg BuildKit dates the image by, and
    # the time every file in the exported layers is rewritten to (rewrite-timestamp).
    epoch: int | None = None

    def annotation_levels(self) -> tuple[str, ...]:
        """Where the annotations go: every image manifest, and the index of a multi-platform
        image. A single-platform build exports no index, and BuildKit 0.13 refuses index
        annotations there ("index annotations not supported for single platform export")."""
        return ("manifest", "index") if len(self.platforms) > 1 else ("manifest",)

    def build_args(self) -> dict[str, str]:
        """The build args, with SOURCE_DATE_EPOCH (BuildKit reads it as a build arg: the
        config's and history's ``created``, and the epoch of ``rewrite-timestamp``)."""
        epoch = {} if self.epoch is None else {"SOURCE_DATE_EPOCH": str(self.epoch)}
        return {**dict(self.args), **epoch}

    def oci_output(self, *, with_annotations: bool = False) -> str:
        """The OCI exporter's ``--output`` value: the archive, every layer's file times
        rewritten to SOURCE_DATE_EPOCH, and (``with_annotations``: for a build that has no
        other way to say them, the Dev Containers CLI's) the annotations as exporter
        attributes. CSV, as buildx reads it: a value with a comma or quote is quoted."""
        fields = ["type=oci", f"dest={self.output_tar}"]
        if self.epoch is not None:
            fields.append("rewrite-timestamp=true")
        if with_annotations:
            fields += [
                f"annotation-{level}.{key}={value}"
                for level in self.annotation_levels()
                for key, value in self.annotations.items()
            ]
        out = io.StringIO()
        csv.writer(out, lineterminator="").writerow(fields)
        return out.getvalue()


def bake_name(name: str) -> str:
    """Bake target names allow only ``[a-zA-Z0-9_-]``; permutation names may hold dots."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", name)


def bake_definition(targets: Sequence[Target]) -> dict[str, Any]:
    """A docker-bake.json document building ``targets`` as one group."""
    if any(t.devcontainer for t in targets):
        raise BuildError("a devcontainer.json permutation is built by the Dev Containers CLI")
    return {
        "group": {"default": {"targets": [bake_name(t.name) for t in targets]}},
        "target": {
            bake_name(t.name): {
                "context": str(t.context),
                "dockerfile": str(t.dockerfile),
                "args": t.build_args(),
                "platforms": list(t.platforms),
                "tags": list(t.tags),
                "labels": dict(t.labels),
                # buildx >= 0.12: "<level>:<key>=<value>", one level per entry (0.13 reads
                # no comma list of levels).
                "annotations": [
                    f"{level}:{key}={value}"
                    for level in t.annotation_levels()
                    for key, value in t.annotations.items()
                ],
                "output": [t.oci_output()],
                "cache-from": [] if t.no_cache else list(t.cache_from),
                "cache-to": list(t.cache_to),
                **({"no-cache": True, "pull": True} if t.no_cache else {}),
                # Provenance/SBOM are attested by dcforge at publish time, by digest.
                "attest": [],
            }
            for t in targets
        },
    }


def targets(
    settings: Settings,
    env: Mapping[str, str],
    planned: Sequence[PlannedPermutation],
    incoming: Path,
    source: image_labels.Source,
) -> list[Target]:
    """One target per planned permutation: FROM its base by digest, tagged with its
    immutable tag, labelled and annotated (:func:`labels`), dated by the commit's time, its
    archive in ``incoming``, and the build cache of this run's scope (a local cache not
    written yet is not read)."""
    ci = staging.ci_context(settings, env)
    local_dir = settings.state_root / "cache"
    out = []
    for item in planned:
        p = item.perm
        args = cache.cache_args(
            ci,
            settings.cache_backend,
            p.name,
            file_sha256(p.dockerfile),
            local_dir=local_dir,
            cache_registry=settings.cache_registry,
        )
        cache_from = [
            c
            for c in args.cache_from
            if not c.startswith("type=local,") or Path(c.split("src=", 1)[1]).is_dir()
        ]
        oci = image_labels.oci_labels(p, item.base_digest, source)
        out.append(
            Target(
                name=p.name,
                context=p.context,
                dockerfile=p.dockerfile,
                args={**dict(p.build_args), "BASE_IMAGE": at_digest(p.base_ref, item.base_digest)},
                platforms=p.platforms,
                tags=[f"{p.repository}:{p.immutable_tag(source.revision)}"],
                labels={**oci, **labels(item)},
                devcontainer=p.devcontainer,
                output_tar=incoming / f"{p.name}.tar",
                cache_from=cache_from,
                cache_to=args.cache_to,
                annotations=oci,
                epoch=source.epoch,
            )
        )
    return out


def labels(item: PlannedPermutation) -> dict[str, str]:
    """dcforge's own labels, for what OCI has no key for: the permutation, its input hash
    (and the base digest, which ``org.opencontainers.image.base.digest`` now says too: kept
    for whoever reads it by this name), and the devcontainer.metadata label."""
    p = item.perm
    return {
        "dev.dcforge.permutation": p.name,
        "dev.dcforge.input-hash": item.input_hash,
        "dev.dcforge.base.digest": item.base_digest,
        **({"devcontainer.metadata": p.metadata} if p.metadata else {}),
    }


def groups(targets: Sequence[Target], sessions: int) -> list[list[Target]]:
    """``targets`` dealt round-robin over at most ``sessions`` bake sessions (at least one)."""
    n = max(1, min(sessions, len(targets)))
    return [list(targets[i::n]) for i in range(n)]
