"""Gate reports: a Markdown summary and SARIF 2.1.0 for GitHub code scanning."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

from dcforge.core.coverage import COVERAGE_IDS
from dcforge.core.policy import SEVERITIES, Finding, Verdict
from dcforge.core.waivers import Waiver

SAMPLE_BANNER = (
    "> **SAMPLE VULNERABILITY DATA — NOT A REAL SCAN.** The public Trivy DB was unreachable "
    "and the target is a loopback registry, so this gate used dcforge's bundled sample DB. "
    "Nothing here says these images are free of known vulnerabilities."
)


def markdown(
    verdicts: Sequence[Verdict],
    meta: Mapping[str, Any],
    waivers: Sequence[Waiver] = (),
    today: dt.date | None = None,
) -> str:
    lines = ["# dcforge gate", ""]
    if meta.get("sample_db"):
        lines += [SAMPLE_BANNER, ""]
    lines += _header(verdicts, meta) + _table(verdicts)
    blocked = [v for v in verdicts if not v.passed]
    if blocked:
        lines += ["", "## Why it blocked", ""]
        for v in blocked:
            lines += _why(v)
    lines += _waiver_sections(verdicts, waivers, today)
    unfixed = [(v.name, f) for v in verdicts for f in v.unfixed]
    if unfixed:
        lines += ["", "## Not blocking: no fix yet (policy ignore_unfixed)", ""]
        lines += [f"- {name}: {f.describe()}" for name, f in unfixed]
    return "\n".join(lines) + "\n"


def _header(verdicts: Sequence[Verdict], meta: Mapping[str, Any]) -> list[str]:
    passed = all(v.passed for v in verdicts)
    tools = meta.get("tools") or {}
    versions = ", ".join(f"{name} {t.get('version', '?')}" for name, t in sorted(tools.items()))
    policy_notes = []
    if meta.get("ignore_unfixed"):
        policy_notes.append("ignore_unfixed")
    if meta.get("skip_dirs"):
        policy_notes.append(f"skip_dirs {', '.join(meta['skip_dirs'])}")
    return [
        f"**{'PASSED' if passed else 'BLOCKED'}** — git {str(meta.get('git_sha', '?'))[:12]} "
        f"for {meta.get('registry', '?')}; blocking: "
        f"{', '.join(meta.get('blocking_severities', []))}"
        + (f"; policy: {'; '.join(policy_notes)}" if policy_notes else ""),
        "",
        f"Trivy DB {meta.get('db_repository', '?')} `{meta.get('db_digest', '') or '—'}`, "
        f"updated {meta.get('db_updated_at', '?')}{' (SAMPLE)' * bool(meta.get('sample_db'))}; "
        f"tools: {versions or '?'}",
        "",
    ]


def _table(verdicts: Sequence[Verdict]) -> list[str]:
    lines = [
        "| permutation | verdict | OS | OS packages (Trivy / SBOM) | "
        + " | ".join(SEVERITIES)
        + " | SBOM packages | waived |",
        "|---|---|---|---|" + "---|" * len(SEVERITIES) + "---|---|",
    ]
    for v in verdicts:
        counts = " | ".join(str(v.counts.get(s, 0)) for s in SEVERITIES)
        cov = v.coverage
        declared = "none (declared)" if cov and cov.os_mode == "none" else "**none**"
        os_name = (cov.os or declared) if cov else "?"
        pkgs = f"{cov.os_packages} / {cov.sbom_os_packages}" if cov else "?"
        lines.append(
            f"| {v.name} | {'pass' if v.passed else '**blocked**'} | {os_name} | {pkgs} | "
            f"{counts} | {v.sbom_packages} | {len(v.waived)} |"
        )
    return lines


def _why(v: Verdict) -> list[str]:
    lines = [f"### {v.name}"]
    cves = [f for f in v.blocking if f.id not in COVERAGE_IDS]
    finding_reasons = {f.describe() for f in cves}
    for reason in v.reasons:
        if not any(reason.startswith(d) for d in finding_reasons):
            lines.append(f"- {reason}")
    if cves:
        lines += [
            "",
            "| CVE | severity | package | installed | fixed |",
            "|---|---|---|---|---|",
        ]
        for f in cves:
            row = [f.id, f.severity, f.package, f.installed, f.fixed or "—"]
            lines.append("| " + " | ".join(row) + " |")
    lines.append("")
    return lines


def _waiver_sections(
    verdicts: Sequence[Verdict], waivers: Sequence[Waiver], today: dt.date | None
) -> list[str]:
    lines: list[str] = []
    live = [w for w in waivers if today is None or not w.expired(today)]
    if live:
        lines += [
            "",
            "## Waivers in force",
            "",
            "| id | scope | created | expires | days left | reason |",
            "|---|---|---|---|---|---|",
        ]
        for w in sorted(live, key=lambda w: w.expires):
            left = str(w.days_left(today)) if today else "?"
            created = w.created.isoformat() if w.created else "—"
            lines.append(
                f"| {w.id} | {w.scope()} | {created} | {w.expires} | {left} | {w.reason} |"
            )
    waived = [(v.name, f, w) for v in verdicts for f, w in v.waived]
    if waived:
        lines += [
            "",
            "## Waived findings",
            "",
            "| permutation | CVE | package | expires | reason |",
            "|---|---|---|---|---|",
        ]
        for name, f, w in waived:
            lines.append(
                f"| {name} | {f.id} | {f.package} {f.installed} | {w.expires} | {w.reason} |"
            )
    return lines


_LEVEL = {
    "CRITICAL": "error",
    "HIGH": "error",
    "MEDIUM": "warning",
    "LOW": "note",
    "UNKNOWN": "note",
}


def sarif(
    verdicts: Sequence[Verdict], sources: Mapping[str, str], meta: Mapping[str, Any]
) -> dict[str, Any]:
    """Blocking and waived findings as SARIF; each result points at the permutation's file."""
    rules: dict[str, dict[str, Any]] = {}
    results = []
    for v in verdicts:
        for f, waiver in [(f, None) for f in v.blocking] + [(f, w) for f, w in v.waived]:
            rules.setdefault(f.id, _sarif_rule(f))
            results.append(_sarif_result(v.name, f, waiver, sources.get(v.name, "permutations")))
    driver = {
        "name": "dcforge-gate (Trivy)",
        "version": str(meta.get("trivy_version", "")),
        "informationUri": "https://github.com/aquasecurity/trivy",
        "rules": list(rules.values()),
    }
    return {
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{"tool": {"driver": driver}, "results": results}],
    }


def _sarif_rule(f: Finding) -> dict[str, Any]:
    score = {"CRITICAL": "9.5", "HIGH": "8.0"}.get(f.severity, "5.0")
    return {
        "id": f.id,
        "shortDescription": {"text": f.title or f.id},
        "properties": {"security-severity": score},
    }


def _sarif_result(name: str, f: Finding, waiver: Waiver | None, source: str) -> dict[str, Any]:
    result: dict[str, Any] = {
        "ruleId": f.id,
        "level": "error" if f.id in COVERAGE_IDS else _LEVEL.get(f.severity, "note"),
        "message": {"text": f"{name}: {f.describe()}"},
        "locations": [{"physicalLocation": {"artifactLocation": {"uri": source}}}],
        "partialFingerprints": {"dcforge/v1": f"{name}:{f.id}:{f.package}"},
    }
    if waiver is not None:
        result["suppressions"] = [{"kind": "external", "justification": waiver.reason}]
    return result
