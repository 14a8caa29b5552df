"""Verify stage: a release in the registry is what its signed record says it is.

For the release (default: ``last-known-good``): the pin and the record are signed and name
the release asked for; every floating tag resolves to the digest the record names; each
image's signature verifies with the configured key/identity; its SBOM and SLSA provenance
attestations verify and name that digest as their subject. The checks themselves live in
:mod:`dcforge.infra.release_checks`, which publish also runs before it moves
``last-known-good``.
"""

from __future__ import annotations

from rich.table import Table

from dcforge.core import release
from dcforge.core.errors import RollbackRefused, VerifyFailed
from dcforge.infra import log
from dcforge.infra.context import Context

__all__ = ["VerifyFailed", "run"]


def run(ctx: Context, sha: str = "", check_tags: bool = True) -> release.Release:
    rel = ctx.releases
    target = sha or release.LAST_KNOWN_GOOD
    with log.group(f"verify {rel.repository} {target}"):
        try:
            digest, found = rel.fetch(target)
        except RollbackRefused as err:  # an unknown or ambiguous SHA: a verify failure here
            raise VerifyFailed(str(err)) from None
        log.info(f"release record {found.git_sha[:12]} {digest[:19]}: signature ok")
        problems = rel.verify_release(found, check_tags)
    if problems:
        raise VerifyFailed(
            f"{len(problems)} problem(s) in release {found.git_sha[:12]}: {problems[0]}"
        )
    _summary(found)
    log.info(f"verified release {found.git_sha[:12]}: {len(found.images)} image(s)")
    return found


def _summary(rel: release.Release) -> None:
    sample = " (SAMPLE vulnerability data)" if rel.gate.get("sample_db") else ""
    table = Table(title=f"release {rel.git_sha[:12]}: verified{sample}")
    for col in ("permutation", "digest", "vulnerabilities", "signed", "attested", "tags"):
        table.add_column(col)
    counts = rel.gate.get("vulnerabilities") or {}
    for image in rel.images:
        found = counts.get(image.name) or {}
        vulns = ", ".join(f"{k} {v}" for k, v in sorted(found.items())) or "none found"
        tags = ", ".join(image.floating_tags) + " + " + image.immutable_tag
        attested = "SBOM + SLSA v1" + " + OpenVEX" * bool(image.vex)
        table.add_row(image.name, image.digest[:19], vulns, "verified", attested, tags)
    log.table(table)
