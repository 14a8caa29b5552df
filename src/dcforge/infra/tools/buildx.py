"""docker buildx: bake definitions (:mod:`dcforge.core.bake`) in, OCI tarballs and digests
out."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dcforge.core.bake import bake_name
from dcforge.core.errors import BuildError
from dcforge.infra import log
from dcforge.infra.runner import Runner


@dataclass(frozen=True)
class Builder:
    """The buildx builder every build uses (the ``builder`` setting; empty: the current
    one). A docker context's own builder (another engine's docker driver) is reached with
    ``docker --context NAME buildx`` — buildx refuses ``--builder`` for it; any other
    builder (docker-container, remote BuildKit, kubernetes) with ``--builder NAME``."""

    name: str = ""
    is_context: bool = False

    @classmethod
    def resolve(cls, runner: Runner, name: str) -> Builder:
        if not name:
            return cls()
        found = runner.run(
            ["docker", "context", "inspect", name], timeout=30, mutates=False, check=False
        )
        return cls(name, found.returncode == 0)

    def argv(self) -> list[str | Path]:
        if not self.name:
            return ["docker", "buildx"]
        if self.is_context:
            return ["docker", "--context", self.name, "buildx"]
        return ["docker", "buildx", "--builder", self.name]


def builder_platforms(runner: Runner, builder: Builder | None = None) -> set[str]:
    """The platforms the builder can build (every node's, emulated or not)."""
    argv = [*(builder or Builder()).argv(), "inspect"]
    return parse_builder_platforms(runner.run(argv, timeout=60, mutates=False).stdout)


def build_oci(runner: Runner, context: Path, out: Path, builder: Builder | None = None) -> None:
    """One plain build of ``context`` into an OCI archive (the gate's canary)."""
    argv = [*(builder or Builder()).argv(), "build", "-q", "--provenance=false"]
    runner.run([*argv, "--output", f"type=oci,dest={out}", context], timeout=300)


def parse_builder_platforms(text: str) -> set[str]:
    found: set[str] = set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "Platforms":
            found |= {p.strip().rstrip("*") for p in value.split(",") if p.strip()}
    return found


# BuildKit's own deadline, hit on a loaded machine (a 33-target bake on 2 busy cores): the
# work done stays in its cache, so a second bake finishes what the first gave up on.
DEADLINE = "DeadlineExceeded: context deadline exceeded"
BAKE_ATTEMPTS = 2


def bake(
    runner: Runner,
    definition: dict[str, Any],
    workdir: Path,
    *,
    timeout: float,
    builder: Builder | None = None,
) -> tuple[dict[str, Any], str]:
    """Run bake on ``definition``; return (metadata per target, build log)."""
    workdir.mkdir(parents=True, exist_ok=True)
    bake_file = workdir / "docker-bake.json"
    metadata = workdir / "metadata.json"
    bake_file.write_text(json.dumps(definition, indent=2))
    argv: list[str | Path] = [*(builder or Builder()).argv(), "bake", "--progress=plain"]
    argv += ["--provenance=false", "-f", bake_file, "--metadata-file", metadata]
    for attempt in range(1, BAKE_ATTEMPTS + 1):
        metadata.unlink(missing_ok=True)
        result = runner.run(argv, timeout=timeout, check=False)
        log_text = result.stderr + result.stdout
        errors = [ln for ln in log_text.splitlines() if ln.startswith("ERROR")]
        gave_up = bool(errors) and DEADLINE in errors[-1]  # buildx's own last word, not RUN's
        if result.returncode == 0 or not gave_up or attempt == BAKE_ATTEMPTS:
            break
        log.warn(f"BuildKit gave up on a deadline of its own ({DEADLINE}): baking again")
    if result.returncode != 0:
        lines = [ln for ln in log_text.strip().splitlines() if ln.strip()]
        cause = next(
            (ln for ln in reversed(lines) if ln.startswith("ERROR")), lines[-1] if lines else ""
        )
        raise BuildError(
            f"docker buildx bake exited {result.returncode} building "
            f"{', '.join(definition['target'])}: {cause.strip()[:400]}",
            details="\n".join(lines[-30:]),
        )
    if runner.dry_run:
        return {}, log_text
    try:
        meta: dict[str, Any] = json.loads(metadata.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise BuildError(f"buildx wrote no readable metadata file ({err})") from err
    return meta, log_text


def target_metadata(metadata: dict[str, Any], name: str) -> dict[str, Any]:
    entry = metadata.get(bake_name(name), {})
    return entry if isinstance(entry, dict) else {}
