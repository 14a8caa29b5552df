"""The single-tool commands' arguments (trivy, syft, cosign, trivy-db-mirror: what the
invoke tasks call, dcforge.cli.tool_commands), and the helper every command's parser uses."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TypeAlias

DEFAULT_TRIVY_DB = "mirror.gcr.io/aquasec/trivy-db:2"

Subparsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


def command(sub: Subparsers, name: str, summary: str, description: str) -> argparse.ArgumentParser:
    """A subcommand: ``summary`` in the command list, ``description`` atop its own --help."""
    made: argparse.ArgumentParser = sub.add_parser(name, help=summary, description=description)
    return made


def add_tool_commands(sub: Subparsers) -> None:
    """The single-tool commands (dcforge.cli.tool_commands) behind the invoke tasks."""
    _add_scanners(sub)
    _add_cosign(sub)
    _add_trivy_db_mirror(sub)


def _add_scanners(sub: Subparsers) -> None:
    trivy = command(
        sub,
        "trivy",
        "scan an OCI tarball with Trivy (JSON report)",
        "Scan an OCI tarball with the pinned Trivy and the gate's vulnerability DB.",
    )
    trivy.add_argument("tarball", type=Path, help="the OCI archive to scan")
    trivy.add_argument(
        "--report",
        type=Path,
        default=None,
        help="where to write the JSON report (default: the tarball's path, .trivy.json)",
    )
    syft = command(
        sub,
        "syft",
        "write an SPDX JSON SBOM for an OCI tarball",
        "Write an SPDX JSON SBOM for an OCI tarball with the pinned syft.",
    )
    syft.add_argument("tarball", type=Path, help="the OCI archive")
    syft.add_argument(
        "--output",
        type=Path,
        default=None,
        help="where to write the SBOM (default: the tarball's path, .spdx.json)",
    )


def _add_cosign(sub: Subparsers) -> None:
    cosign = command(
        sub,
        "cosign",
        "sign or verify an image by digest",
        "Sign or verify an image by digest with cosign, with dcforge's signing settings.",
    )
    cosign.add_argument("action", choices=["sign", "verify"], help="sign or verify")
    cosign.add_argument("reference", help="REPO@sha256:...")


def _add_trivy_db_mirror(sub: Subparsers) -> None:
    mirror = command(
        sub,
        "trivy-db-mirror",
        "copy a Trivy DB into your registry",
        "Copy the Trivy vulnerability DB into your registry (air-gapped runners, rate "
        "limits), then point DCFORGE_TRIVY_DB_REPOSITORY at it.",
    )
    mirror.add_argument("--to", required=True, help="REGISTRY/REPO[:TAG] (tag default: 2)")
    mirror.add_argument(
        "--from",
        dest="source",
        default=DEFAULT_TRIVY_DB,
        metavar="REF",
        help=f"the DB to copy (default: {DEFAULT_TRIVY_DB})",
    )
