"""Runner hygiene: clear Docker's images, containers, volumes and build cache."""

from __future__ import annotations

from dcforge import log
from dcforge.runner import Runner
from dcforge.tools import docker


def runner_hygiene(runner: Runner) -> list[str]:
    """Prune Docker state before a build. Never touches the registry's data or any file."""
    with log.group("runner hygiene: docker system prune + buildx prune"):
        reports = docker.prune_runner(runner)
        for line in reports:
            log.info(line)
    return reports
