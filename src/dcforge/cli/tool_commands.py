"""The single-tool commands behind ``invoke trivy|syft|cosign`` (thin, for people and CI)."""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from dcforge.core.errors import ConfigError, DcforgeError, ToolError
from dcforge.infra import log, vulndb
from dcforge.infra.context import Context
from dcforge.infra.tools import syft, trivy

Handler = Callable[[argparse.Namespace, Context], int]


def _existing(path: Path) -> Path:
    if not path.is_file():
        raise ConfigError(f"{path}: no such file")
    return path


def _severity_counts(report: dict[str, Any]) -> dict[str, int]:
    """Findings per severity in a Trivy JSON report."""
    counts: dict[str, int] = {}
    for result in report.get("Results") or []:
        for vuln in result.get("Vulnerabilities") or []:
            severity = vuln.get("Severity", "UNKNOWN")
            counts[severity] = counts.get(severity, 0) + 1
    return counts


def _trivy(args: argparse.Namespace, ctx: Context) -> int:
    tarball = _existing(args.tarball)
    report = args.report or tarball.with_suffix(".trivy.json")
    with tempfile.TemporaryDirectory(prefix="dcforge-scan-") as tmp:
        layout = trivy.unpack_oci_archive(tarball, Path(tmp) / "layout")
        # The same DB the gate uses (and its loud local-sample fallback).
        db = vulndb.prepare_db(ctx.settings, ctx.registry, Path(tmp), datetime.now(UTC))
        if db.problem:
            raise ToolError(db.problem)
        data = trivy.scan(ctx.runner, layout, report, db.options)
    counts = _severity_counts(data)
    summary = ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "0 findings"
    if db.sample:
        summary += " (SAMPLE vulnerability data, not a real scan)"
    log.info(f"{tarball.name}: {summary} (report: {report})")
    return 0


def _syft(args: argparse.Namespace, ctx: Context) -> int:
    tarball = _existing(args.tarball)
    out = args.output or tarball.with_suffix(".spdx.json")
    doc = syft.sbom(ctx.runner, tarball, out)
    log.info(f"{tarball.name}: {len(syft.package_names(doc))} packages (SBOM: {out})")
    return 0


def _cosign(args: argparse.Namespace, ctx: Context) -> int:
    signer = ctx.cosign
    if args.action == "sign":
        signer.sign(args.reference)
        log.info(f"signed {args.reference}")
    else:
        signer.verify(args.reference)
        log.info(f"verified {args.reference}")
    return 0


def _trivy_db_mirror(args: argparse.Namespace, ctx: Context) -> int:
    reg = ctx.registry
    target = args.to if ":" in args.to.rsplit("/", 1)[-1] else f"{args.to}:2"
    reg.copy(args.source, target)
    digest = reg.resolve(target)
    log.info(
        f"mirrored {args.source} → {target} ({digest}); set DCFORGE_TRIVY_DB_REPOSITORY={target}"
    )
    return 0


COMMANDS: dict[str, Handler] = {
    "trivy": _trivy,
    "syft": _syft,
    "cosign": _cosign,
    "trivy-db-mirror": _trivy_db_mirror,
}


def run(args: argparse.Namespace, ctx: Context) -> int:
    handler = COMMANDS.get(args.command)
    if handler is None:
        raise DcforgeError(f"unknown command {args.command}")
    return handler(args, ctx)
