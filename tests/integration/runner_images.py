"""A GitHub-hosted runner image, as a job's ``run:`` steps would see it, on this machine.

Each step runs in a mount namespace of its own (``unshare --mount``, nothing outside it
changes) in which this machine looks like the runner image: its os-release, its
binfmt_misc entries (none until docker/setup-qemu-action registers one, the way
tonistiigi/binfmt does), no trace of Debian's qemu-user-static, cosign and oras only where
their setup actions put them (on ``GITHUB_PATH``), and an ``apt-get`` that records every
call (a bootstrap under Actions must install nothing). The kernel's own binfmt handlers
still run the emulated builds: only what a job can *read* is the image's.

What stays this machine's: the Docker engine (the image has one running, docker-ce 28), the
local registry's, debootstrap's and busybox's files the rehearsal's local endpoints need
(the real workflow publishes to GHCR and pulls bases from Docker Hub, so they never need
them) and Python: actions/setup-python puts this machine's interpreter of the version it is
asked for on ``GITHUB_PATH`` (a plain one, the tests' virtualenv's base), so the jobs' own
``python -m venv`` + ``pip install --require-hashes -r requirements/nox.lock`` run as written.
"""

from __future__ import annotations

import os
import shlex
import shutil
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

AARCH64 = (
    "magic 7f454c460201010000000000000000000200b700\n"
    "mask ffffffffffffff00fffffffffffffffffeffffff\n"
)


@dataclass(frozen=True)
class RunnerImage:
    """One runner image: what its jobs read, each fact with where it comes from."""

    label: str
    os_release: str
    hidden: tuple[str, ...]  # this machine's paths the image does not have
    facts: tuple[tuple[str, str], ...]  # (what is mimicked, its source)

    def prepare(self, runner_dir: Path) -> None:
        """A fresh runner's files: its os-release, an empty binfmt_misc, the apt-get probe."""
        (runner_dir / "image").mkdir(parents=True)
        (runner_dir / "image/os-release").write_text(self.os_release)
        binfmt = runner_dir / "image/binfmt_misc"
        binfmt.mkdir()
        (binfmt / "status").write_text("enabled\n")
        (binfmt / "register").write_text("")
        (runner_dir / "image/empty").mkdir()
        bin_dir = runner_dir / "image/bin"
        bin_dir.mkdir()
        probe = bin_dir / "apt-get"
        probe.write_text(
            "#!/bin/sh\n"
            f'echo "apt-get $*" >> {shlex.quote(str(runner_dir / "image/apt-get.calls"))}\n'
            'echo "runner image: apt-get is not for the bootstrap under Actions" >&2\nexit 100\n'
        )
        probe.chmod(0o755)

    def apt_calls(self, runner_dir: Path) -> list[str]:
        calls = runner_dir / "image/apt-get.calls"
        return calls.read_text().splitlines() if calls.is_file() else []

    def wrap(self, argv: list[str], runner_dir: Path) -> list[str]:
        """``argv`` run inside the image's view of this machine."""
        image = runner_dir / "image"
        mounts = [
            f"mount --bind {q(image / 'os-release')} /usr/lib/os-release",
            f"[ -L /etc/os-release ] || mount --bind {q(image / 'os-release')} /etc/os-release",
            f"mount --bind {q(image / 'binfmt_misc')} /proc/sys/fs/binfmt_misc",
        ]
        for path in self.hidden:
            mounts.append(
                f"if [ -d {q(path)} ]; then mount --bind {q(image / 'empty')} {q(path)}; "
                f"elif [ -e {q(path)} ]; then mount --bind /dev/null {q(path)}; fi"
            )
        setup = " && ".join(
            ["set -e", *mounts, f'export PATH={q(image / "bin")}:"$PATH"', 'exec "$@"']
        )
        return ["unshare", "--mount", "--propagation", "private", "sh", "-c", setup, "sh", *argv]

    def setup_action(self, action: str, given: dict[str, str], runner_dir: Path) -> list[str]:
        """What a setup action leaves: the folders it adds to ``GITHUB_PATH``."""
        if action == "docker/setup-qemu-action":
            platforms = given.get("platforms", "all")
            if "arm64" in platforms or "all" in platforms:
                # tonistiigi/binfmt --install arm64 (cmd/binfmt/config.go, main.go).
                entry = "enabled\ninterpreter /usr/bin/qemu-aarch64\nflags: POCF\noffset 0\n"
                (runner_dir / "image/binfmt_misc/qemu-aarch64").write_text(entry + AARCH64)
            return []
        if action == "sigstore/cosign-installer":
            folder = _installed("cosign", runner_dir / "home/.cosign")
            _reports_release(Path(folder) / "cosign", given.get("cosign-release", ""))
            return [folder]
        if action == "oras-project/setup-oras":
            return [_installed("oras", runner_dir / "temp" / str(uuid.uuid4()))]
        if action == "actions/setup-python":
            return [_setup_python(str(given.get("python-version", "")), runner_dir)]
        return []


