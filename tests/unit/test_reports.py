from __future__ import annotations

import datetime as dt

from dcforge.core import coverage, policy, reports
from dcforge.core.waivers import Waiver

F = policy.Finding("CVE-2099-0001", "zlib1g", "1:1.2.13", "1:1.3.0-1", "CRITICAL", "bad")
W = Waiver(
    "CVE-2099-0009",
    "accepted: unreachable",
    dt.date(2027, 1, 1),
    packages=("curl",),
    created=dt.date(2026, 11, 1),
)
FW = policy.Finding("CVE-2099-0009", "curl", "7", "8", "HIGH")


def verdicts() -> list[policy.Verdict]:
    blocked = policy.Verdict("python", False, [F.describe()], {"CRITICAL": 1}, [F])
    ok = policy.Verdict("node", True, [], {"HIGH": 1}, [], [(FW, W)], 12)
    return [blocked, ok]


def test_markdown_lists_counts_blocking_findings_and_waivers() -> None:
    md = reports.markdown(verdicts(), {"git_sha": "a" * 40, "blocking_severities": ["CRITICAL"]})
    assert "**BLOCKED**" in md
    assert "| python | **blocked** | ? | ? | 1 | 0 | 0 | 0 | 0 | 0 | 0 |" in md
    assert "| CVE-2099-0001 | CRITICAL | zlib1g | 1:1.2.13 | 1:1.3.0-1 |" in md
    assert "| node | CVE-2099-0009 | curl 7 | 2027-01-01 | accepted: unreachable |" in md
    assert "SAMPLE" not in md


def test_sample_db_is_said_loudly() -> None:
    md = reports.markdown(verdicts(), {"sample_db": True})
    assert "SAMPLE VULNERABILITY DATA — NOT A REAL SCAN" in md


def test_sarif_has_rules_results_locations_and_suppressions() -> None:
    doc = reports.sarif(
        verdicts(), {"python": "permutations/python.yaml"}, {"trivy_version": "0.76.0"}
    )
    run = doc["runs"][0]
    assert doc["version"] == "2.1.0"
    assert {r["id"] for r in run["tool"]["driver"]["rules"]} == {"CVE-2099-0001", "CVE-2099-0009"}
    first, second = run["results"]
    assert first["level"] == "error"
    assert (
        first["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]
        == "permutations/python.yaml"
    )
    assert second["suppressions"][0]["justification"] == "accepted: unreachable"


def test_markdown_lists_live_waivers_with_days_left_and_coverage() -> None:
    cov = coverage.Coverage("required", "debian 12.5", False, 1, 126, 0, 126)
    vs = verdicts()
    vs[1].coverage = cov
    expired = Waiver("CVE-2099-0010", "old", dt.date(2026, 11, 1), scope_all=True)
    md = reports.markdown(vs, {"db_digest": "sha256:abc"}, [W, expired], dt.date(2026, 11, 28))
    assert "## Waivers in force" in md
    assert "| CVE-2099-0009 | packages: curl | 2026-11-01 | 2027-01-01 | 34 |" in md
    assert "CVE-2099-0010" not in md
    assert "| node | pass | debian 12.5 | 126 / 126 |" in md
    assert "`sha256:abc`" in md


def test_coverage_problems_are_errors_in_sarif() -> None:
    f = policy.Finding(coverage.OS_UNDETECTED, "(image)", "", "", "", "no OS")
    v = policy.Verdict("flat", False, [f"{f.id}: no OS"], {}, [f])
    md = reports.markdown([v], {})
    assert "- DCFORGE-OS-UNDETECTED: no OS" in md
    assert "| CVE |" not in md
    (result,) = reports.sarif([v], {}, {})["runs"][0]["results"]
    assert result["level"] == "error"
