"""The README's commands on a machine nobody set up: a stock Debian 12 (debootstrap minbase
plus python3, git and ca-certificates, as a cloud image a user cloned into would have),
started as a privileged container with Docker state of its own, this checkout committed
into it as a fresh clone, and the README's quick start run verbatim, read from README.md.
The main job must build, gate, publish and verify every shipped permutation there on the
distribution's own Python (3.11.2: older than any this project's machines run), then the
set-up half of the README's test command (``nox -s tests`` up to its test runs).

Nothing of this machine's installs goes in but the network's CA certificates
(/usr/local/share/ca-certificates, ../shared/TOOLCHAIN.md): whatever the commands need and
do not install themselves fails here. binfmt_misc is the kernel's, so arm64 emulation
registered on this host is visible inside (as on any machine whose kernel has it)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tarfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import pytest

from tests.integration.conftest import ROOT, base_env
from tests.readme import commands

pytestmark = [pytest.mark.integration, pytest.mark.slow]

MIRROR = os.environ.get("DCFORGE_DEBIAN_MIRROR", "http://deb.debian.org/debian")
SECURITY = MIRROR.rsplit("/", 1)[0] + "/debian-security"
CA_DIR = Path("/usr/local/share/ca-certificates")
# What a Debian 12 cloud image a user cloned into has: python3, git, CA certificates.
INCLUDE = "python3,git,ca-certificates"
SOURCES = (
    f"deb {MIRROR} bookworm main\n"
    f"deb {MIRROR} bookworm-updates main\n"
    f"deb {SECURITY} bookworm-security main\n"
)
CHECKOUT = "/root/dcforge"
LOG_TAIL = 6000


def _docker(
    *args: str, timeout: float = 600, stdin: IO[bytes] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["docker", *args], stdin=stdin, capture_output=True, text=True, timeout=timeout,
        check=False,
    )  # fmt: skip


def _recipe() -> str:
    """What the stock image is made of (its tag): a change makes a new one."""
    certs = b"".join(p.read_bytes() for p in sorted(CA_DIR.glob("*.crt")))
    text = f"{MIRROR}|{INCLUDE}|{SOURCES}".encode() + certs
    return hashlib.sha256(text).hexdigest()[:16]


@pytest.fixture(scope="session")
def stock_debian(stack: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The stock Debian 12 image (debootstrap minbase + python3, git, CA certificates and
    this network's CA certificates); made once per recipe and kept in the engine."""
    name = f"dcforge-clean-room/debian:12-{_recipe()}"
    if _docker("image", "inspect", name).returncode == 0:
        return name
    rootfs = tmp_path_factory.mktemp("stock") / "rootfs"
    made = subprocess.run(
        ["debootstrap", "--variant=minbase", f"--include={INCLUDE}", "bookworm", str(rootfs), MIRROR],
        capture_output=True, text=True, timeout=900, check=False,
    )  # fmt: skip
    assert made.returncode == 0, made.stdout[-LOG_TAIL:] + made.stderr[-LOG_TAIL:]
    (rootfs / "etc/apt/sources.list").write_text(SOURCES)
    for cert in CA_DIR.glob("*.crt"):
        shutil.copy2(cert, rootfs / "usr/local/share/ca-certificates" / cert.name)
    updated = subprocess.run(
        ["chroot", str(rootfs), "update-ca-certificates"], capture_output=True, text=True,
        timeout=120, check=False,
    )  # fmt: skip
    assert updated.returncode == 0, updated.stderr
    for cache in ("var/cache/apt/archives", "var/lib/apt/lists"):
        for item in (rootfs / cache).glob("*"):
            if item.is_file():
                item.unlink()
    with subprocess.Popen(
        ["tar", "--numeric-owner", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE
    ) as tar:
        imported = subprocess.run(
            ["docker", "import", "-", name], stdin=tar.stdout, capture_output=True, text=True,
            timeout=600, check=False,
        )  # fmt: skip
    assert imported.returncode == 0, imported.stderr
    shutil.rmtree(rootfs)
    return name


def _clone_tar(dest: Path) -> Path:
    """This checkout as a user's fresh clone: every tracked (and new, unignored) file, one
    commit, nothing ignored (no .dcforge/, .nox/, .venv/, dist/)."""
    files = subprocess.run(
        ["git", "-C", str(ROOT), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        capture_output=True, check=True,
    ).stdout.decode().split("\0")  # fmt: skip
    repo = dest / "dcforge"
    for name in filter(None, files):
        src = ROOT / name
        if src.is_file():
            (repo / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, repo / name)
    for args in (
        ["init", "-q", "-b", "main"],
        ["add", "-A"],
        ["-c", "user.name=u", "-c", "user.email=u@example.invalid", "commit", "-qm", "clone"],
    ):
        subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True)
    out = dest / "dcforge.tar"
    with tarfile.open(out, "w") as tar:
        tar.add(repo, arcname="dcforge")
    return out


@pytest.fixture
def clean_room(stock_debian: str, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A privileged container of the stock image with its own Docker and containerd state
    (host folders: an overlay cannot sit on the container's own overlay) and the clone."""
    state = tmp_path / "state"
    (state / "docker").mkdir(parents=True)
    (state / "containerd").mkdir()
    name = f"dcforge-clean-room-{uuid.uuid4().hex[:8]}"
    started = _docker(
        "run", "-d", "--privileged", "--name", name,
        "-v", f"{state / 'docker'}:/var/lib/docker", "-v", f"{state / 'containerd'}:/var/lib/containerd",
        "--entrypoint", "/bin/sleep", stock_debian, "infinity",
    )  # fmt: skip
    assert started.returncode == 0, started.stderr
    try:
        clone = _clone_tar(tmp_path)
        with clone.open("rb") as fh:
            copied = _docker("cp", "-", f"{name}:/root/", stdin=fh)
        assert copied.returncode == 0, copied.stderr
        yield name, tmp_path
    finally:
        _docker("rm", "-f", name, timeout=300)
        # What the inner engine left (root-owned layers) goes with the test's folder.
        subprocess.run(["rm", "-rf", str(state)], check=False, timeout=600)


def _run_in(container: str, lines: list[str], log: Path, timeout: float) -> int:
    """``lines`` as one bash script in the clone, as root, with the stock environment; the
    output goes to ``log``."""
    script = "set -euo pipefail\n" + "\n".join(lines) + "\n"
    with log.open("w") as out:
        done = subprocess.run(
            ["docker", "exec", "-w", f"{CHECKOUT}", "-e", "HOME=/root", container,
             "bash", "-c", script],
            stdout=out, stderr=subprocess.STDOUT, timeout=timeout, check=False,
        )  # fmt: skip
    return done.returncode


def _core_packages(container: str) -> str:
    found = _docker(
        "exec", container, "dpkg-query", "-W", "-f", "${Package} ${Version}\n",
        "base-files", "libc6", "dpkg",
    )  # fmt: skip
    assert found.returncode == 0, found.stderr
    return found.stdout


def _tail(log: Path) -> str:
    return log.read_text(errors="replace")[-LOG_TAIL:]


def _shipped() -> set[str]:
    plan = subprocess.run(
        ["python", "-m", "dcforge", "plan", "--json"], cwd=ROOT, capture_output=True, text=True,
        env=base_env(), timeout=120, check=True,
    )  # fmt: skip
    return {row["permutation"] for row in json.loads(plan.stdout)["include"]}


@pytest.mark.timeout(3000)
def test_the_readme_runs_on_a_stock_debian_12(clean_room: tuple[str, Path]) -> None:
    container, work = clean_room
    core = _core_packages(container)
    quick_start = commands("Quick start")
    log = work / "main-job.log"
    code = _run_in(container, quick_start, log, timeout=2400)
    assert code == 0, f"the README's quick start failed ({code}):\n{_tail(log)}"
    found = _docker("exec", container, "cat", f"{CHECKOUT}/dist/manifest.json")
    assert found.returncode == 0, found.stderr
    built = {p["name"] for p in json.loads(found.stdout)["permutations"]}
    assert built == _shipped(), built
    text = log.read_text(errors="replace")
    assert "Session main was successful" in text, _tail(log)
    python = _docker("exec", container, "python3", "--version").stdout.split()[-1]
    assert python.startswith("3.11."), python  # Debian 12's own, not a newer one
    # Packages from trixie came without trixie's core: still Debian 12 (a libc6 and
    # base-files from trixie would make the machine call itself Debian 13).
    assert _core_packages(container) == core

    # The set-up half of the test command: its installs, bootstrap and base images, then
    # collection of every test (nothing run: the suite runs on this machine's CI).
    tests = commands("Tests")
    assert tests[-1] == "nox -s tests", tests
    log = work / "tests-setup.log"
    code = _run_in(container, [*tests[:-1], "nox -s tests -- --collect-only -q"], log, 1800)
    assert code == 0, f"the README's test command's set-up failed ({code}):\n{_tail(log)}"
    assert "Session tests was successful" in log.read_text(errors="replace"), _tail(log)
