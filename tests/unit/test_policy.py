from __future__ import annotations

import datetime as dt
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dcforge.core import policy
from dcforge.core.errors import ConfigError
from dcforge.core.permfile import read_yaml
from dcforge.core.waivers import Waiver

TODAY = dt.date(2026, 11, 28)
POLICY = policy.Policy()


OS_PACKAGES = 10


def seen(results: list[dict[str, Any]], os_packages: int = OS_PACKAGES) -> dict[str, Any]:
    """A report of a Debian 12 image whose os-pkgs result lists ``os_packages`` packages."""
    packages = [{"Name": f"pkg{i}"} for i in range(os_packages)]
    return {
        "SchemaVersion": 2,
        "Metadata": {"OS": {"Family": "debian", "Name": "12.5"}},
        "Results": [
            {"Class": "os-pkgs", "Type": "debian", "Packages": packages, **r} for r in results
        ],
    }


def report(*vulns: tuple[str, str, str, str, str]) -> dict[str, Any]:
    return seen(
        [
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
        ]
    )


CRIT = ("CVE-2099-0001", "zlib1g", "1:1.2.13", "1:1.3.0-1", "CRITICAL")
LOW = ("CVE-2099-0002", "curl", "7.88", "", "LOW")
CRIT_FINDING = dict(
    zip(
        ("VulnerabilityID", "PkgName", "InstalledVersion", "FixedVersion", "Severity"),
        CRIT,
        strict=True,
    )
)


