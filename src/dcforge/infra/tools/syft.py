"""syft: an SPDX JSON SBOM for an OCI archive."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from dcforge.core.errors import ToolError
from dcforge.infra.runner import Runner
from dcforge.infra.tools.registry import Registry

_ENV = {"SYFT_CHECK_FOR_APP_UPDATE": "false"}
# How dcforge runs syft (arguments, config, formats), in the SBOM cache's key: change it
# when _sbom changes what syft is asked for, and SBOMs made the old way are not reused.
RECIPE = "scan -q -c <empty> SOURCE -o spdx-json -o cyclonedx-json; v1"
# Packages of an OS package manager, as opposed to language packages: by purl type, or (when
# syft could not name the distro and so wrote no purl) by the package DB it read them from.
OS_PURL_TYPES = frozenset({"deb", "rpm", "apk", "alpm", "ebuild", "opkg"})
OS_SOURCE_INFO = re.compile(r"from (DPKG|RPM|APK|ALPM|portage|opkg) DB", re.I)
# syft reads .syft.yaml from the working directory and SYFT_* from the environment; either
# could exclude paths from the SBOM. Scans get an empty config; the gate refuses SYFT_*.
ALLOWED_ENV = frozenset(
    {"SYFT_CHECK_FOR_APP_UPDATE", "SYFT_REGISTRY_AUTH_USERNAME", "SYFT_REGISTRY_AUTH_PASSWORD"}
)


def sbom(
    runner: Runner, tarball: Path, spdx: Path, cyclonedx: Path | None = None
) -> dict[str, Any]:
    """Write an SPDX JSON SBOM (and CycloneDX JSON) for an OCI archive; return the SPDX doc.

    syft exits 0 even when its catalogers fail, so an SBOM without packages is an error.
    """
    return _sbom(runner, f"oci-archive:{tarball}", spdx, cyclonedx, _ENV)


def sbom_layout(
    runner: Runner, layout: Path, spdx: Path, cyclonedx: Path | None = None
) -> dict[str, Any]:
    """The SBOM of the one image an OCI layout directory names (a platform of an index)."""
    return _sbom(runner, f"oci-dir:{layout}", spdx, cyclonedx, _ENV)


def sbom_remote(
    registry: Registry, reference: str, spdx: Path, cyclonedx: Path | None = None
) -> dict[str, Any]:
    """The SBOM of an image in a registry, by digest."""
    plain = registry.plain(reference)
    env = {**_ENV, "SYFT_REGISTRY_INSECURE_USE_HTTP": "true" if plain else "false"}
    return _sbom(registry.runner, f"registry:{reference}", spdx, cyclonedx, env)


def _sbom(
    runner: Runner, source: str, spdx: Path, cyclonedx: Path | None, env: dict[str, str]
) -> dict[str, Any]:
    empty = spdx.with_name(spdx.name + ".syft-config.yaml")
    empty.write_text("# dcforge: syft runs with its defaults, nothing excluded\n")
    argv: list[str | Path] = ["syft", "scan", "-q", "-c", empty, source, "-o", f"spdx-json={spdx}"]
    if cyclonedx is not None:
        argv += ["-o", f"cyclonedx-json={cyclonedx}"]
    try:
        runner.run(argv, timeout=900, env=env)
    finally:
        empty.unlink(missing_ok=True)
    if runner.dry_run:
        return {}
    try:
        doc = json.loads(spdx.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ToolError(f"syft wrote no readable SBOM at {spdx} ({err})") from err
    if not isinstance(doc, dict) or not str(doc.get("spdxVersion", "")).startswith("SPDX-"):
        raise ToolError(f"{spdx} is not an SPDX JSON document")
    return doc


def package_names(doc: dict[str, Any]) -> list[str]:
    """Names of the software packages in an SPDX doc (not files, not the image itself)."""
    names = []
    for pkg in doc.get("packages") or []:
        if not isinstance(pkg, dict):
            continue
        purpose = pkg.get("primaryPackagePurpose", "")
        if purpose in ("CONTAINER", "OPERATING-SYSTEM"):
            continue
        names.append(str(pkg.get("name", "")))
    return names


def os_package_names(doc: dict[str, Any]) -> list[str]:
    """Names of the packages of an OS package manager (deb, rpm, apk, …) in the SPDX doc."""
    names = []
    for pkg in doc.get("packages") or []:
        refs = pkg.get("externalRefs") if isinstance(pkg, dict) else None
        purls = [
            str(r.get("referenceLocator", ""))
            for r in (refs if isinstance(refs, list) else [])
            if isinstance(r, dict) and r.get("referenceType") == "purl"
        ]
        source = str(pkg.get("sourceInfo", "")) if isinstance(pkg, dict) else ""
        if OS_SOURCE_INFO.search(source) or any(
            p.startswith("pkg:") and p[4:].split("/", 1)[0] in OS_PURL_TYPES for p in purls
        ):
            names.append(str(pkg.get("name", "")))
    return names
