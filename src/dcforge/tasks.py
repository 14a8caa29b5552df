"""Invoke tasks: one thin wrapper per external tool. Logic lives in ``dcforge``."""

from __future__ import annotations

from invoke import Collection, Context, Exit, task  # type: ignore[attr-defined]

from dcforge.__main__ import main as dcforge_main


def _dcforge(*argv: str) -> None:
    code = dcforge_main(list(argv))
    if code:
        raise Exit(code=code)


@task(iterable=["permutation"], help={"permutation": "permutation name (repeatable)"})
def buildx(c: Context, permutation: list[str], jobs: int = 0) -> None:
    """Build permutations with docker buildx (all when none is named)."""
    args = [f"--permutation={p}" for p in permutation]
    _dcforge("build", *args, *([f"--jobs={jobs}"] if jobs else []))


@task(help={"tarball": "OCI archive to scan", "report": "where to write the JSON report"})
def trivy(c: Context, tarball: str, report: str = "") -> None:
    """Scan an OCI tarball with the pinned Trivy."""
    _dcforge("trivy", tarball, *(["--report", report] if report else []))


@task(help={"tarball": "OCI archive", "output": "SPDX JSON path"})
def syft(c: Context, tarball: str, output: str = "") -> None:
    """Write an SPDX JSON SBOM for an OCI tarball with the pinned syft."""
    _dcforge("syft", tarball, *(["--output", output] if output else []))


@task(help={"sign": "REPO@sha256:… to sign", "verify": "REPO@sha256:… to verify"})
def cosign(c: Context, sign: str = "", verify: str = "") -> None:
    """Sign or verify an image by digest with cosign (key from COSIGN_KEY or .dcforge/cosign)."""
    if bool(sign) == bool(verify):
        raise Exit("say --sign REF@DIGEST or --verify REF@DIGEST", code=2)
    _dcforge("cosign", "sign" if sign else "verify", sign or verify)


@task(name="trivy-db-mirror", help={"to": "REGISTRY/REPO to copy the Trivy DB into"})
def trivy_db_mirror(c: Context, to: str, source: str = "") -> None:
    """Copy the public Trivy DB into your registry (air-gapped runners, rate limits)."""
    _dcforge("trivy-db-mirror", "--to", to, *(["--from", source] if source else []))


@task(
    help={
        "sha": "git SHA (short or full) or record digest",
        "last_known_good": "the pin",
        "dry_run": "print the plan, change nothing",
    }
)
def rollback(
    c: Context, sha: str = "", last_known_good: bool = False, dry_run: bool = False
) -> None:
    """Move floating tags back to a verified earlier release (no rebuild, tags only)."""
    if bool(sha) == last_known_good:
        raise Exit("say --sha GIT_SHA or --last-known-good", code=2)
    target = ["--last-known-good"] if last_known_good else ["--sha", sha]
    _dcforge(*(["--dry-run"] if dry_run else []), "rollback", *target)


@task(help={"sha": "git SHA of the release to pin as last-known-good"})
def pin(c: Context, sha: str) -> None:
    """Pin a verified release as last-known-good."""
    _dcforge("pin", "--sha", sha)


@task
def releases(c: Context, json: bool = False) -> None:
    """List releases newest first: git SHA, date, permutations, pinned/current."""
    _dcforge("releases", *(["--json"] if json else []))


@task(
    name="merge-manifests",
    iterable=["part"],
    help={"part": "a directory holding a partial manifest.json and its tarballs (repeatable)"},
)
def merge_manifests(c: Context, part: list[str]) -> None:
    """Merge partial manifests from CI matrix jobs into dist/manifest.json (validated)."""
    _dcforge("merge-manifests", *part)


@task(
    help={
        "artifacts": "workflow artifacts instead of image versions",
        "yes": "really delete (default: print the plan)",
        "now": "the policy's clock (ISO)",
    }
)
def retention(c: Context, artifacts: bool = False, yes: bool = False, now: str = "") -> None:
    """Plan (or --yes delete) old image versions, or --artifacts old workflow artifacts."""
    args = ["--artifacts" if artifacts else "--registry", *(["--yes"] if yes else [])]
    _dcforge("prune", *args, *(["--now", now] if now else []))


@task
def bootstrap(c: Context, stop: bool = False) -> None:
    """Start (or --stop) the local stack: dockerd, registry, tools."""
    c.run("scripts/bootstrap --stop" if stop else "scripts/bootstrap", pty=False)


namespace = Collection(
    buildx,
    trivy,
    syft,
    cosign,
    trivy_db_mirror,
    merge_manifests,
    rollback,
    pin,
    releases,
    retention,
    bootstrap,
)