def decide(
    rep: Any,
    sbom: int | None = 10,
    waivers: list[Waiver] | None = None,
    problems: tuple[str, ...] = (),
    *,
    sbom_os: int | None = OS_PACKAGES,
    sbom_os_names: tuple[str, ...] | list[str] = (),
    os_mode: str = "required",
    pol: policy.Policy = POLICY,
) -> policy.Verdict:
    return policy.decide(
        "perm",
        report=rep,
        sbom_packages=sbom,
        sbom_os_packages=sbom_os,
        sbom_os_names=sbom_os_names,
        os_mode=os_mode,
        policy=pol,
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
    w = Waiver("CVE-2099-0001", "not reachable here", dt.date(2026, 12, 31), scope_all=True)
    v = decide(report(CRIT), waivers=[w])
    assert v.passed
    assert [f.id for f, _ in v.waived] == ["CVE-2099-0001"]
    old = Waiver("CVE-2099-0001", "not reachable here", dt.date(2026, 11, 27), scope_all=True)
    v = decide(report(CRIT), waivers=[old])
    assert not v.passed
    assert "waiver expired on 2026-11-27" in v.reasons[0]


def test_waiver_scoped_to_other_permutation_or_package_does_not_apply() -> None:
    other = Waiver("CVE-2099-0001", "elsewhere only", dt.date(2027, 1, 1), permutations=("x",))
    pkg = Waiver("CVE-2099-0001", "other package", dt.date(2027, 1, 1), packages=("libz",))
    assert not decide(report(CRIT), waivers=[other, pkg]).passed


@pytest.mark.parametrize(
    ("rep", "sbom", "expected"),
    [
        (None, 10, "no vulnerability report"),
        ({"Results": []}, 10, "unusable vulnerability report"),
        (seen([{"Vulnerabilities": [{"x": 1}]}]), 10, "unusable"),
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


# -- coverage: an image the scanner cannot see into blocks ---------------------------------


def test_no_detected_os_blocks_even_with_no_findings() -> None:
    flattened = {"SchemaVersion": 2, "Metadata": {}, "Results": []}
    v = decide(flattened, sbom_os=126)
    assert not v.passed
    assert any(
        r.startswith("DCFORGE-OS-UNDETECTED: Trivy detected no operating system") for r in v.reasons
    )
    assert any("Trivy scanned 0 OS package(s), the SBOM lists 126" in r for r in v.reasons)
    assert v.coverage is not None and v.coverage.os == ""


def test_eosl_and_unscanned_os_block() -> None:
    eol = seen([])
    eol["Metadata"]["OS"]["EOSL"] = True
    eol["Results"] = []
    v = decide(eol, sbom_os=0)
    assert [f.id for f in v.blocking] == ["DCFORGE-OS-EOSL"]
    unscanned = {"SchemaVersion": 2, "Metadata": {"OS": {"Family": "weird", "Name": "1"}}}
    v = decide(unscanned, sbom_os=0)
    assert [f.id for f in v.blocking] == ["DCFORGE-OS-UNSCANNED"]
    assert "detected weird 1 but scanned no OS packages" in v.reasons[0]


def test_declared_no_os_needs_language_packages() -> None:
    bare = {"SchemaVersion": 2, "Metadata": {}, "Results": []}
    v = decide(bare, sbom_os=0, os_mode="none")
    assert [f.id for f in v.blocking] == ["DCFORGE-NOTHING-SCANNED"]
    lang = {
        "SchemaVersion": 2,
        "Results": [{"Class": "lang-pkgs", "Type": "python-pkg", "Packages": [{"Name": "x"}]}],
    }
    assert decide(lang, sbom_os=0, os_mode="none").passed
    # Declaring "no OS" does not excuse OS packages the SBOM lists and Trivy did not scan.
    assert [f.id for f in decide(lang, sbom_os=40, os_mode="none").blocking] == [
        "DCFORGE-PKG-MISMATCH"
    ]


def test_a_coverage_waiver_lifts_only_with_a_live_expiry() -> None:
    flattened = {"SchemaVersion": 2, "Metadata": {}, "Results": []}
    live = Waiver(
        "DCFORGE-OS-UNDETECTED",
        "vendor image, scanned upstream",
        dt.date(2026, 12, 31),
        permutations=("perm",),
    )
    v = decide(flattened, sbom_os=0, waivers=[live])
    assert v.passed
    assert [f.id for f, _ in v.waived] == ["DCFORGE-OS-UNDETECTED"]
    dead = Waiver(
        "DCFORGE-OS-UNDETECTED",
        "vendor image, scanned upstream",
        dt.date(2026, 11, 1),
        permutations=("perm",),
    )
    v = decide(flattened, sbom_os=0, waivers=[dead])
    assert not v.passed and "waiver expired on 2026-11-01" in v.reasons[0]


def os_report(family: str, name: str) -> dict[str, Any]:
    rep = seen([{"Target": "img"}])
    rep["Metadata"]["OS"] = {"Family": family, "Name": name}
    return rep


@pytest.mark.parametrize(
    ("family", "name", "held"),
    [
        ("debian", "12.5", True),
        ("debian", "14.0", False),  # a release newer than the DB
        ("debian", "forky/sid", False),  # testing: no bucket at all
        ("ubuntu", "24.04", True),
        ("ubuntu", "25.10", False),  # an interim release the DB has no data for
        ("alpine", "3.20.3", True),
        ("alpine", "3.21.0", False),
        ("wolfi", "20230201", True),
        ("oracle", "9.4", True),  # bucket "Oracle Linux 9": names compared without case
        ("amazon", "2 (Karoo)", True),
        ("redhat", "9.3", True),
        ("photon", "5.0", True),
        ("ubuntu", "20.04", True),  # only its ESM bucket
        ("weird", "1", False),
    ],
)
def test_an_os_release_the_db_has_no_advisories_for_blocks(
    family: str, name: str, held: bool
) -> None:
    platforms = {"debian 12", "ubuntu 24.04", "alpine 3.20", "wolfi", "data-source"}
    platforms |= {"Oracle Linux 9", "amazon linux 2", "Red Hat", "Photon OS 5.0"}
    platforms |= {"ubuntu 20.04-ESM"}
    v = policy.decide(
        "perm",
        report=os_report(family, name),
        sbom_packages=10,
        sbom_os_packages=OS_PACKAGES,
        policy=POLICY,
        waivers=[],
        today=TODAY,
        db_platforms=platforms,
    )
    assert v.passed is held
    if not held:
        assert [f.id for f in v.blocking] == ["DCFORGE-OS-NO-ADVISORIES"]
        assert f"holds no advisories for {family} {name}" in v.reasons[0]
    # Without a DB listing (a caller that has none) nothing is claimed either way.
    assert decide(os_report(family, name)).coverage.db_has_platform is None  # type: ignore[union-attr]


def test_no_advisories_is_waivable_per_permutation_in_the_gate_and_the_rescan() -> None:
    sid = os_report("debian", "forky/sid")
    live = Waiver(
        "DCFORGE-OS-NO-ADVISORIES", "testing base, tracked", dt.date(2026, 12, 31), ("perm",)
    )
    kwargs: dict[str, Any] = {"policy": POLICY, "today": TODAY, "db_platforms": {"debian 12"}}
    common = {"sbom_packages": 10, "sbom_os_packages": OS_PACKAGES, **kwargs}
    assert not policy.decide("perm", report=sid, waivers=[], **common).passed
    assert policy.decide("perm", report=sid, waivers=[live], **common).passed
    drifted = policy.drift("perm", sid, waivers=[], **kwargs)
    assert not drifted.passed and not drifted.blocking  # failed, not "affected": no rebuild
    assert "DCFORGE-OS-NO-ADVISORIES" in drifted.reasons[0]
    assert policy.drift("perm", sid, waivers=[live], **kwargs).passed


def test_ignore_unfixed_is_a_reported_policy_setting() -> None:
    unfixed = ("CVE-2099-0003", "bash", "5.2", "", "HIGH")
    assert not decide(report(unfixed)).passed
    v = decide(report(unfixed, CRIT), pol=policy.Policy(ignore_unfixed=True))
    assert [f.id for f in v.unfixed] == ["CVE-2099-0003"]
    assert [f.id for f in v.blocking] == ["CVE-2099-0001"]  # a fixable one still blocks
    assert v.to_json()["unfixed_not_blocking"][0]["id"] == "CVE-2099-0003"


def test_db_from_the_future_blocks() -> None:
    now = dt.datetime(2026, 11, 28, 12, tzinfo=dt.UTC)
    assert "lies in the future" in policy.db_age_problem(
        {"UpdatedAt": "2026-11-29T12:00:00Z"}, now, POLICY
    )
    assert policy.db_age_problem({"UpdatedAt": "2026-11-28T12:05:00Z"}, now, POLICY) == ""


# -- trivy.yaml may not hide findings -------------------------------------------------------

SHIPPED = {
    "timeout": "10m",
    "severity": ["UNKNOWN", "LOW", "MEDIUM", "HIGH", "CRITICAL"],
    "scan": {"scanners": ["vuln"]},
    "pkg": {"types": ["os", "library"]},
    "vulnerability": {"ignore-unfixed": False},
    "ignorefile": "",
}


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"severity": ["LOW", "MEDIUM"]}, "leaves out CRITICAL, HIGH"),
        ({"vulnerability": {"ignore-unfixed": True}}, "use ignore_unfixed instead"),
        ({"scan": {"scanners": ["vuln"], "skip-dirs": ["/usr"]}}, "use scan_skip_dirs"),
        ({"scan": {"scanners": ["secret"]}}, "must include vuln"),
        ({"pkg": {"types": ["library"]}}, "must include os and library"),
        ({"ignorefile": ".trivyignore"}, "'ignorefile' is not allowed"),
        ({"vulnerability": {"vex": ["x.json"]}}, "'vulnerability.vex' is not allowed"),
        ({"ignore-policy": "p.rego"}, "'ignore-policy' is not allowed"),
        ({"db": {"repository": "x"}}, "'db' is not allowed"),
        ({"scan": ["vuln"]}, "must be a mapping"),
    ],
)
def test_trivy_config_that_hides_findings_is_refused(change: dict[str, Any], expected: str) -> None:
    assert policy.trivy_config_problems(SHIPPED, ("CRITICAL", "HIGH")) == []
    problems = policy.trivy_config_problems({**SHIPPED, **change}, ("CRITICAL", "HIGH"))
    assert any(re.search(expected, p) for p in problems), problems


