"""Runner hygiene: clear Docker's images, containers, volumes and build cache."""

from __future__ import annotations

from dcforge.infra.tools import docker


def runner_hygiene(engine: docker.Engine) -> list[str]:
    """Prune Docker state before a build. Never touches the registry's data or any file."""
    return docker.runner_hygiene(engine)