def _setup_python(version: str, runner_dir: Path) -> str:
    """actions/setup-python: a plain CPython of ``version`` (no packages of its own) first on
    GITHUB_PATH as ``python``, ``python3`` and ``pythonX.Y``, from the tool cache's layout.
    This machine's interpreter of that version stands in for the cached build: the one the
    tests run on (its base, not their virtualenv), else ``pythonX.Y`` on PATH."""
    wanted = ".".join(version.split(".")[:2])
    here = ".".join(map(str, sys.version_info[:2]))
    base = getattr(sys, "_base_executable", sys.executable)
    found = base if wanted == here else shutil.which(f"python{wanted}")
    if not wanted or found is None:
        raise FileNotFoundError(f"setup-python {version!r}: no Python {wanted} on this machine")
    folder = runner_dir / "hostedtoolcache/Python" / version / "x64/bin"
    folder.mkdir(parents=True)
    for name in ("python", "python3", f"python{wanted}"):
        (folder / name).symlink_to(os.path.realpath(found))
    return str(folder)


def q(path: object) -> str:
    return shlex.quote(str(path))


def _reports_release(binary: Path, release: str) -> None:
    """cosign-installer installs the upstream release, whose ``version --json`` names it;
    Debian's build of the same source says "devel" (no release ldflags). The binary stays
    Debian's; only its self-report is the release the action was asked for."""
    real = binary.with_name(f".{binary.name}-build")
    binary.rename(real)
    binary.write_text(
        "#!/bin/sh\n"
        'if [ "$1" = version ]; then\n'
        f'  {q(real)} "$@" | sed "s/\\"gitVersion\\": *\\"devel\\"/\\"gitVersion\\": \\"{release}\\"/"\n'
        "  exit 0\n"
        "fi\n"
        f'exec {q(real)} "$@"\n'
    )
    binary.chmod(0o755)


def _installed(tool: str, folder: Path) -> str:
    """The tool where its action puts it: a hard link of this machine's binary (the
    original path is hidden in the image; a link by another name still runs)."""
    found = shutil.which(tool)
    if found is None:
        raise FileNotFoundError(f"{tool} is not on this machine's PATH")
    folder.mkdir(parents=True, exist_ok=True)
    try:
        os.link(os.path.realpath(found), folder / tool)
    except OSError:  # another file system: a copy keeps its mode and still runs
        shutil.copy2(os.path.realpath(found), folder / tool)
    return str(folder)


UBUNTU_2404 = RunnerImage(
    label="ubuntu-24.04",
    os_release=(
        'PRETTY_NAME="Ubuntu 24.04.2 LTS"\nNAME="Ubuntu"\nVERSION_ID="24.04"\n'
        'VERSION="24.04.2 LTS (Noble Numbat)"\nVERSION_CODENAME=noble\nID=ubuntu\n'
        'ID_LIKE=debian\nHOME_URL="https://www.ubuntu.com/"\nUBUNTU_CODENAME=noble\n'
        "LOGO=ubuntu-logo\n"
    ),
    hidden=(
        "/usr/libexec/qemu-binfmt",
        "/usr/lib/binfmt.d",
        "/usr/bin/qemu-aarch64-static",
        "/usr/bin/cosign",
        "/usr/bin/oras",
    ),
    facts=(
        (
            "os-release: ID=ubuntu, ID_LIKE=debian, VERSION_ID=24.04, noble",
            "Ubuntu 24.04's /etc/os-release",
        ),
        (
            "no qemu-user-static, no binfmt handler until docker/setup-qemu-action",
            "actions/runner-images images/ubuntu/Ubuntu2404-Readme.md and scripts/build "
            "(no qemu or binfmt anywhere)",
        ),
        (
            "setup-qemu-action registers qemu-aarch64, interpreter /usr/bin/qemu-aarch64, "
            "flags POCF",
            "docker/setup-qemu-action src/main.ts; tonistiigi/binfmt "
            "cmd/binfmt/config.go (flags CF + P from QEMU_PRESERVE_ARGV0 in docker-bake.hcl)",
        ),
        (
            "no cosign; sigstore/cosign-installer puts the release it is asked for in "
            "$HOME/.cosign on GITHUB_PATH (its version --json names that release; Debian's "
            "build, which stands in for it, says devel)",
            "sigstore/cosign-installer action.yml (install-dir default)",
        ),
        (
            "no oras on 24.04; oras-project/setup-oras extracts it into $RUNNER_TEMP/<uuid> "
            "on GITHUB_PATH",
            "Ubuntu2404-Readme.md; oras-project/setup-oras (tc.extractTar, core.addPath)",
        ),
        (
            "Docker engine running, buildx, skopeo, curl, Node.js 20+, pipx",
            "Ubuntu2404-Readme.md (Docker 28.0.4, Docker-Buildx 0.20.1+, Skopeo 1.13.3)",
        ),
        (
            "actions/setup-python puts a plain CPython of the version asked for first on "
            "GITHUB_PATH (the tool cache's Python/<version>/x64/bin)",
            "actions/setup-python README (python-version; the tool cache added to PATH)",
        ),
        (
            "bootstrap installs nothing there: apt-get is recorded and refused",
            "issue 27: under GitHub Actions, install nothing the setup actions provide",
        ),
    ),
)