def test_the_shipped_trivy_yaml_is_allowed() -> None:
    root = Path(__file__).resolve().parents[2]
    for path in (root / "trivy.yaml", root / "src/dcforge/resources/trivy.yaml"):
        assert policy.trivy_config_problems(read_yaml(path), ("CRITICAL", "HIGH")) == []


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
    v = decide(seen([{"Vulnerabilities": vulns}]))
    blocking = [x for x in vulns if x["Severity"] in ("CRITICAL", "HIGH")]
    assert v.passed == (not blocking)


def test_trivy_family_none_is_no_os() -> None:
    rep = {"SchemaVersion": 2, "Metadata": {"OS": {"Family": "none", "Name": ""}}}
    assert [f.id for f in decide(rep, sbom_os=0).blocking] == ["DCFORGE-OS-UNDETECTED"]


def test_packages_are_compared_by_name_not_only_counted() -> None:
    rep = seen([{"Target": "img"}], os_packages=3)  # pkg0, pkg1, pkg2
    assert decide(rep, sbom_os=3, sbom_os_names=["pkg0", "pkg1", "pkg2"]).passed
    # Same count, other packages: the scanner did not see what the SBOM lists.
    swapped = ["libssl3", "openssl", "bash"]
    v = decide(rep, sbom_os=3, sbom_os_names=swapped)
    assert [f.id for f in v.blocking] == ["DCFORGE-PKG-MISMATCH"]
    assert "3 OS package(s) Trivy did not scan (bash, libssl3, openssl)" in v.reasons[0]


