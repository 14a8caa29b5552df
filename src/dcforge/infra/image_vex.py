"""An image's OpenVEX document: written next to its Trivy report, and applied by Trivy.

For each image the gate scans, the findings a live waiver covers become the image's
document (:mod:`dcforge.core.vex`), ``dist/reports/<stem>.vex.json`` — the one publish
attests, its sha256 recorded in ``gate.json``. When it says ``not_affected`` about any of
them, Trivy scans the image again with the same statements (``<stem>.trivy-vex.json``,
keyed by package: see :mod:`dcforge.core.vex` for why) and its report hides exactly those,
listing them as suppressed. The verdict is decided from every finding, hidden or not, as
before; what Trivy hid must be what the document says is not affected, and nothing else.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from dcforge.core import manifest as mf
from dcforge.core import policy, vex
from dcforge.core.errors import DcforgeError
from dcforge.core.files import atomic_write_bytes
from dcforge.core.waivers import NOT_AFFECTED, Waiver
from dcforge.infra import log
from dcforge.infra.scan_setup import GateContext
from dcforge.infra.tools.trivy import ScanOptions

# Scans the image again with other options (the VEX), writing over its report.
Rescan = Callable[[ScanOptions], dict[str, Any]]
# dist/reports/<stem>…: the image's document (to publish), the one Trivy's scan applied
SUFFIXES = (".vex.json", ".trivy-vex.json")


@dataclass(frozen=True)
class Vexed:
    """Trivy's report after the VEX, and the image's document: ``{file, sha256}`` (None
    when no waiver applies: OpenVEX has no empty document)."""

    report: dict[str, Any] | None
    document: dict[str, str] | None = None


def _covered(
    report: Any, entry: mf.Entry, gctx: GateContext
) -> list[tuple[policy.Finding, Waiver]]:
    try:
        findings = policy.parse_findings(report)
    except policy.ReportError:  # the verdict says why the report is unusable
        return []
    return vex.covered(findings, gctx.waivers, entry.name, gctx.today)


def hides(report: Any, entry: mf.Entry, gctx: GateContext) -> bool:
    """Whether a waiver says not_affected about a finding of ``report``: then Trivy's
    report must be made with the VEX (a reused report without it will not do)."""
    return any(w.status == NOT_AFFECTED for _, w in _covered(report, entry, gctx))


def apply(
    entry: mf.Entry,
    platform: str,
    digest: str,
    report: dict[str, Any] | None,
    rescan: Rescan | None,
    gctx: GateContext,
    problems: list[str],
) -> Vexed:
    """Write the image's VEX document and, when it hides anything, scan again with it;
    anything that does not add up is one of ``problems`` (it blocks)."""
    stem = entry.report_stem(platform)
    path, scan_doc = (gctx.reports_dir / f"{stem}{suffix}" for suffix in SUFFIXES)
    for old in (path, scan_doc):
        old.unlink(missing_ok=True)  # never an older gate's document beside this verdict
    waived = _covered(report, entry, gctx)
    index = entry.image_digest if entry.multi_platform else ""
    doc = vex.document(
        vex.Image(entry.repository, digest, platform, index),
        waived,
        author=gctx.publisher or entry.repository.rpartition("/")[0],
        timestamp=gctx.now or dt.datetime.combine(gctx.today, dt.time(), dt.UTC),
    )
    if doc is None:
        return Vexed(report)
    data = vex.dumps(doc)
    atomic_write_bytes(path, data)
    recorded = {"file": path.name, "sha256": hashlib.sha256(data).hexdigest()}
    hidden = {(f.id, f.purl) for f, w in waived if w.status == NOT_AFFECTED}
    if not hidden:
        return Vexed(report, recorded)
    if rescan is None:
        problems.append(f"{stem}: its VEX hides findings, but the image was not scanned again")
        return Vexed(report, recorded)
    atomic_write_bytes(scan_doc, vex.dumps(vex.by_package(doc)))
    try:
        filtered = rescan(replace(gctx.db.options, vex=scan_doc))
    except DcforgeError as err:
        problems.append(f"the vulnerability scan with the waivers' VEX failed: {err}")
        return Vexed(None, recorded)
    log.step(stem, f"scanned again with the VEX ({len(hidden)} not_affected finding(s))")
    problems += disagreements(report, filtered, hidden)
    return Vexed(filtered, recorded)


def _keys(findings: Sequence[policy.Finding]) -> Counter[tuple[str, ...]]:
    return Counter((f.id, f.package, f.installed, f.purl, f.severity, f.fixed) for f in findings)


def disagreements(
    before: Mapping[str, Any] | None, after: Mapping[str, Any], hidden: set[tuple[str, str]]
) -> list[str]:
    """Why Trivy's report with the VEX does not agree with the one without it: it must list
    the same findings and hide each of the ``hidden`` (id, purl) pairs. (Whatever else it
    hid blocks in the verdict: no live not_affected waiver covers it.)"""
    try:
        shown, suppressed = policy.parse_findings(after), policy.parse_hidden(after)
        original = [*policy.parse_findings(before), *policy.parse_hidden(before)]
    except policy.ReportError:
        return []  # the verdict says why the report is unusable
    out = []
    if _keys([*shown, *suppressed]) != _keys(original):
        out.append(
            "Trivy's report with the waivers' VEX lists other findings than without it — "
            "the scan is not repeatable; re-run the gate"
        )
    missed = sorted(hidden - {(f.id, f.purl) for f in suppressed})
    if missed:
        named = ", ".join(f"{vuln} in {purl}" for vuln, purl in missed)
        out.append(
            f"Trivy did not hide {named}, which the VEX says is not_affected — its report would "
            "disagree with the verdict (a Trivy change in VEX matching? report it to dcforge)"
        )
    return out
