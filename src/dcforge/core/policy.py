"""Gate policy (pure): scanner and SBOM results + policy + waivers in, a verdict out.

Fail closed: a missing report, a scanner error, an SBOM failure or an empty SBOM, a DB
problem or a checksum mismatch each block; nothing here ever turns an error into "no
findings". Neither does an image the scanner could not see into: every verdict also
checks *coverage* (:mod:`dcforge.core.coverage`) — Trivy must have detected a supported, maintained
OS and scanned as many OS packages as the SBOM lists.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from dcforge.core.coverage import (
    COVERAGE_IDS,
    Coverage,
    coverage_problems,
    os_problems,
    read_coverage,
)
from dcforge.core.errors import ConfigError
from dcforge.core.waivers import NOT_AFFECTED, Waiver

SEVERITIES = ("CRITICAL", "HIGH", "MEDIUM", "LOW", "UNKNOWN")
OS_MODES = ("required", "none")


@dataclass(frozen=True)
class Policy:
    """What blocks. Every field is recorded in the verdict; publish refuses another one."""

    blocking: tuple[str, ...] = ("CRITICAL", "HIGH")
    max_db_age_hours: int = 168
    max_waiver_days: int = 90
    ignore_unfixed: bool = False  # findings with no fix do not block (still reported)
    skip_dirs: tuple[str, ...] = ()  # image paths Trivy does not scan (reported)
    db_digest: str = ""  # when set, the only Trivy DB a verdict may be made with

    @classmethod
    def parse(
        cls,
        severities: str,
        max_db_age_hours: int,
        *,
        max_waiver_days: int = 90,
        ignore_unfixed: bool = False,
        skip_dirs: str = "",
        db_digest: str = "",
    ) -> Policy:
        wanted = tuple(s.strip().upper() for s in severities.split(",") if s.strip())
        unknown = [s for s in wanted if s not in SEVERITIES]
        if unknown or not wanted:
            raise ConfigError(
                f"blocking_severities {severities!r}: use a comma list of {', '.join(SEVERITIES)}"
            )
        if max_db_age_hours <= 0:
            raise ConfigError("max_db_age_hours must be positive")
        if max_waiver_days <= 0:
            raise ConfigError("max_waiver_days must be positive")
        if db_digest and not re.fullmatch(r"sha256:[0-9a-f]{64}", db_digest):
            raise ConfigError(f"trivy_db_digest {db_digest!r} is not a sha256:… digest")
        dirs = tuple(d.strip().rstrip("/") for d in skip_dirs.split(",") if d.strip())
        if any(not re.fullmatch(r"(/[A-Za-z0-9._+-]+){2,}", d) or ".." in d for d in dirs):
            raise ConfigError(
                f"scan_skip_dirs {skip_dirs!r}: use absolute image paths at least two levels "
                "deep and without wildcards, e.g. /opt/examples (a whole /usr or / is never "
                "skipped)"
            )
        if not 0 < max_db_age_hours <= 24 * 365 or not 0 < max_waiver_days <= 3650:
            raise ConfigError("max_db_age_hours must be 1…8760 and max_waiver_days 1…3650")
        return cls(wanted, max_db_age_hours, max_waiver_days, ignore_unfixed, dirs, db_digest)

    def to_json(self) -> dict[str, Any]:
        return {
            "blocking_severities": list(self.blocking),
            "max_db_age_hours": self.max_db_age_hours,
            "max_waiver_days": self.max_waiver_days,
            "ignore_unfixed": self.ignore_unfixed,
            "skip_dirs": list(self.skip_dirs),
            "db_digest": self.db_digest,
        }


@dataclass(frozen=True)
class Finding:
    id: str
    package: str
    installed: str
    fixed: str
    severity: str
    title: str = ""
    purl: str = ""  # the package's purl as Trivy reports it (PkgIdentifier.PURL)

    def describe(self) -> str:
        fixed = self.fixed or "no fix yet"
        return f"{self.id} {self.severity} in {self.package} {self.installed} (fixed: {fixed})"


@dataclass
class Verdict:
    name: str
    passed: bool = False
    reasons: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    blocking: list[Finding] = field(default_factory=list)
    waived: list[tuple[Finding, Waiver]] = field(default_factory=list)
    sbom_packages: int = 0
    unfixed: list[Finding] = field(default_factory=list)  # not blocking: ignore_unfixed
    coverage: Coverage | None = None
    vex: dict[str, str] | None = None  # the image's OpenVEX document: {file, sha256}

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "passed": self.passed,
            "reasons": self.reasons,
            "counts": self.counts,
            "blocking": [asdict(f) for f in self.blocking],
            "waived": [{**asdict(f), "waiver": _waiver_summary(w)} for f, w in self.waived],
            "unfixed_not_blocking": [asdict(f) for f in self.unfixed],
            "sbom_packages": self.sbom_packages,
            "coverage": asdict(self.coverage) if self.coverage else None,
            "vex": self.vex,
        }


def _waiver_summary(w: Waiver) -> dict[str, str]:
    return {"reason": w.reason, "expires": w.expires.isoformat(), "status": w.status}


class ReportError(ValueError):
    """A scanner report that is not what Trivy writes."""


def _results(report: Any) -> list[Mapping[str, Any]]:
    if not isinstance(report, Mapping) or not isinstance(report.get("SchemaVersion"), int):
        raise ReportError("not a Trivy JSON report (no SchemaVersion)")
    results = report.get("Results") or []
    if not isinstance(results, list):
        raise ReportError("Results is not a list")
    if not all(isinstance(result, Mapping) for result in results):
        raise ReportError("a Results entry is not an object")
    return results


def _finding(v: Any) -> Finding:
    if not isinstance(v, Mapping) or not isinstance(v.get("VulnerabilityID"), str):
        raise ReportError("a vulnerability has no VulnerabilityID")
    severity = str(v.get("Severity", "UNKNOWN")).upper()
    identifier = v.get("PkgIdentifier")
    purl = identifier.get("PURL") if isinstance(identifier, Mapping) else None
    return Finding(
        id=v["VulnerabilityID"],
        package=str(v.get("PkgName", "?")),
        installed=str(v.get("InstalledVersion", "?")),
        fixed=str(v.get("FixedVersion", "") or ""),
        severity=severity if severity in SEVERITIES else "UNKNOWN",
        title=str(v.get("Title", "") or "")[:200],
        purl=purl if isinstance(purl, str) else "",
    )


def _listed(result: Mapping[str, Any], key: str) -> list[Any]:
    items = result.get(key) or []
    if not isinstance(items, list):
        raise ReportError(f"{key} is not a list")
    return items


def parse_findings(report: Any) -> list[Finding]:
    """Findings from a Trivy JSON report; anything malformed is a ReportError."""
    return [_finding(v) for r in _results(report) for v in _listed(r, "Vulnerabilities")]


def parse_hidden(report: Any) -> list[Finding]:
    """Findings Trivy hid from its report and listed as suppressed (``--show-suppressed``:
    ``ExperimentalModifiedFindings``), e.g. by the VEX document the gate gave it."""
    hidden = []
    for result in _results(report):
        for modified in _listed(result, "ExperimentalModifiedFindings"):
            if not isinstance(modified, Mapping):
                raise ReportError("a suppressed finding is not an object")
            # Only the vulnerability scanner runs: anything else suppressed is not a report
            # the gate can read, and dropping it would drop a finding from the verdict.
            if modified.get("Type") != "vulnerability":
                raise ReportError(
                    f"a suppressed finding of type {modified.get('Type')!r}, not 'vulnerability'"
                )
            hidden.append(_finding(modified.get("Finding")))
    return hidden


_TIMESTAMP = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.\d+)?(Z|[+-]\d\d:\d\d)?")


def parse_timestamp(raw: str) -> dt.datetime | None:
    """RFC 3339 as Trivy writes it (nanoseconds, ``Z`` or an offset); no zone means UTC."""
    m = _TIMESTAMP.fullmatch(raw.strip())
    if not m:
        return None
    try:
        value = dt.datetime.fromisoformat(m.group(1) + (m.group(2) or "Z").replace("Z", "+00:00"))
    except ValueError:
        return None
    return value.astimezone(dt.UTC)


def _future_problem(updated: dt.datetime, now: dt.datetime, raw: str) -> str:
    if updated - now > dt.timedelta(minutes=FUTURE_DB_SLACK_MINUTES):
        return (
            f"the Trivy DB says it was updated at {raw[:19]}Z, which lies in the future — "
            "a DB with a forged or broken date is never trusted; check the DB source and "
            "this machine's clock"
        )
    return ""


FUTURE_DB_SLACK_MINUTES = 10  # clock skew between the DB builder and this machine


def db_age_problem(metadata: Mapping[str, Any] | None, now: dt.datetime, policy: Policy) -> str:
    """Empty when the DB is present and fresh enough; otherwise the reason it blocks."""
    if not metadata:
        return "the Trivy DB is missing (no metadata.json after download)"
    raw = str(metadata.get("UpdatedAt", ""))
    updated = parse_timestamp(raw)
    if updated is None:
        return f"the Trivy DB metadata has no readable UpdatedAt ({raw!r})"
    if future := _future_problem(updated, now, raw):
        return future
    age = now - updated
    if age > dt.timedelta(hours=policy.max_db_age_hours):
        hours = int(age.total_seconds() // 3600)
        return (
            f"the Trivy DB is {hours} h old (updated {raw[:19]}Z), older than the allowed "
            f"{policy.max_db_age_hours} h — update the DB or its mirror"
        )
    return ""


def decide(
    name: str,
    *,
    report: Any | None,
    sbom_packages: int | None,
    sbom_os_packages: int | None,
    sbom_os_names: Collection[str] = (),
    os_mode: str = "required",
    policy: Policy,
    waivers: Sequence[Waiver],
    today: dt.date,
    problems: Sequence[str] = (),
    scope: str = "",
    db_platforms: Collection[str] | None = None,
) -> Verdict:
    """The verdict for one permutation. ``problems`` are failures found before deciding.
    ``scope`` is the permutation waivers name (default ``name``; a platform's verdict of a
    multi-platform image is named after the platform, its waivers after the permutation).

    ``sbom_os_packages`` is the number of OS packages in the SBOM; None when there is no
    SBOM (which blocks by itself).
    """
    verdict = Verdict(name=name, reasons=list(problems))
    if report is None:
        verdict.reasons.append("no vulnerability report (the scan did not complete)")
    else:
        findings, hidden = _read_report(
            verdict, report, sbom_os_packages, os_mode, sbom_os_names, db_platforms
        )
        for f in findings:
            _judge(verdict, scope or name, f, policy, waivers, today)
        _check_hidden(verdict, scope or name, hidden, waivers, today)
    if sbom_packages is None:
        verdict.reasons.append("no SBOM (syft did not complete)")
    elif sbom_packages == 0:
        verdict.reasons.append("the SBOM lists no packages (syft found nothing to catalogue)")
    else:
        verdict.sbom_packages = sbom_packages
    verdict.passed = not verdict.reasons
    return verdict


def _read_report(
    verdict: Verdict,
    report: Any,
    sbom_os_packages: int | None,
    os_mode: str,
    sbom_os_names: Collection[str],
    db_platforms: Collection[str] | None,
) -> tuple[list[Finding], list[Finding]]:
    """Every finding of the report — those Trivy hid too, so a VEX never changes the verdict
    — with its coverage problems as pseudo-findings; and the findings Trivy hid."""
    try:
        hidden = parse_hidden(report)
        findings = parse_findings(report) + hidden
    except ReportError as err:
        verdict.reasons.append(f"unusable vulnerability report: {err}")
        return [], []
    if sbom_os_packages is not None:
        verdict.coverage = read_coverage(
            report, sbom_os_packages, os_mode, sbom_os_names, db_platforms
        )
        findings += [
            _coverage_finding(cid, why) for cid, why in coverage_problems(verdict.coverage)
        ]
    return findings, hidden


def _check_hidden(
    verdict: Verdict,
    permutation: str,
    hidden: Sequence[Finding],
    waivers: Sequence[Waiver],
    today: dt.date,
) -> None:
    """Trivy may hide only what a live not_affected waiver covers (the gate's VEX says so
    and nothing else): any other finding it hid blocks, whatever its severity."""
    for f in hidden:
        waiver = live_waiver(waivers, permutation, f, today)
        if waiver is None or waiver.status != NOT_AFFECTED:
            verdict.reasons.append(
                f"Trivy's report hides {f.describe()}, which no live not_affected waiver "
                "covers — a scan may hide only what waivers.yaml says is not_affected"
            )


def drift(
    name: str,
    report: Any,
    *,
    policy: Policy,
    waivers: Sequence[Waiver],
    today: dt.date,
    scope: str = "",
    os_mode: str = "required",
    db_platforms: Collection[str] | None = None,
) -> Verdict:
    """A live image rescanned with today's DB: blocked by every finding the policy blocks
    that has a fix (a rebuild can pick it up) and no live waiver. A report that cannot be
    read blocks too: a rescan never says "nothing new" without having looked."""
    verdict = Verdict(name=name)
    try:
        findings = parse_findings(report)
    except ReportError as err:
        verdict.reasons.append(f"unusable vulnerability report: {err}")
        return verdict
    # The scan must still see the image: an OS no longer detected, gone end-of-life, or
    # with no package scanned says nothing about drift (the gate's coverage ids, minus the
    # SBOM comparison: the release's SBOM is attested, not re-made here).
    verdict.coverage = read_coverage(report, 0, os_mode, db_platforms=db_platforms)
    for cid, why in os_problems(verdict.coverage):
        # Waivable as at the gate, but never "affected": a rebuild does not fix coverage.
        problem = _coverage_finding(cid, why)
        if waiver := live_waiver(waivers, scope or name, problem, today):
            verdict.waived.append((problem, waiver))
        else:
            verdict.reasons.append(f"{cid}: {why}")
    for f in findings:
        verdict.counts[f.severity] = verdict.counts.get(f.severity, 0) + 1
        if f.severity not in policy.blocking:
            continue
        if not f.fixed:
            verdict.unfixed.append(f)
            continue
        if waiver := live_waiver(waivers, scope or name, f, today):
            verdict.waived.append((f, waiver))
        else:
            verdict.blocking.append(f)
            verdict.reasons.append(f.describe())
    verdict.passed = not verdict.reasons
    return verdict


def add_counts(counts: Iterable[Mapping[str, int]]) -> dict[str, int]:
    """Severity counts summed (a multi-platform permutation's, over its platforms)."""
    total: dict[str, int] = {}
    for one in counts:
        for severity, n in one.items():
            total[severity] = total.get(severity, 0) + n
    return total


def live_waiver(
    waivers: Sequence[Waiver], permutation: str, f: Finding, today: dt.date
) -> Waiver | None:
    """The first waiver that covers ``f`` in ``permutation``, when it has not expired."""
    waiver = next((w for w in waivers if w.matches(permutation, f)), None)
    return waiver if waiver is not None and not waiver.expired(today) else None


def _coverage_finding(cid: str, why: str) -> Finding:
    """A coverage problem as a pseudo-finding: only a waiver naming the permutation lifts it."""
    return Finding(id=cid, package="(image)", installed="", fixed="", severity="", title=why)


def _judge(
    verdict: Verdict,
    permutation: str,
    f: Finding,
    policy: Policy,
    waivers: Sequence[Waiver],
    today: dt.date,
) -> None:
    """Count one finding and decide whether it blocks, is waived, or is not blocking."""
    coverage = f.id in COVERAGE_IDS
    if not coverage:
        verdict.counts[f.severity] = verdict.counts.get(f.severity, 0) + 1
        if f.severity not in policy.blocking:
            return
        if policy.ignore_unfixed and not f.fixed:
            verdict.unfixed.append(f)
            return
    describe = f"{f.id}: {f.title}" if coverage else f.describe()
    waiver = next((w for w in waivers if w.matches(permutation, f)), None)
    if waiver is None:
        verdict.blocking.append(f)
        verdict.reasons.append(describe)
    elif waiver.expired(today):
        verdict.blocking.append(f)
        verdict.reasons.append(f"{describe} — its waiver expired on {waiver.expires.isoformat()}")
    else:
        verdict.waived.append((f, waiver))


# trivy.yaml: the options dcforge lets through. Anything else could hide findings or change
# what is scanned (skip-dirs, ignore-unfixed, vex, ignore policies, other scanners, …);
# where a user needs one, it is a policy setting, recorded in the verdict and reported.
TRIVY_CONFIG_ALLOWED = {
    "timeout": None,
    "severity": None,
    "scan": {"scanners", "parallel"},
    "pkg": {"types"},
    "vulnerability": {"ignore-unfixed"},
    "ignorefile": None,
}
POLICY_SETTING_FOR = {
    "skip-dirs": "scan_skip_dirs",
    "skip-files": "scan_skip_dirs",
    "ignore-unfixed": "ignore_unfixed",
    "ignorefile": "waivers.yaml (each waiver with a reason and an expiry)",
    "ignore-policy": "waivers.yaml (each waiver with a reason and an expiry)",
    "vex": "waivers.yaml (each waiver with a reason and an expiry)",
}


def trivy_config_problems(data: Any, blocking: Sequence[str]) -> list[str]:
    """Why a parsed trivy.yaml may not be used; empty when it hides nothing."""
    if data is None:
        return []
    if not isinstance(data, Mapping):
        return ["the file is not a YAML mapping"]
    out = []
    for key, value in data.items():
        allowed = TRIVY_CONFIG_ALLOWED.get(str(key), False)
        if allowed is False:
            out.append(_trivy_refusal(str(key)))
        elif isinstance(allowed, set):
            if not isinstance(value, Mapping):
                out.append(f"'{key}' must be a mapping")
                continue
            out += [_trivy_refusal(f"{key}.{sub}") for sub in value if sub not in allowed]
    out += _trivy_value_problems(data, blocking)
    return out


def _trivy_refusal(key: str) -> str:
    leaf = key.rsplit(".", 1)[-1]
    instead = POLICY_SETTING_FOR.get(leaf)
    hint = f" — use {instead} instead" if instead else ""
    return f"'{key}' is not allowed: dcforge refuses Trivy options that can hide findings{hint}"


def _section(data: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = data.get(key)
    return value if isinstance(value, Mapping) else {}


def _trivy_value_problems(data: Mapping[str, Any], blocking: Sequence[str]) -> list[str]:
    out = []
    severity = data.get("severity")
    if severity is not None:
        listed = {str(s).upper() for s in (severity if isinstance(severity, list) else [severity])}
        if missing := [s for s in blocking if s not in listed]:
            out.append(
                f"'severity' leaves out {', '.join(missing)}, which blocking_severities blocks "
                "— report every severity; the policy decides what blocks"
            )
    scanners = _section(data, "scan").get("scanners")
    if scanners is not None and "vuln" not in (scanners if isinstance(scanners, list) else []):
        out.append("'scan.scanners' must include vuln")
    types = _section(data, "pkg").get("types")
    listed = {t for t in types if isinstance(t, str)} if isinstance(types, list) else set()
    if types is not None and not {"os", "library"} <= listed:
        out.append("'pkg.types' must include os and library")
    if _section(data, "vulnerability").get("ignore-unfixed"):
        out.append(_trivy_refusal("vulnerability.ignore-unfixed"))
    if data.get("ignorefile"):
        out.append(_trivy_refusal("ignorefile"))
    return out
