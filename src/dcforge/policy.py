"""Gate policy (pure): scanner and SBOM results + policy + waivers in, a verdict out.

Fail closed: a missing report, a scanner error, an SBOM failure or an empty SBOM, a DB
problem or a checksum mismatch each block; nothing here ever turns an error into "no
findings".
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema

from dcforge.config import read_yaml
from dcforge.errors import ConfigError

SEVERITIES = ("CRITICAL", "HIGH", "MEDIUM", "LOW", "UNKNOWN")


@dataclass(frozen=True)
class Policy:
    blocking: tuple[str, ...] = ("CRITICAL", "HIGH")
    max_db_age_hours: int = 168

    @classmethod
    def parse(cls, severities: str, max_db_age_hours: int) -> Policy:
        wanted = tuple(s.strip().upper() for s in severities.split(",") if s.strip())
        unknown = [s for s in wanted if s not in SEVERITIES]
        if unknown or not wanted:
            raise ConfigError(
                f"blocking_severities {severities!r}: use a comma list of {', '.join(SEVERITIES)}"
            )
        if max_db_age_hours <= 0:
            raise ConfigError("max_db_age_hours must be positive")
        return cls(wanted, max_db_age_hours)

    def to_json(self) -> dict[str, Any]:
        return {
            "blocking_severities": list(self.blocking),
            "max_db_age_hours": self.max_db_age_hours,
        }


@dataclass(frozen=True)
class Waiver:
    id: str
    reason: str
    expires: dt.date
    permutations: tuple[str, ...] = ()
    packages: tuple[str, ...] = ()

    def matches(self, permutation: str, finding: Finding) -> bool:
        return (
            self.id == finding.id
            and (not self.permutations or permutation in self.permutations)
            and (not self.packages or finding.package in self.packages)
        )

    def expired(self, today: dt.date) -> bool:
        return self.expires < today


@dataclass(frozen=True)
class Finding:
    id: str
    package: str
    installed: str
    fixed: str
    severity: str
    title: str = ""

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

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "passed": self.passed,
            "reasons": self.reasons,
            "counts": self.counts,
            "blocking": [asdict(f) for f in self.blocking],
            "waived": [
                {**asdict(f), "waiver": {"reason": w.reason, "expires": w.expires.isoformat()}}
                for f, w in self.waived
            ],
            "sbom_packages": self.sbom_packages,
        }


class ReportError(ValueError):
    """A scanner report that is not what Trivy writes."""


def parse_findings(report: Any) -> list[Finding]:
    """Findings from a Trivy JSON report; anything malformed is a ReportError."""
    if not isinstance(report, Mapping) or not isinstance(report.get("SchemaVersion"), int):
        raise ReportError("not a Trivy JSON report (no SchemaVersion)")
    results = report.get("Results") or []
    if not isinstance(results, list):
        raise ReportError("Results is not a list")
    out = []
    for result in results:
        if not isinstance(result, Mapping):
            raise ReportError("a Results entry is not an object")
        vulns = result.get("Vulnerabilities") or []
        if not isinstance(vulns, list):
            raise ReportError("Vulnerabilities is not a list")
        for v in vulns:
            if not isinstance(v, Mapping) or not isinstance(v.get("VulnerabilityID"), str):
                raise ReportError("a vulnerability has no VulnerabilityID")
            severity = str(v.get("Severity", "UNKNOWN")).upper()
            out.append(
                Finding(
                    id=v["VulnerabilityID"],
                    package=str(v.get("PkgName", "?")),
                    installed=str(v.get("InstalledVersion", "?")),
                    fixed=str(v.get("FixedVersion", "") or ""),
                    severity=severity if severity in SEVERITIES else "UNKNOWN",
                    title=str(v.get("Title", "") or "")[:200],
                )
            )
    return out


def db_age_problem(metadata: Mapping[str, Any] | None, now: dt.datetime, policy: Policy) -> str:
    """Empty when the DB is present and fresh enough; otherwise the reason it blocks."""
    if not metadata:
        return "the Trivy DB is missing (no metadata.json after download)"
    raw = str(metadata.get("UpdatedAt", ""))
    try:
        updated = dt.datetime.fromisoformat(raw[:19]).replace(tzinfo=dt.UTC)
    except ValueError:
        return f"the Trivy DB metadata has no readable UpdatedAt ({raw!r})"
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
    policy: Policy,
    waivers: Sequence[Waiver],
    today: dt.date,
    problems: Sequence[str] = (),
) -> Verdict:
    """The verdict for one permutation. ``problems`` are failures found before deciding."""
    verdict = Verdict(name=name, reasons=list(problems))
    if report is None:
        verdict.reasons.append("no vulnerability report (the scan did not complete)")
    else:
        try:
            findings = parse_findings(report)
        except ReportError as err:
            verdict.reasons.append(f"unusable vulnerability report: {err}")
            findings = []
        for f in findings:
            verdict.counts[f.severity] = verdict.counts.get(f.severity, 0) + 1
            if f.severity not in policy.blocking:
                continue
            waiver = next((w for w in waivers if w.matches(name, f)), None)
            if waiver is None:
                verdict.blocking.append(f)
                verdict.reasons.append(f.describe())
            elif waiver.expired(today):
                verdict.blocking.append(f)
                verdict.reasons.append(
                    f"{f.describe()} — its waiver expired on {waiver.expires.isoformat()}"
                )
            else:
                verdict.waived.append((f, waiver))
    if sbom_packages is None:
        verdict.reasons.append("no SBOM (syft did not complete)")
    elif sbom_packages == 0:
        verdict.reasons.append("the SBOM lists no packages (syft found nothing to catalogue)")
    else:
        verdict.sbom_packages = sbom_packages
    verdict.passed = not verdict.reasons
    return verdict


def _schema() -> dict[str, Any]:
    text = resources.files("dcforge.resources").joinpath("waivers.schema.json").read_text()
    result: dict[str, Any] = json.loads(text)
    return result


def load_waivers(path: Path) -> list[Waiver]:
    """Waivers from YAML; a missing file means no waivers."""
    if not path.exists():
        return []
    data = read_yaml(path)
    if isinstance(data, dict) and isinstance(data.get("waivers"), list):
        for raw in data["waivers"]:  # YAML reads 2027-01-31 as a date; the schema wants text
            if isinstance(raw, dict) and isinstance(raw.get("expires"), dt.date):
                raw["expires"] = raw["expires"].isoformat()
    errors = list(
        jsonschema.Draft202012Validator(
            _schema(), format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
        ).iter_errors(data)
    )
    if errors:
        err = errors[0]
        where = ".".join(str(p) for p in err.absolute_path) or "(top level)"
        raise ConfigError(f"{path}: field '{where}': {err.message}")
    out = []
    for raw in data.get("waivers") or []:
        out.append(
            Waiver(
                id=raw["id"],
                reason=raw["reason"],
                expires=dt.date.fromisoformat(raw["expires"]),
                permutations=tuple(raw.get("permutations", [])),
                packages=tuple(raw.get("packages", [])),
            )
        )
    return out