def test_a_detected_os_with_an_empty_package_list_blocks() -> None:
    rep = seen([{"Target": "img"}], os_packages=0)
    assert [f.id for f in decide(rep, sbom_os=0).blocking] == ["DCFORGE-OS-UNSCANNED"]


@pytest.mark.parametrize("dirs", ["/", "/usr", "/usr/**", "usr/share", "/opt/../usr/lib", "/a/*"])
def test_skip_dirs_that_would_hide_everything_are_refused(dirs: str) -> None:
    with pytest.raises(ConfigError, match="scan_skip_dirs"):
        policy.Policy.parse("CRITICAL", 24, skip_dirs=dirs)
    assert policy.Policy.parse("CRITICAL", 24, skip_dirs="/opt/examples/").skip_dirs == (
        "/opt/examples",
    )


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("2026-11-28T12:00:00.123456789Z", dt.datetime(2026, 11, 28, 12, tzinfo=dt.UTC)),
        ("2026-11-28T22:00:00+10:00", dt.datetime(2026, 11, 28, 12, tzinfo=dt.UTC)),
        ("2026-11-28T12:00:00", dt.datetime(2026, 11, 28, 12, tzinfo=dt.UTC)),
        ("yesterday", None),
    ],
)
def test_db_timestamps_keep_their_zone(raw: str, expected: dt.datetime | None) -> None:
    assert policy.parse_timestamp(raw) == expected


def test_hostile_values_in_trivy_yaml_are_problems_not_crashes() -> None:
    problems = policy.trivy_config_problems({"pkg": {"types": [["os"]]}}, ("CRITICAL",))
    assert problems == ["'pkg.types' must include os and library"]


def drift(
    rep: Any, waivers: list[Waiver] | None = None, os_mode: str = "required"
) -> policy.Verdict:
    return policy.drift(
        "tiny", rep, policy=POLICY, waivers=waivers or [], today=TODAY, os_mode=os_mode
    )


def test_drift_is_a_fixable_blocking_finding_without_a_live_waiver() -> None:
    found = drift(report(CRIT, LOW))
    assert not found.passed and [f.id for f in found.blocking] == ["CVE-2099-0001"]
    unfixed = ("CVE-2099-0003", "zlib1g", "1:1.2.13", "", "CRITICAL")
    quiet = drift(report(unfixed, LOW))
    assert quiet.passed and [f.id for f in quiet.unfixed] == ["CVE-2099-0003"]
    w = Waiver("CVE-2099-0001", "not reachable", dt.date(2026, 12, 31), scope_all=True)
    assert drift(report(CRIT), [w]).passed
    expired = Waiver("CVE-2099-0001", "old", dt.date(2026, 11, 1), scope_all=True)
    assert not drift(report(CRIT), [expired]).passed


@pytest.mark.parametrize(
    ("rep", "expected"),
    [
        ({"SchemaVersion": 2}, "DCFORGE-OS-UNDETECTED"),
        (
            {
                "SchemaVersion": 2,
                "Metadata": {"OS": {"Family": "debian", "Name": "9", "EOSL": True}},
            },
            "DCFORGE-OS-EOSL",
        ),
        (seen([], os_packages=0), "DCFORGE-"),
        ("not a report", "unusable vulnerability report"),
    ],
)
def test_a_rescan_that_no_longer_sees_the_image_is_never_nothing_new(
    rep: Any, expected: str
) -> None:
    """An OS no longer detected (or gone end-of-life, or no package scanned) says nothing
    about drift: the rescan fails instead of reporting a clean image."""
    found = drift(rep)
    assert not found.passed and not found.blocking
    assert any(expected in r for r in found.reasons), found.reasons


