"""What ``python -m dcforge`` accepts and says about it: the argument parser and its help.

One small function per command group; :mod:`dcforge.cli.main` does what the commands ask.
"""

from __future__ import annotations

import argparse
from importlib import metadata
from pathlib import Path

from dcforge.cli.tool_parser import Subparsers, add_tool_commands
from dcforge.cli.tool_parser import command as _command

DESCRIPTION = (
    "dcforge builds devcontainer images from declarative permutation files, scans and gates "
    "them, publishes them signed and attested by digest, verifies a release and rolls back "
    "to an earlier one. Most people run it through nox sessions and invoke tasks "
    "(README.md, 'Commands'); every one of those calls a command below."
)

EPILOG = (
    "Run 'dcforge COMMAND --help' for a command's options. Exit status: 0 on success; on a "
    "failure one line names what is wrong, and 1-11 say which kind of failure it is; 130 "
    "when interrupted (docs/exit-codes.md)."
)


def release_target(value: str) -> str:
    """``--sha``/``--since``: a git SHA (4 to 40 hex digits, any case), the ``sha256:`` digest
    of a release record, or last-known-good — anything else is a usage error before any
    registry is asked."""
    from dcforge.core import release

    lowered = value.lower() if value.lower() != release.LAST_KNOWN_GOOD else value  # hex: any case
    if not release.names_a_release(lowered):
        raise argparse.ArgumentTypeError(
            f"'{value}' names no release: give {release.LAST_KNOWN_GOOD}, a git SHA (4 to 40 "
            "hex digits) or a sha256: record digest"
        )
    return lowered


def release_target_or_pinned(value: str) -> str:
    """``verify --sha``: as :func:`release_target`, or empty for last-known-good."""
    return release_target(value) if value else ""


def version() -> str:
    """The installed distribution's version (``unknown`` when run from an uninstalled tree)."""
    try:
        return metadata.version("dcforge")
    except metadata.PackageNotFoundError:
        return "unknown"


def parser() -> argparse.ArgumentParser:
    """The whole command line: global options, then one subcommand per task."""
    top = argparse.ArgumentParser(prog="dcforge", description=DESCRIPTION, epilog=EPILOG)
    _add_global_options(top)
    sub = top.add_subparsers(dest="command", required=True, metavar="COMMAND", title="commands")
    for add in (
        _add_plan,
        _add_build,
        _add_gate,
        _add_rescan,
        _add_publish,
        _add_verify,
        _add_verify_image,
        _add_releases_commands,
        _add_prune,
        _add_merge_manifests,
        _add_lint_workflows,
        _add_host_plan,
        add_tool_commands,
        _add_init,
        _add_signing_identity,
    ):
        add(sub)
    return top


def _add_global_options(top: argparse.ArgumentParser) -> None:
    top.add_argument("--version", action="version", version=f"dcforge {version()}")
    top.add_argument(
        "--dry-run",
        action="store_true",
        help="print the commands that would change something instead of running them "
        "(read-only lookups still run)",
    )
    top.add_argument(
        "--verbose",
        "-v",
        action="store_true",
        help="echo every tool command and its stderr, and an error's details",
    )
    top.add_argument("--debug", action="store_true", help="on an error, show the Python traceback")
    top.add_argument(
        "--root",
        type=Path,
        default=None,
        help="where to look for the project: the nearest pyproject.toml at or above it "
        "(default: the current directory)",
    )


def _permutation_option(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--permutation",
        action="append",
        default=[],
        metavar="NAME",
        help="only this permutation (repeatable, or comma-separated; default: all)",
    )


def _add_plan(sub: Subparsers) -> None:
    plan = _command(
        sub,
        "plan",
        "print the resolved permutation matrix",
        "Print each permutation with its repository, floating tags and base image, "
        "or the matrix as JSON for a CI job matrix. Builds nothing.",
    )
    plan.add_argument(
        "--json", action="store_true", help='print {"include": [...]} (a CI job matrix)'
    )
    plan.add_argument(
        "--github-output", action="store_true", help="also write matrix=<json> to $GITHUB_OUTPUT"
    )
    _permutation_option(plan)


