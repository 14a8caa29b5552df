"""waivers.yaml: dated, scoped waivers, and the VEX status each one gives its findings."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from dcforge.core.errors import ConfigError
from dcforge.core.waivers import Waiver, load_waivers

TODAY = dt.date(2026, 11, 28)


def load(path: Path, text: str, max_days: int = 90) -> list[Waiver]:
    path.write_text(text)
    return load_waivers(path, max_days=max_days, today=TODAY)


W1 = "waivers:\n  - id: CVE-2099-0001\n    reason: accepted for now\n"


def test_load_waivers(tmp_path: Path) -> None:
    path = tmp_path / "waivers.yaml"
    assert load_waivers(path, max_days=90, today=TODAY) == []
    (w,) = load(path, W1 + "    created: 2026-11-02\n    expires: 2027-01-31\n    scope: all\n")
    assert (w.expires, w.created, w.scope_all, w.scope()) == (
        dt.date(2027, 1, 31),
        dt.date(2026, 11, 2),
        True,
        "all",
    )
    assert w.days_left(TODAY) == 64
    with pytest.raises(ConfigError, match="'reason' is a required property"):
        load(
            path,
            "waivers:\n  - id: CVE-2099-0001\n    created: 2026-11-01\n    expires: 2027-01-31\n",
        )
    with pytest.raises(ConfigError, match=r"waivers\.0\.expires"):
        load(path, W1 + "    created: 2026-11-01\n    expires: someday\n    scope: all\n")


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ("    expires: 2027-01-31\n    scope: all\n", "'created' is a required property"),
        ("    created: 2026-11-01\n    expires: 2027-01-31\n", "no scope"),
        (
            "    created: 2026-11-01\n    expires: 2027-01-31\n    scope: all\n"
            "    permutations: [x]\n",
            "contradicts",
        ),
        ("    created: 2026-11-01\n    expires: 2027-01-31\n    scope: some\n", "scope"),
        (
            "    created: 2026-11-01\n    expires: 2027-06-01\n    permutations: [x]\n",
            "lives 212 days .* more than max_waiver_days = 90",
        ),
        ("    created: 2026-12-01\n    expires: 2027-01-31\n    scope: all\n", "in the future"),
        ("    created: 2026-11-01\n    expires: 2026-10-01\n    scope: all\n", "before it was"),
    ],
)
def test_waivers_must_be_scoped_dated_and_short_lived(
    tmp_path: Path, extra: str, expected: str
) -> None:
    with pytest.raises(ConfigError, match=expected) as err:
        load(tmp_path / "waivers.yaml", W1 + extra)
    assert "waivers.yaml" in str(err.value)


def test_max_waiver_days_is_a_setting(tmp_path: Path) -> None:
    text = W1 + "    created: 2026-11-01\n    expires: 2027-06-01\n    packages: [zlib1g]\n"
    assert load(tmp_path / "w.yaml", text, max_days=365)[0].scope() == "packages: zlib1g"


def test_coverage_waivers_name_their_permutations(tmp_path: Path) -> None:
    text = (
        "waivers:\n  - id: DCFORGE-OS-UNDETECTED\n    reason: vendor image, scanned upstream\n"
        "    created: 2026-11-20\n    expires: 2026-12-20\n    scope: all\n"
    )
    with pytest.raises(ConfigError, match="must name its permutations"):
        load(tmp_path / "w.yaml", text)


DATED = "    created: 2026-11-02\n    expires: 2027-01-31\n    packages: [zlib1g]\n"


def test_old_waiver_files_still_load_as_affected(tmp_path: Path) -> None:
    """A waiver written before waivers had a VEX status means "affected, accepted for now"."""
    (w,) = load(tmp_path / "waivers.yaml", W1 + DATED)
    assert (w.status, w.justification) == ("affected", "")


def test_not_affected_with_its_justification(tmp_path: Path) -> None:
    text = W1 + DATED + "    status: not_affected\n    justification: vulnerable_code_not_present\n"
    (w,) = load(tmp_path / "waivers.yaml", text)
    assert (w.status, w.justification) == ("not_affected", "vulnerable_code_not_present")
    (w,) = load(tmp_path / "waivers.yaml", W1 + DATED + "    status: affected\n")
    assert w.status == "affected"


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (
            "    status: not_affected\n",
            r"waivers\.yaml: waivers\.0 \(CVE-2099-0001\): 'status: not_affected' needs a "
            r"'justification', one of component_not_present, vulnerable_code_not_present, ",
        ),
        (
            "    justification: vulnerable_code_not_present\n",
            r"waivers\.0 \(CVE-2099-0001\): a 'justification' is only for 'status: not_affected'",
        ),
        ("    status: fixed\n", r"field 'waivers\.0\.status': 'fixed' is not one of"),
        (
            "    status: not_affected\n    justification: trust me\n",
            r"field 'waivers\.0\.justification': 'trust me' is not one of",
        ),
    ],
)
def test_a_status_needs_what_openvex_needs(tmp_path: Path, extra: str, expected: str) -> None:
    with pytest.raises(ConfigError, match=expected) as err:
        load(tmp_path / "waivers.yaml", W1 + DATED + extra)
    assert "\n" not in str(err.value)


def test_a_coverage_waiver_is_never_not_affected(tmp_path: Path) -> None:
    text = (
        "waivers:\n  - id: DCFORGE-OS-UNDETECTED\n    reason: vendor image, scanned upstream\n"
        "    created: 2026-11-20\n    expires: 2026-12-20\n    permutations: [p]\n"
        "    status: not_affected\n    justification: component_not_present\n"
    )
    with pytest.raises(ConfigError, match="cannot be 'not_affected'"):
        load(tmp_path / "w.yaml", text)


def test_gate_json_lists_each_waiver_with_its_status(tmp_path: Path) -> None:
    text = W1 + DATED + "    status: not_affected\n    justification: component_not_present\n"
    (w,) = load(tmp_path / "waivers.yaml", text)
    assert w.to_json(TODAY) == {
        "id": "CVE-2099-0001",
        "scope": "packages: zlib1g",
        "created": "2026-11-02",
        "expires": "2027-01-31",
        "days_left": 64,
        "reason": "accepted for now",
        "status": "not_affected",
        "justification": "component_not_present",
    }