# -- findings Trivy hid (a VEX): the verdict is the same, and only not_affected may hide -----

ZLIB_PURL = "pkg:deb/debian/zlib1g@1.2.13?arch=amd64&distro=debian-12.5&epoch=1"


def hiding(*vulns: tuple[str, str, str, str, str]) -> dict[str, Any]:
    """report(CRIT) as Trivy writes it when a VEX hid ``vulns`` (``--show-suppressed``)."""
    rep = report()
    rep["Results"][0]["ExperimentalModifiedFindings"] = [
        {
            "Type": "vulnerability",
            "Status": "not_affected",
            "Statement": "vulnerable_code_not_present",
            "Source": "x.trivy-vex.json",
            "Finding": {
                "VulnerabilityID": i,
                "PkgName": p,
                "InstalledVersion": v,
                "FixedVersion": f,
                "Severity": s,
                "PkgIdentifier": {"PURL": ZLIB_PURL},
            },
        }
        for i, p, v, f, s in vulns
    ]
    return rep


NOT_AFFECTED = Waiver(
    "CVE-2099-0001",
    "the image never loads zlib",
    dt.date(2026, 12, 31),
    scope_all=True,
    status="not_affected",
    justification="vulnerable_code_not_present",
)


def test_findings_carry_the_purl_trivy_reports() -> None:
    rep = report(CRIT)
    rep["Results"][0]["Vulnerabilities"][0]["PkgIdentifier"] = {"PURL": ZLIB_PURL}
    assert [f.purl for f in policy.parse_findings(rep)] == [ZLIB_PURL]
    assert [f.purl for f in policy.parse_findings(report(CRIT))] == [""]


def test_a_finding_trivy_hid_under_a_not_affected_waiver_decides_as_if_shown() -> None:
    hidden, shown = decide(hiding(CRIT), waivers=[NOT_AFFECTED]), decide(report(CRIT))
    assert hidden.passed, hidden.reasons
    assert [(f.id, f.purl, w) for f, w in hidden.waived] == [
        ("CVE-2099-0001", ZLIB_PURL, NOT_AFFECTED)
    ]
    assert hidden.counts == shown.counts == {"CRITICAL": 1}
    assert hidden.to_json()["waived"][0]["waiver"]["status"] == "not_affected"


def test_trivy_hiding_what_no_live_not_affected_waiver_covers_blocks() -> None:
    affected = replace(NOT_AFFECTED, status="affected", justification="")
    expired = replace(NOT_AFFECTED, expires=dt.date(2026, 11, 27))
    for waivers in ([], [affected], [expired]):
        v = decide(hiding(LOW), waivers=waivers)  # even a LOW one: nothing may hide quietly
        assert not v.passed
        assert v.reasons == [
            "Trivy's report hides CVE-2099-0002 LOW in curl 7.88 (fixed: no fix yet), which no "
            "live not_affected waiver covers — a scan may hide only what waivers.yaml says is "
            "not_affected"
        ]
    assert not decide(hiding(CRIT), waivers=[affected]).passed


@pytest.mark.parametrize(
    "modified",
    [
        {"Type": "vulnerability"},
        {"Type": "vulnerability", "Finding": {"x": 1}},
        "not an object",
        # Another type (or none) is not dropped: it may carry a CRITICAL the verdict needs.
        {"Type": "Vulnerability", "Finding": CRIT_FINDING},
        {"Finding": CRIT_FINDING},
        {"Type": "secret", "Finding": CRIT_FINDING},
    ],
)
def test_a_malformed_suppressed_finding_is_an_unusable_report(modified: Any) -> None:
    rep = report()
    rep["Results"][0]["ExperimentalModifiedFindings"] = [modified]
    v = decide(rep, waivers=[NOT_AFFECTED])
    assert not v.passed
    assert any("unusable vulnerability report" in r for r in v.reasons)
