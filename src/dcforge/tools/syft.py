"""syft: an SPDX JSON SBOM for an OCI archive."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from dcforge.errors import ToolError
from dcforge.runner import Runner

_ENV = {"SYFT_CHECK_FOR_APP_UPDATE": "false"}


def version(runner: Runner) -> str:
    out = runner.run(["syft", "version", "-o", "json"], timeout=60, env=_ENV, mutates=False).stdout
    try:
        return str(json.loads(out)["version"])
    except (json.JSONDecodeError, KeyError):
        return out.strip()


def sbom(
    runner: Runner, tarball: Path, spdx: Path, cyclonedx: Path | None = None
) -> dict[str, Any]:
    """Write an SPDX JSON SBOM (and CycloneDX JSON) for an OCI archive; return the SPDX doc.

    syft exits 0 even when its catalogers fail, so an SBOM without packages is an error.
    """
    return _sbom(runner, f"oci-archive:{tarball}", spdx, cyclonedx, _ENV)


def sbom_remote(
    runner: Runner,
    reference: str,
    spdx: Path,
    cyclonedx: Path | None = None,
    *,
    plain_http: bool,
) -> dict[str, Any]:
    """The SBOM of an image in a registry, by digest."""
    env = {**_ENV, "SYFT_REGISTRY_INSECURE_USE_HTTP": "true" if plain_http else "false"}
    return _sbom(runner, f"registry:{reference}", spdx, cyclonedx, env)


def _sbom(
    runner: Runner, source: str, spdx: Path, cyclonedx: Path | None, env: dict[str, str]
) -> dict[str, Any]:
    argv: list[str | Path] = ["syft", "scan", "-q", source, "-o", f"spdx-json={spdx}"]
    if cyclonedx is not None:
        argv += ["-o", f"cyclonedx-json={cyclonedx}"]
    runner.run(argv, timeout=900, env=env)
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