def _add_build(sub: Subparsers) -> None:
    build = _command(
        sub,
        "build",
        "build permutations and write dist/manifest.json",
        "Build the permutations with docker buildx bake into OCI tarballs in dist/, "
        "smoke-test them and write dist/manifest.json.",
    )
    _permutation_option(build)
    build.add_argument(
        "--jobs",
        type=_bake_sessions,
        default=0,
        metavar="N",
        help="split the build over N bake sessions and verify/smoke-test N images at once "
        "(default: the 'jobs' setting; when that is unset, one bake session, and as many "
        "verify/smoke workers as CPU cores)",
    )
    prune_flags = build.add_mutually_exclusive_group()
    prune_flags.add_argument(
        "--prune",
        dest="prune",
        action="store_true",
        default=None,
        help="prune Docker state on this runner first (default: only when CI is set)",
    )
    prune_flags.add_argument(
        "--no-prune", dest="prune", action="store_false", help="do not prune, even in CI"
    )
    build.add_argument("--no-smoke", action="store_true", help="skip smoke commands")
    _add_build_selection(build)
    build.add_argument(
        "--dry-run",
        dest="sub_dry_run",
        action="store_true",
        help="print the bake (and prune) commands, build nothing, write no manifest",
    )


def _add_build_selection(build: argparse.ArgumentParser) -> None:
    """What of each permutation a build builds: a platform part, a refresh, a reuse."""
    build.add_argument(
        "--platform",
        type=_platform,
        default="",
        metavar="OS/ARCH",
        help="build only this platform of the permutations that declare it (a platform "
        "part: merge-manifests joins the parts, built on native runners, into one index)",
    )
    build.add_argument(
        "--refresh",
        action="append",
        default=[],
        metavar="NAME",
        help="rebuild these permutations from scratch (build cache bypassed, never reused by "
        "--since) even though their inputs are unchanged: a fix in the package mirror",
    )
    build.add_argument(
        "--check-reproducible",
        action="store_true",
        help="build twice, the build cache bypassed each time, and require every permutation "
        "and platform's digest to be the same; names the layers and files that differ "
        "(dist/reports/reproduce.json)",
    )
    build.add_argument(
        "--since",
        type=_release_name,
        default="",
        metavar="REF",
        help="reuse unchanged permutations of a release (last-known-good or git SHA)",
    )


# The build's values checked as the command line is parsed: a wrong one is a usage error
# (status 2) before anything runs — not a registry login, or retries, first.


def _bake_sessions(value: str) -> int:
    """``--jobs``: a whole number, 0 or more (0: the ``jobs`` setting decides)."""
    try:
        jobs = int(value)
    except ValueError:
        jobs = -1
    if jobs < 0:
        raise argparse.ArgumentTypeError(
            f"'{value}' is not a number of bake sessions (0 or more; 0: the 'jobs' setting)"
        )
    return jobs


def _platform(value: str) -> str:
    """``--platform``: empty (every platform) or one a permutation file may declare."""
    if not value:
        return value
    from dcforge.core import permfile

    known = permfile.platforms()
    if value not in known:
        raise argparse.ArgumentTypeError(
            f"'{value}' is not a platform a permutation can build ({', '.join(known)})"
        )
    return value


def _release_name(value: str) -> str:
    """``--since``: empty (no reuse), or a release as :func:`release_target` reads it."""
    return release_target(value) if value else ""


def _add_gate(sub: Subparsers) -> None:
    gate = _command(
        sub,
        "gate",
        "scan, SBOM and decide; writes dist/gate.json + reports",
        "Scan every permutation in dist/manifest.json with Trivy, write its SBOM with syft, "
        "apply the policy and waivers, and write dist/gate.json and dist/reports/.",
    )
    gate.add_argument(
        "--self-test",
        action="store_true",
        help="instead, prove a canary with planted CVEs is blocked",
    )
    gate.add_argument(
        "--no-scan-cache",
        action="store_true",
        help="scan every image again, even one scanned before with this DB, policy and scanners",
    )


def _add_rescan(sub: Subparsers) -> None:
    rescan = _command(
        sub,
        "rescan",
        "scan what is live with today's DB (CVE drift); writes dist/rescan/",
        "Scan every live image (last-known-good's, per platform, and whatever its floating "
        "tags serve) by digest with today's vulnerability DB; exit non-zero when one has a "
        "finding the policy blocks that a rebuild can fix. Writes dist/rescan/summary.md, "
        "rescan.sarif and rescan.json (the affected permutations).",
    )
    rescan.add_argument(
        "--github-output",
        action="store_true",
        help="also write affected=NAME,… to $GITHUB_OUTPUT",
    )
    rescan.add_argument(
        "--dispatch-refresh",
        default="",
        metavar="WORKFLOW",
        help="on the default branch, when permutations are affected, start WORKFLOW (e.g. "
        "build-publish.yml) with refresh=<affected> (GITHUB_TOKEN with actions: write)",
    )
    rescan.add_argument(
        "--no-scan-cache",
        action="store_true",
        help="scan every live image again, even one scanned before with this DB, policy and "
        "Trivy (by a gate or a rescan)",
    )


