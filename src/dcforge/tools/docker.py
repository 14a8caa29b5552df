"""The Docker engine: load a tarball, run smoke commands, prune a runner."""

from __future__ import annotations

import re
from pathlib import Path

from dcforge import log
from dcforge.errors import BuildError, ToolError
from dcforge.runner import Runner


def load(runner: Runner, tarball: Path) -> str:
    """``docker load`` an image archive; returns the loaded image name."""
    out = runner.run(["docker", "load", "-i", tarball], timeout=900).stdout
    for line in out.splitlines():
        if line.startswith("Loaded image: "):
            return line.removeprefix("Loaded image: ").strip()
        if line.startswith("Loaded image ID: "):
            return line.removeprefix("Loaded image ID: ").strip()
    if runner.dry_run:
        return "dry-run"
    raise BuildError(f"docker load {tarball} named no image: {out.strip()[-200:]}")


def image_id(runner: Runner, image: str) -> str:
    return runner.run(
        ["docker", "image", "inspect", "--format", "{{.Id}}", image], timeout=60, mutates=False
    ).stdout.strip()


# What ``uname -m`` says inside a container of each platform (foreign ones under qemu).
MACHINES = {
    "linux/amd64": "x86_64",
    "linux/arm64": "aarch64",
    "linux/arm/v7": "armv7l",
    "linux/ppc64le": "ppc64le",
    "linux/s390x": "s390x",
    "linux/riscv64": "riscv64",
    "linux/386": "i686",
}


def _run_in(runner: Runner, image: str, platform: str, argv: list[str], timeout: float) -> str:
    where = ["--platform", platform] if platform else []
    return runner.run(
        ["docker", "run", "--rm", "--network", "none", *where, image, *argv], timeout=timeout
    ).stdout


def smoke(
    runner: Runner, image: str, command: str, *, platform: str = "", timeout: float = 600
) -> None:
    """Run one smoke command in ``image`` (no network); a non-zero exit is a BuildError."""
    try:
        _run_in(runner, image, platform, ["sh", "-c", command], timeout)
    except ToolError as err:
        on = f" ({platform})" if platform else ""
        raise BuildError(f"smoke command {command!r} failed in {image}{on}: {err}") from err


def check_architecture(runner: Runner, image: str, platform: str) -> None:
    """The container started for ``platform`` really runs that architecture (a wrong child
    in the index, or an engine silently running another platform, is a BuildError)."""
    want = MACHINES.get(platform)
    try:
        got = _run_in(runner, image, platform, ["uname", "-m"], 300).strip()
    except ToolError as err:
        raise BuildError(f"{image} does not start for {platform}: {err}") from err
    if runner.dry_run:
        return
    if got != want:
        raise BuildError(f"{image} for {platform} runs as {got!r}, expected {want!r}")


_RECLAIMED = re.compile(r"Total(?: reclaimed)? space:?\s*(\S+)", re.I)


def prune_runner(runner: Runner) -> list[str]:
    """``docker system prune -af --volumes`` + ``docker buildx prune -af``; returns space lines."""
    reports = []
    for argv in (
        ["docker", "system", "prune", "-af", "--volumes"],
        ["docker", "buildx", "prune", "-af"],
    ):
        out = runner.run(argv, timeout=900).stdout
        found = _RECLAIMED.findall(out)
        reports.append(f"{' '.join(argv[1:3])}: reclaimed {found[-1] if found else '0B'}")
    return reports


def runner_hygiene(runner: Runner) -> list[str]:
    """Prune Docker state before a build. Never touches the registry's data or any file."""
    with log.group("runner hygiene: docker system prune + buildx prune"):
        reports = prune_runner(runner)
        for line in reports:
            log.info(line)
    return reports
