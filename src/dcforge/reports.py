"""Gate reports: a Markdown summary and SARIF 2.1.0 for GitHub code scanning."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from dcforge.policy import SEVERITIES, Verdict

SAMPLE_BANNER = (
    "> **SAMPLE VULNERABILITY DATA — NOT A REAL SCAN.** The public Trivy DB was unreachable "
    "and the target is the local registry, so this gate used dcforge's bundled sample DB. "
    "Nothing here says these images are free of known vulnerabilities."
)


def markdown(verdicts: Sequence[Verdict], meta: Mapping[str, Any]) -> str:
    lines = ["# dcforge gate", ""]
    if meta.get("sample_db"):
        lines += [SAMPLE_BANNER, ""]
    passed = all(v.passed for v in verdicts)
    lines += [
        f"**{'PASSED' if passed else 'BLOCKED'}** — git {meta.get('git_sha', '?')[:12]}, "
        f"Trivy {meta.get('trivy_version', '?')}, DB updated {meta.get('db_updated_at', '?')}, "
        f"blocking: {', '.join(meta.get('blocking_severities', []))}",
        "",
        "| permutation | verdict | " + " | ".join(SEVERITIES) + " | SBOM packages | waived |",
        "|---|---|" + "---|" * len(SEVERITIES) + "---|---|",
    ]
    for v in verdicts:
        counts = " | ".join(str(v.counts.get(s, 0)) for s in SEVERITIES)
        lines.append(
            f"| {v.name} | {'pass' if v.passed else '**blocked**'} | {counts} | "
            f"{v.sbom_packages} | {len(v.waived)} |"
        )
    blocked = [v for v in verdicts if not v.passed]
    if blocked:
        lines += ["", "## Why it blocked", ""]
        for v in blocked:
            lines.append(f"### {v.name}")
            finding_reasons = {f.describe() for f in v.blocking}
            for reason in v.reasons:
                if not any(reason.startswith(d) for d in finding_reasons):
                    lines.append(f"- {reason}")
            if v.blocking:
                lines += [
                    "",
                    "| CVE | severity | package | installed | fixed |",
                    "|---|---|---|---|---|",
                ]
                for f in v.blocking:
                    fixed = f.fixed or "—"
                    row = [f.id, f.severity, f.package, f.installed, fixed]
                    lines.append("| " + " | ".join(row) + " |")
            lines.append("")
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
    return "\n".join(lines) + "\n"


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
            rules.setdefault(
                f.id,
                {
                    "id": f.id,
                    "shortDescription": {"text": f.title or f.id},
                    "properties": {
                        "security-severity": {"CRITICAL": "9.5", "HIGH": "8.0"}.get(
                            f.severity, "5.0"
                        )
                    },
                },
            )
            result: dict[str, Any] = {
                "ruleId": f.id,
                "level": _LEVEL.get(f.severity, "note"),
                "message": {"text": f"{v.name}: {f.describe()}"},
                "locations": [
                    {
                        "physicalLocation": {
                            "artifactLocation": {"uri": sources.get(v.name, "permutations")}
                        }
                    }
                ],
                "partialFingerprints": {"dcforge/v1": f"{v.name}:{f.id}:{f.package}"},
            }
            if waiver is not None:
                result["suppressions"] = [{"kind": "external", "justification": waiver.reason}]
            results.append(result)
    return {
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": "dcforge-gate (Trivy)",
                        "version": str(meta.get("trivy_version", "")),
                        "informationUri": "https://github.com/aquasecurity/trivy",
                        "rules": list(rules.values()),
                    }
                },
                "results": results,
            }
        ],
    }