def _add_publish(sub: Subparsers) -> None:
    publish = _command(
        sub,
        "publish",
        "push by digest, sign, attest, release record, move tags",
        "Publish what the gate passed: push by digest, sign, attach SBOM and provenance "
        "attestations, store a signed release record, then move the floating tags, verify "
        "them and point last-known-good at this release.",
    )
    publish.add_argument(
        "--allow-dirty",
        action="store_true",
        help="publish a build from a dirty tree (refused otherwise); the provenance says so",
    )


def _add_verify(sub: Subparsers) -> None:
    verify = _command(
        sub,
        "verify",
        "check a published release end to end",
        "Check a published release: its record, tags, signatures and attestations.",
    )
    verify.add_argument(
        "--sha",
        default="",
        type=release_target_or_pinned,
        help="git SHA of the release (default: last-known-good)",
    )


def _add_verify_image(sub: Subparsers) -> None:
    check = _command(
        sub,
        "verify-image",
        "check a published image as someone who pulls it",
        "Check one published image with no checkout: the signatures, the SLSA provenance "
        "and the signed release record of its commit, the SBOM of the platform you pull, and "
        "its OpenVEX. Without --key or --certificate-identity, the signing settings say "
        "what must have signed it.",
    )
    check.add_argument("reference", metavar="REF", help="the image: registry/repo:tag or @sha256:…")
    check.add_argument(
        "--platform",
        type=_platform,
        default="",
        help="the platform whose image to check (default: this machine's, as a pull gets)",
    )
    _identity_options(check)
    check.add_argument(
        "--registry",
        default="",
        metavar="NAMESPACE",
        help="the registry namespace dcforge published to: its records are in "
        "NAMESPACE/dcforge-releases (default: REF's repository without its last part)",
    )
    check.add_argument(
        "--vex-out",
        default="",
        metavar="FILE",
        help="write the image's OpenVEX document (the one its release names) to FILE, for "
        "trivy image --vex FILE",
    )
    check.add_argument(
        "--policy",
        choices=["kyverno", "sigstore"],
        default="",
        help="after verifying, print an admission policy that enforces the same checks",
    )


def _identity_options(check: argparse.ArgumentParser) -> None:
    """Who must have signed: a key, or a keyless identity (and the run that signed)."""
    check.add_argument("--key", default="", help="the publisher's cosign public key (a file)")
    check.add_argument(
        "--certificate-identity",
        default="",
        help="keyless: the identity that must have signed (e.g. the workflow's URL@ref)",
    )
    check.add_argument(
        "--certificate-oidc-issuer",
        default="",
        help="keyless: the identity's issuer (default: GitHub Actions')",
    )
    check.add_argument(
        "--certificate-github-workflow-repository",
        default="",
        metavar="OWNER/NAME",
        help="keyless: the repository whose run signed (required where the identity is a "
        "reusable workflow: every repository calling it signs as it)",
    )
    check.add_argument(
        "--certificate-github-workflow-ref",
        default="",
        metavar="REF",
        help="keyless: the git ref of the run that signed (e.g. refs/heads/main)",
    )


def _add_releases_commands(sub: Subparsers) -> None:
    """rollback, pin and releases: they work on the signed release records."""
    rollback = _command(
        sub,
        "rollback",
        "move floating tags back to a verified release",
        "Move every floating tag back to an earlier, verified release. No rebuild: "
        "only tags move, and an audit record is written.",
    )
    which = rollback.add_mutually_exclusive_group(required=True)
    which.add_argument(
        "--sha",
        type=release_target,
        help="git SHA (short or full) or sha256: digest of its record",
    )
    which.add_argument("--last-known-good", action="store_true", help="the pinned release")
    rollback.add_argument(
        "--dry-run", dest="sub_dry_run", action="store_true", help="print the plan, change nothing"
    )
    pin = _command(
        sub,
        "pin",
        "point last-known-good at a verified release",
        "Point last-known-good at a release after verifying its record and images.",
    )
    pin.add_argument(
        "--sha", required=True, type=release_target, help="git SHA (short or full) of the release"
    )
    releases = _command(
        sub,
        "releases",
        "list releases, newest first",
        "List the releases newest first: git SHA, date, permutations, pinned and current.",
    )
    releases.add_argument("--json", action="store_true", help="also print the list as JSON")


