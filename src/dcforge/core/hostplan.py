"""What ``scripts/bootstrap`` does to a machine, decided from facts read off it (pure).

The bootstrap decides by capability, never by one distribution's paths: the distribution by
``ID``/``ID_LIKE`` (Debian and Ubuntu install, with each one's package names; anything else
gets one list of what to install), arm64 emulation by "an enabled binfmt_misc handler for
aarch64 ELF with the F flag, whatever its name and interpreter" (Debian's qemu-user-static
and docker/setup-qemu-action's tonistiigi/binfmt register different names and paths), an
engine and buildx that are there by being there (used as they are, never replaced). Under
GitHub Actions nothing is installed: the workflow's setup actions provide the tools, and a
missing one is named with the action that brings it.

:func:`plan` takes :class:`HostFacts` and returns a :class:`HostPlan`; reading the facts and
carrying the plan out are the bootstrap's (``python -m dcforge host-plan``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

# aarch64 ELF as binfmt_misc matches it: ELF magic, 64-bit, little-endian ... e_machine 0xb7.
# Debian's qemu-user-static and tonistiigi/binfmt register the same magic (and mask).
_ELF64_LE = "7f454c460201"
_AARCH64_MACHINE = "b700"  # e_machine at byte 18, little-endian
_MACHINE_AT = 36  # hex digits before e_machine

# Each tool the stack needs, and the package that brings it, per distribution family.
# Debian 12 takes the engine and the signing/registry tools from trixie at a low apt pin
# (bookworm has no buildx, no cosign, a docker.io of 20.10; ../shared/TOOLCHAIN.md): the
# suite comes from dcforge's pins (resources/toolchain.toml). Ubuntu takes everything it
# packages from its own archive (universe).
DEBIAN_PACKAGES: Mapping[str, str] = {
    "dockerd": "docker.io",
    "docker": "docker-cli",  # trixie splits the client out (docker.io only Recommends it)
    "buildx": "docker-buildx",
    "cosign": "cosign",
    "oras": "oras",
    "skopeo": "skopeo",
    "curl": "curl",
    "docker-registry": "docker-registry",
    "debootstrap": "debootstrap",
    "mmdebstrap": "mmdebstrap",
    "arch-test": "arch-test",  # mmdebstrap --arch=<foreign> stops without it
    "busybox": "busybox-static",
    "qemu": "qemu-user-static",
}
UBUNTU_PACKAGES: Mapping[str, str] = {
    **DEBIAN_PACKAGES,
    "docker": "docker.io",  # Ubuntu's docker.io ships the client
}
# Not in Ubuntu's archive (22.04, 24.04): the projects' release binaries, checked against
# dcforge's pinned sha256 (resources/toolchain.toml [upstream]); the workflow's actions on
# GitHub's runners.
UBUNTU_UNPACKAGED = ("cosign", "oras")

UPSTREAM: Mapping[str, str] = {
    "dockerd": "Docker Engine (https://docs.docker.com/engine/install/)",
    "docker": "the Docker CLI (https://docs.docker.com/engine/install/)",
    "buildx": "Docker Buildx (https://github.com/docker/buildx#installing)",
    "cosign": "cosign (https://docs.sigstore.dev/cosign/system_config/installation/)",
    "oras": "oras (https://oras.land/docs/installation)",
    "skopeo": "skopeo (https://github.com/containers/skopeo/blob/main/install.md)",
    "curl": "curl",
    "docker-registry": "the CNCF distribution registry ('docker-registry' or 'registry')",
    "debootstrap": "debootstrap",
    "mmdebstrap": "mmdebstrap",
    "arch-test": "arch-test (mmdebstrap's foreign-architecture check)",
    "busybox": "busybox-static (/bin/busybox)",
    "qemu": "qemu-user-static, or any binfmt_misc handler for aarch64 with the F flag",
}
# What brings each tool in a GitHub Actions workflow (nothing is installed there).
ACTIONS: Mapping[str, str] = {
    "docker": "the runner image (ubuntu-24.04 ships Docker)",
    "dockerd": "the runner image (ubuntu-24.04 ships Docker)",
    "buildx": "docker/setup-buildx-action",
    "cosign": "sigstore/cosign-installer",
    "oras": "oras-project/setup-oras",
    "qemu": "docker/setup-qemu-action",
}
MIN_NODE = 20
MIN_BUILDX = (0, 13)


@dataclass(frozen=True)
class HostFacts:
    """What the bootstrap read off the machine. ``tools`` maps a tool to its version, ""
    when it is there but said no version, absent when it is not there at all."""

    os_release: Mapping[str, str]
    machine: str
    root: bool
    github_actions: bool
    apt: bool
    binfmt: Mapping[str, str] = field(default_factory=dict)  # entry name → its text
    tools: Mapping[str, str] = field(default_factory=dict)
    engine_up: bool = False
    local_registry: bool = True


@dataclass(frozen=True)
class HostPlan:
    family: str  # "debian", "ubuntu" or "" (neither: nothing is installed)
    install: tuple[str, ...]  # packages from the distribution's own suites
    install_trixie: tuple[str, ...]  # Debian 12/13: the trixie pins, by exact version
    download: tuple[str, ...]  # tools from their projects' releases, by pinned sha256
    manual: tuple[str, ...]  # what the user must install, with where it comes from
    arm64: str  # native | ok | register | missing


def parse_os_release(text: str) -> dict[str, str]:
    """``/etc/os-release`` as a dict (shell-style quoting removed; comments skipped)."""
    out: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        out[key.strip()] = value
    return out


def bookworm(os_release: Mapping[str, str]) -> bool:
    """Debian 12 itself (its suites lack buildx, cosign, oras; dcforge takes them from trixie)."""
    return os_release.get("ID") == "debian" and os_release.get("VERSION_CODENAME") == "bookworm"


def takes_trixie_pins(os_release: Mapping[str, str]) -> bool:
    """Debian 12, and Debian 13, whose own versions the trixie pins are — also a Debian 12
    that calls itself 13 because an older dcforge took trixie's base-files along (its suites
    are still bookworm's: without the exact versions apt would pick bookworm's docker.io)."""
    return os_release.get("ID") == "debian" and os_release.get("VERSION_CODENAME") in (
        "bookworm",
        "trixie",
    )


def family(os_release: Mapping[str, str]) -> str:
    """``debian`` or ``ubuntu`` (by ID, then ID_LIKE: a derivative installs like its parent),
    else ""."""
    ids = [os_release.get("ID", "").lower(), *os_release.get("ID_LIKE", "").lower().split()]
    for candidate in ids:
        if candidate in ("ubuntu", "debian"):
            return candidate
    return ""


def parse_binfmt(text: str) -> dict[str, str]:
    """One ``/proc/sys/fs/binfmt_misc/<entry>``: ``enabled``, ``interpreter``, ``flags``,
    ``offset``, ``magic``, ``mask`` (the first line is the state)."""
    lines = text.splitlines()
    out = {"state": lines[0].strip() if lines else ""}
    for line in lines[1:]:
        key, _, value = line.partition(" ")
        out[key.rstrip(":")] = value.strip()
    return out


def arm64_handler(binfmt: Mapping[str, str]) -> str | None:
    """The name of an enabled handler that runs aarch64 ELF binaries inside containers (the
    F flag: the interpreter is opened at registration), whatever its name; else None."""
    for name, text in sorted(binfmt.items()):
        entry = parse_binfmt(text)
        magic = entry.get("magic", "").lower()
        if (
            entry["state"] == "enabled"
            and entry.get("offset", "0") == "0"
            and magic.startswith(_ELF64_LE)
            and magic[_MACHINE_AT : _MACHINE_AT + 4] == _AARCH64_MACHINE
            and "F" in entry.get("flags", "")
        ):
            return name
    return None


def _version(text: str) -> tuple[int, ...]:
    """The leading dotted number of a version string ("v20.19.2" → (20, 19, 2)); () if none."""
    found = re.search(r"\d+(?:\.\d+)*", text)
    return tuple(int(part) for part in found[0].split(".")) if found else ()


def buildx_version(output: str) -> str | None:
    """The version in ``docker buildx version``'s line, when it is Docker's buildx (podman's
    docker shim answers with buildah's version, which is no buildx at all)."""
    fields = output.split()
    if len(fields) >= 2 and fields[0].startswith("github.com/docker/buildx"):
        return fields[1]
    return None


def node_ok(tools: Mapping[str, str]) -> bool:
    """A Node.js the Dev Containers CLI runs on (else Node's own build is fetched for it)."""
    version = _version(tools.get("node", ""))
    return bool(version) and version[0] >= MIN_NODE


def needed(facts: HostFacts) -> list[str]:
    """The tools the stack needs that the machine lacks (or has too old); arm64 emulation is
    not among them (:func:`_wants_qemu`)."""
    tools = facts.tools
    want = ["docker", "buildx", "cosign", "oras", "skopeo", "curl"]
    if not facts.engine_up:
        want.insert(0, "dockerd")
    if facts.local_registry:
        want += ["docker-registry", "debootstrap", "mmdebstrap", "busybox"]
        if facts.machine != "aarch64":
            want.append("arch-test")
    missing = [tool for tool in want if tool not in tools]
    buildx = tools.get("buildx")
    if buildx is not None and buildx and _version(buildx)[:2] < MIN_BUILDX:
        missing.append("buildx")
    return missing


def _wants_qemu(facts: HostFacts) -> bool:
    """No arm64 emulation and nothing to register: qemu-user-static is installed where
    the bootstrap installs (only multi-platform builds need it, and build says so)."""
    emulated = facts.machine == "aarch64" or arm64_handler(facts.binfmt) is not None
    return not emulated and "qemu" not in facts.tools


def _arm64(facts: HostFacts, installing_qemu: bool) -> str:
    if facts.machine == "aarch64":
        return "native"
    if arm64_handler(facts.binfmt) is not None:
        return "ok"
    if "qemu" in facts.tools or installing_qemu:
        return "register" if facts.root and not facts.github_actions else "missing"
    return "missing"


def plan(facts: HostFacts, trixie: frozenset[str] = frozenset()) -> HostPlan:
    """What to install (and from where) and what the user must do; ``trixie`` names the
    Debian packages dcforge pins from trixie."""
    fam = family(facts.os_release)
    missing = needed(facts)
    # The pinned trixie packages go in by exact version on Debian 12 and 13; other
    # Debian-family systems take everything from their own suites.
    trixie = trixie if takes_trixie_pins(facts.os_release) else frozenset()
    if facts.github_actions or not (facts.root and facts.apt and fam):
        manual = tuple(_advice(tool, facts, trixie) for tool in missing)
        return HostPlan(fam, (), (), (), manual, _arm64(facts, False))
    names = DEBIAN_PACKAGES if fam == "debian" else UBUNTU_PACKAGES
    download = tuple(t for t in missing if fam == "ubuntu" and t in UBUNTU_UNPACKAGED)
    if _wants_qemu(facts):
        missing.append("qemu")
    packages = sorted({names[tool] for tool in missing if tool not in download})
    if "docker.io" in trixie and "docker.io" in packages:
        packages.append("iptables")  # docker.io's, from bookworm (not trixie's)
    from_trixie = tuple(p for p in packages if p in trixie)
    own = tuple(p for p in packages if p not in from_trixie)
    return HostPlan(fam, own, from_trixie, download, (), _arm64(facts, "qemu" in missing))


def _advice(tool: str, facts: HostFacts, trixie: frozenset[str]) -> str:
    if facts.github_actions and tool in ACTIONS:
        return f"{tool}: add {ACTIONS[tool]} to the workflow"
    fam = family(facts.os_release)
    if fam and tool in DEBIAN_PACKAGES and not (fam == "ubuntu" and tool in UBUNTU_UNPACKAGED):
        package = (DEBIAN_PACKAGES if fam == "debian" else UBUNTU_PACKAGES)[tool]
        if package in trixie:
            return f"{tool}: run scripts/bootstrap as root (it installs {package} from trixie)"
        return f"{tool}: apt-get install {package} (as root)"
    if fam == "ubuntu" and tool in UBUNTU_UNPACKAGED:
        return f"{tool}: run scripts/bootstrap as root (it installs {tool}'s pinned release)"
    return f"{tool}: install {UPSTREAM[tool]}"
