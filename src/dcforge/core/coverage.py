"""Scan coverage (pure): did the scanner see into the image? Trivy must have detected a
supported, maintained OS the vulnerability DB holds advisories for, and scanned as many OS
packages as the SBOM lists. Each problem is a pseudo-advisory, so only a waiver (with an
expiry) lifts it.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

# Coverage problems: pseudo-advisories, so that only a waiver (with an expiry) lifts one.
OS_UNDETECTED = "DCFORGE-OS-UNDETECTED"


OS_EOSL = "DCFORGE-OS-EOSL"


OS_UNSCANNED = "DCFORGE-OS-UNSCANNED"


PACKAGES_MISMATCH = "DCFORGE-PKG-MISMATCH"


NOTHING_SCANNED = "DCFORGE-NOTHING-SCANNED"


OS_NO_ADVISORIES = "DCFORGE-OS-NO-ADVISORIES"


COVERAGE_IDS = (
    OS_UNDETECTED,
    OS_EOSL,
    OS_UNSCANNED,
    OS_NO_ADVISORIES,
    PACKAGES_MISMATCH,
    NOTHING_SCANNED,
)


# Trivy and syft read the same package database (dpkg status, rpmdb, apk installed). They
# differ only at the edges: syft lists dpkg entries in states Trivy skips (config-files,
# half-installed) and the two merge duplicate entries differently. A DB hidden or removed
# from the scanner's view shows as a gap of tens of packages or all of them. So the counts
# must agree within max(MIN_SLACK, SLACK_FRACTION of the larger count).
PACKAGE_COUNT_MIN_SLACK = 2


PACKAGE_COUNT_SLACK_FRACTION = 0.02


@dataclass(frozen=True)
class Coverage:
    """What the scanner saw of one image, next to what the SBOM lists."""

    os_mode: str  # "required" (default) or "none" (declared in the permutation YAML)
    os: str  # "debian 12.5", or "" when Trivy detected none
    eosl: bool
    os_results: int  # Trivy results of class os-pkgs
    os_packages: int  # OS packages Trivy scanned
    lang_packages: int  # language packages Trivy scanned
    sbom_os_packages: int  # OS packages (deb/rpm/apk/…) in the syft SBOM
    unscanned: tuple[str, ...] = ()  # OS packages the SBOM lists and Trivy did not scan
    # The DB bucket Trivy looks this OS's advisories up in (``debian 12``), and whether the
    # DB holds one; None: not checked (no DB listing given)
    db_platform: str = ""
    db_has_platform: bool | None = None


# Trivy's OS family → the trivy-db buckets (lower-cased) its detector reads, by release:
# ``platformFormat`` in trivy-db's pkg/vulnsrc/<source> ("Oracle Linux %s", "amazon linux
# %s", "Photon OS %s", "CBL-Mariner %s", "SUSE Linux Enterprise %s", "openSUSE Leap %s", …);
# which part of the release each uses is the detector's (pkg/detector/ospkg/<family>):
# Debian, Alma, Rocky, Oracle, Fedora, Amazon the major; Alpine, Photon, Mariner, Azure
# Linux, SUSE major.minor; Ubuntu the whole release (or its ESM bucket); Red Hat one bucket
# for every release; rolling distributions their name alone.
_PLATFORM_FORMATS: dict[str, tuple[str, ...]] = {
    "debian": ("debian {major}",),
    "ubuntu": ("ubuntu {release}", "ubuntu {release}-esm"),
    "alpine": ("alpine {minor}",),
    "alma": ("alma {major}",),
    "rocky": ("rocky {major}",),
    "fedora": ("fedora {major}",),
    "oracle": ("oracle linux {major}",),
    "amazon": ("amazon linux {major}",),
    "redhat": ("red hat",),
    "centos": ("red hat",),
    "photon": ("photon os {minor}",),
    "cbl-mariner": ("cbl-mariner {minor}",),
    "azurelinux": ("azure linux {minor}",),
    "sles": ("suse linux enterprise {minor}",),
    "slem": ("suse linux enterprise micro {minor}",),
    "opensuse.leap": ("opensuse leap {minor}",),
    "opensuse-leap": ("opensuse leap {minor}",),
    "opensuse.tumbleweed": ("opensuse tumbleweed",),
    "wolfi": ("wolfi",),
    "chainguard": ("chainguard",),
    "echo": ("echo",),
    "minimos": ("minimos",),
}


def advisory_platforms(family: str, release: str) -> tuple[str, ...]:
    """The trivy-db buckets (lower-cased) that may hold advisories for ``family``
    ``release`` (see _PLATFORM_FORMATS); any other family by name + release or name +
    major. Debian testing reports ``forky/sid``, which has no bucket: nothing is matched
    against it."""
    fam = family.strip().lower()
    rel = release.strip().split(" ", 1)[0].lower()  # Amazon: "2 (Karoo)"
    parts = {"release": rel, "major": rel.split(".", 1)[0], "minor": ".".join(rel.split(".")[:2])}
    formats = _PLATFORM_FORMATS.get(fam, (f"{fam} {{release}}", f"{fam} {{major}}"))
    return tuple(dict.fromkeys(f.format(**parts) for f in formats))


def db_covers(platforms: Collection[str], family: str, release: str) -> tuple[str, bool]:
    """(the bucket looked for, whether ``platforms`` — the DB's top-level buckets — holds
    it); compared without case, as bucket names mix it (``Oracle Linux 9``)."""
    wanted = advisory_platforms(family, release)
    held = {p.lower() for p in platforms}
    found = next((w for w in wanted if w in held), "")
    return (found or wanted[0]), bool(found)


def _int_list_len(value: Any) -> int:
    return len(value) if isinstance(value, list) else 0


def read_coverage(
    report: Any,
    sbom_os_packages: int,
    os_mode: str,
    sbom_os_names: Collection[str] = (),
    db_platforms: Collection[str] | None = None,
) -> Coverage:
    """The coverage facts of a (parsable) Trivy report; malformed parts count as absent.

    With ``sbom_os_names`` the packages are compared by name, not only counted; with
    ``db_platforms`` (the DB's top-level buckets) the detected OS must have advisories.
    """
    meta = report.get("Metadata") if isinstance(report, Mapping) else None
    os_info = meta.get("OS") if isinstance(meta, Mapping) else None
    family = name = ""
    eosl = False
    if isinstance(os_info, Mapping):
        family = str(os_info.get("Family") or "")
        family = "" if family.lower() in ("none", "unknown") else family  # Trivy's "not found"
        name = str(os_info.get("Name") or "")
        eosl = os_info.get("EOSL") is True
    os_results = os_packages = lang_packages = 0
    scanned: set[str] = set()
    for result in report.get("Results") or []:
        if not isinstance(result, Mapping):
            continue
        if result.get("Class") == "os-pkgs":
            os_results += 1
            os_packages += _int_list_len(result.get("Packages"))
            scanned |= _package_names(result.get("Packages"))
        elif result.get("Class") == "lang-pkgs":
            lang_packages += _int_list_len(result.get("Packages"))
    platform, covered = "", None
    if family and db_platforms is not None:
        platform, covered = db_covers(db_platforms, family, name)
    return Coverage(
        os_mode=os_mode,
        os=f"{family} {name}".strip() if family else "",
        eosl=eosl,
        os_results=os_results,
        os_packages=os_packages,
        lang_packages=lang_packages,
        sbom_os_packages=sbom_os_packages,
        unscanned=tuple(sorted(set(sbom_os_names) - scanned)),
        db_platform=platform,
        db_has_platform=covered,
    )


def _package_names(packages: Any) -> set[str]:
    if not isinstance(packages, list):
        return set()
    return {str(p.get("Name")) for p in packages if isinstance(p, Mapping) and p.get("Name")}


def counts_agree(scanned: int, listed: int) -> bool:
    slack = max(PACKAGE_COUNT_MIN_SLACK, int(PACKAGE_COUNT_SLACK_FRACTION * max(scanned, listed)))
    return abs(scanned - listed) <= slack and (listed == 0 or scanned > 0)


def coverage_problems(cov: Coverage) -> list[tuple[str, str]]:
    """(id, reason) for each way the scan did not see the whole image."""
    out = os_problems(cov)
    if mismatch := _package_problem(cov):
        out.append((PACKAGES_MISMATCH, mismatch))
    return out


def os_problems(cov: Coverage) -> list[tuple[str, str]]:
    if cov.os_mode == "none" and not cov.os:
        if cov.lang_packages:
            return []
        why = (
            "declared 'os: none' but Trivy scanned no language packages either — nothing in "
            "this image was matched against advisories"
        )
        return [(NOTHING_SCANNED, why)]
    if not cov.os:
        why = (
            "Trivy detected no operating system (no os-release it knows): OS packages were "
            "not matched against any advisory — use a supported base, or declare 'os: none' "
            "in the permutation if the image truly has no OS"
        )
        return [(OS_UNDETECTED, why)]
    if cov.eosl:
        why = (
            f"{cov.os} is end-of-life (EOSL): its advisories are no longer maintained — move "
            "to a supported release"
        )
        return [(OS_EOSL, why)]
    return _advisory_problems(cov)


def _advisory_problems(cov: Coverage) -> list[tuple[str, str]]:
    """A detected, maintained OS: its release has advisories and its packages were scanned."""
    if cov.db_has_platform is False:
        why = (
            f"the vulnerability DB holds no advisories for {cov.os} (no '{cov.db_platform}' "
            "data): Trivy matched its packages against nothing — use a release the DB covers, "
            f"or waive {OS_NO_ADVISORIES} for this permutation with a reason and an expiry"
        )
        return [(OS_NO_ADVISORIES, why)]
    if cov.os_results == 0 or cov.os_packages == 0:
        why = (
            f"Trivy detected {cov.os} but scanned no OS packages (an OS version it does not "
            "support?) — use a supported base"
        )
        return [(OS_UNSCANNED, why)]
    return []


def _package_problem(cov: Coverage) -> str:
    """Empty when the OS packages Trivy scanned are the ones the SBOM lists."""
    slack = max(PACKAGE_COUNT_MIN_SLACK, int(PACKAGE_COUNT_SLACK_FRACTION * cov.sbom_os_packages))
    tail = " — the scanner did not see the whole package database"
    if len(cov.unscanned) > slack:
        shown = ", ".join(cov.unscanned[:8]) + (" …" if len(cov.unscanned) > 8 else "")
        return (
            f"the SBOM lists {len(cov.unscanned)} OS package(s) Trivy did not scan ({shown})" + tail
        )
    if not counts_agree(cov.os_packages, cov.sbom_os_packages):
        return (
            f"Trivy scanned {cov.os_packages} OS package(s), the SBOM lists "
            f"{cov.sbom_os_packages}" + tail
        )
    return ""