def _add_prune(sub: Subparsers) -> None:
    prune = _command(
        sub,
        "prune",
        "runner hygiene, registry retention, old workflow artifacts",
        "Prune Docker state on this runner (--runner), plan or delete old image versions "
        "(--registry) and old workflow artifacts (--artifacts). Nothing in the registry or "
        "on GitHub is deleted without --yes.",
    )
    prune.add_argument("--runner", action="store_true", help="prune Docker state on this runner")
    prune.add_argument("--registry", action="store_true", help="retention of old image versions")
    prune.add_argument("--artifacts", action="store_true", help="old workflow artifacts")
    confirm = prune.add_mutually_exclusive_group()
    confirm.add_argument(
        "--yes",
        action="store_true",
        help="really delete old versions/artifacts (default: print the plan only)",
    )
    confirm.add_argument(
        "--yes-on-default-branch",
        action="store_true",
        help="delete only when GITHUB_REF is the default branch (else plan only)",
    )
    prune.add_argument(
        "--now", default="", metavar="ISO", help="the policy's clock (ISO time; default: now)"
    )


def _add_merge_manifests(sub: Subparsers) -> None:
    merge = _command(
        sub,
        "merge-manifests",
        "merge partial manifests into dist/",
        "Merge the partial manifests (and tarballs) of CI matrix jobs into one validated "
        "dist/manifest.json.",
    )
    merge.add_argument(
        "parts", nargs="+", type=Path, metavar="DIR", help="directories with manifest.json"
    )


def _add_host_plan(sub: Subparsers) -> None:
    host = _command(
        sub,
        "host-plan",
        "what scripts/bootstrap installs and starts here (shell assignments)",
        "Read this machine's facts (os-release, tools, binfmt handlers, the engine) and the "
        "project's settings, and print what scripts/bootstrap and scripts/base-images act on, "
        "as shell assignments. Changes nothing.",
    )
    host.add_argument(
        "--settings-only", action="store_true", help="only the settings the scripts read"
    )
    host.add_argument(
        "--fetch",
        action="append",
        default=[],
        metavar="TOOL",
        help="instead: download TOOL's pinned release binary (toolchain.toml [upstream],"
        " sha256 checked) into /usr/local/bin (repeatable)",
    )
    host.add_argument(
        "--node-tools",
        action="store_true",
        help="instead: install the pinned Dev Containers CLI under the state folder, with "
        "Node's own build when this machine has no Node.js 20 (npm registry, integrity checked)",
    )


def _add_init(sub: Subparsers) -> None:
    init = _command(
        sub,
        "init",
        "scaffold an images repository here (or in DIR)",
        "Write a new images repository: an example permutation in each form (Dockerfile; "
        "devcontainer.json with a local Feature), noxfile.py and tasks.py that run dcforge's "
        "sessions and tasks, pyproject.toml with [tool.dcforge], waivers.yaml, trivy.yaml, "
        "requirements.txt (dcforge pinned), SECRETS.md, .gitignore, Dependabot and a workflow "
        "calling dcforge's reusable workflow. Writes nothing when any of them exists.",
    )
    init.add_argument(
        "directory",
        nargs="?",
        type=Path,
        default=Path(),
        metavar="DIR",
        help="where to write it (default: the current directory; made if missing)",
    )
    init.add_argument(
        "--force", action="store_true", help="replace the files that exist (each is named first)"
    )


def _add_signing_identity(sub: Subparsers) -> None:
    who = _command(
        sub,
        "signing-identity",
        "print who this GitHub Actions job signs as, keyless (from its OIDC token)",
        "Read this job's OIDC token (it needs `id-token: write`) and print the certificate "
        "identity keyless signing gets (the workflow at its ref: for a reusable workflow, "
        "that workflow, not its caller), with the run's repository and ref, as the "
        "DCFORGE_COSIGN_IDENTITY, DCFORGE_COSIGN_REPOSITORY and DCFORGE_COSIGN_REF that "
        "publish and verify then require.",
    )
    who.add_argument(
        "--github-env",
        action="store_true",
        help="also append them to $GITHUB_ENV, for the job's later steps",
    )


def _add_lint_workflows(sub: Subparsers) -> None:
    lint = _command(
        sub,
        "lint-workflows",
        "actionlint + zizmor + dcforge's workflow rules",
        "Check GitHub Actions workflows with actionlint, zizmor (.github/zizmor.yml if "
        "present) and dcforge's own rules.",
    )
    lint.add_argument("directory", nargs="?", type=Path, help="default: .github/workflows")
    lint.add_argument(
        "--scaffold",
        action="store_true",
        help="also the workflow `dcforge init` writes, with an example owner and commit",
    )
