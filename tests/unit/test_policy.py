from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dcforge import policy
from dcforge.errors import ConfigError

TODAY = dt.date(2026, 11, 28)
POLICY = policy.Policy()


def report(*vulns: tuple[str, str, str, str, str]) -> dict[str, Any]:
    return {
        "SchemaVersion": 2,
        "Results": [
            {
                "Target": "img",
                "Vulnerabilities": [
                    {
                        "VulnerabilityID": i,
                        "PkgName": p,
                        "InstalledVersion": v,
                        "FixedVersion": f,
                        "Severity": s,
                    }
                    for i, p, v, f, s in vulns
                ],
            }
        ],
    }


CRIT = ("CVE-2099-0001", "zlib1g", "1:1.2.13", "1:1.3.0-1", "CRITICAL")
LOW = ("CVE-2099-0002", "curl", "7.88", "", "LOW")


def decide(
    rep: Any,
    sbom: int | None = 10,
    waivers: list[policy.Waiver] | None = None,
    problems: tuple[str, ...] = (),
) -> policy.Verdict:
    return policy.decide(
        "perm",
        report=rep,
        sbom_packages=sbom,
        policy=POLICY,
        waivers=waivers or [],
        today=TODAY,
        problems=problems,
    )


def test_clean_report_with_sbom_passes() -> None:
    v = decide(report(LOW))
    assert v.passed
    assert v.counts == {"LOW": 1}


def test_blocking_finding_names_cve_package_versions() -> None:
    v = decide(report(CRIT, LOW))
    assert not v.passed
    assert v.reasons == ["CVE-2099-0001 CRITICAL in zlib1g 1:1.2.13 (fixed: 1:1.3.0-1)"]


def test_waiver_passes_and_is_listed_expired_waiver_blocks() -> None:
    w = policy.Waiver("CVE-2099-0001", "not reachable here", dt.date(2026, 12, 31))
    v = decide(report(CRIT), waivers=[w])
    assert v.passed
    assert [f.id for f, _ in v.waived] == ["CVE-2099-0001"]
    old = policy.Waiver("CVE-2099-0001", "not reachable here", dt.date(2026, 11, 27))
    v = decide(report(CRIT), waivers=[old])
    assert not v.passed
    assert "waiver expired on 2026-11-27" in v.reasons[0]


def test_waiver_scoped_to_other_permutation_or_package_does_not_apply() -> None:
    other = policy.Waiver(
        "CVE-2099-0001", "elsewhere only", dt.date(2027, 1, 1), permutations=("x",)
    )
    pkg = policy.Waiver("CVE-2099-0001", "other package", dt.date(2027, 1, 1), packages=("libz",))
    assert not decide(report(CRIT), waivers=[other, pkg]).passed


@pytest.mark.parametrize(
    ("rep", "sbom", "expected"),
    [
        (None, 10, "no vulnerability report"),
        ({"Results": []}, 10, "unusable vulnerability report"),
        ({"SchemaVersion": 2, "Results": [{"Vulnerabilities": [{"x": 1}]}]}, 10, "unusable"),
        (report(), None, "no SBOM"),
        (report(), 0, "SBOM lists no packages"),
    ],
)
def test_failures_block_never_pass(rep: Any, sbom: int | None, expected: str) -> None:
    v = decide(rep, sbom)
    assert not v.passed
    assert any(expected in r for r in v.reasons)


def test_upstream_problems_block() -> None:
    assert not decide(report(), problems=("tarball checksum mismatch",)).passed


def test_db_age() -> None:
    now = dt.datetime(2026, 11, 28, 12, tzinfo=dt.UTC)
    assert policy.db_age_problem({"UpdatedAt": "2026-11-28T00:00:00.000Z"}, now, POLICY) == ""
    assert "older than the allowed 168 h" in policy.db_age_problem(
        {"UpdatedAt": "2026-11-01T00:00:00Z"}, now, POLICY
    )
    assert "missing" in policy.db_age_problem(None, now, POLICY)
    assert "no readable UpdatedAt" in policy.db_age_problem({"UpdatedAt": "soon"}, now, POLICY)


def test_policy_parse() -> None:
    assert policy.Policy.parse("critical, high", 24).blocking == ("CRITICAL", "HIGH")
    with pytest.raises(ConfigError, match="blocking_severities"):
        policy.Policy.parse("SEVERE", 24)


def test_load_waivers(tmp_path: Path) -> None:
    path = tmp_path / "waivers.yaml"
    assert policy.load_waivers(path) == []
    path.write_text(
        "waivers:\n  - id: CVE-2099-0001\n    reason: accepted for now\n    expires: 2027-01-31\n"
    )
    (w,) = policy.load_waivers(path)
    assert w.expires == dt.date(2027, 1, 31)
    path.write_text("waivers:\n  - id: CVE-2099-0001\n    expires: 2027-01-31\n")
    with pytest.raises(ConfigError, match="'reason' is a required property"):
        policy.load_waivers(path)
    path.write_text(
        "waivers:\n  - id: CVE-2099-0001\n    reason: accepted for now\n    expires: someday\n"
    )
    with pytest.raises(ConfigError, match=r"waivers\.0\.expires"):
        policy.load_waivers(path)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=12),
    lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=16), c, max_size=4),
    max_leaves=25,
)


@pytest.mark.reliability(
    scenario="any JSON as a Trivy report (property-based)",
    checks="a verdict, never a crash, never a silent pass",
)
@settings(max_examples=300, deadline=None)
@given(json_values)
def test_any_report_is_a_verdict_never_a_crash_never_a_silent_pass(value: Any) -> None:
    v = decide(value)
    if not v.passed:
        assert v.reasons
    else:
        assert isinstance(value, dict)
        assert isinstance(value.get("SchemaVersion"), int)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.fixed_dictionaries(
            {
                "VulnerabilityID": st.text(min_size=1, max_size=8),
                "Severity": st.sampled_from(["CRITICAL", "HIGH", "LOW", "weird"]),
            }
        ),
        max_size=5,
    )
)
def test_any_blocking_severity_blocks(vulns: list[dict[str, str]]) -> None:
    v = decide({"SchemaVersion": 2, "Results": [{"Vulnerabilities": vulns}]})
    blocking = [x for x in vulns if x["Severity"] in ("CRITICAL", "HIGH")]
    assert v.passed == (not blocking)
