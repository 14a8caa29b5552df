"""Invoke tasks: thin wrappers over ``python -m dcforge``. Logic lives in ``dcforge``.

A task named like a nox session (``plan``, ``build``, ``gate``, ``rescan``, ``publish``,
``verify``, ``rollback``, ``merge``, ``prune``) runs the same dcforge command with the same
options: ``invoke build --permutation X`` is ``nox -s build -- --permutation X`` without the
session's ``scripts/bootstrap`` (``invoke bootstrap``). The earlier names still work:
``buildx`` (an alias of ``build``), ``merge-manifests`` (of ``merge``) and ``retention``
(``prune --registry``, or ``--artifacts``).
"""

from __future__ import annotations

from invoke import Collection, Context, Exit, task  # type: ignore[attr-defined]

from dcforge.cli.main import main as dcforge_main


def _dcforge(*argv: str) -> None:
    code = dcforge_main(list(argv))
    if code:
        raise Exit(code=code)


def _flag(on: bool, flag: str) -> list[str]:
    return [flag] if on else []


def _option(value: str | int, option: str) -> list[str]:
    return [f"{option}={value}"] if value else []


def _each(values: list[str], option: str) -> list[str]:
    return [f"{option}={v}" for v in values]


PERMUTATION = "permutation name (repeatable; default: all)"


@task(iterable=["permutation"], help={"permutation": PERMUTATION})
def plan(
    c: Context, permutation: list[str], json: bool = False, github_output: bool = False
) -> None:
    """Print the resolved permutation matrix (--json for a CI matrix)."""
    _dcforge(
        "plan",
        *_flag(json, "--json"),
        *_flag(github_output, "--github-output"),
        *_each(permutation, "--permutation"),
    )


@task(
    aliases=["buildx"],
    iterable=["permutation", "refresh"],
    help={
        "permutation": PERMUTATION,
        "jobs": "bake sessions and smoke workers at once",
        "prune": "prune Docker state first (default: only in CI)",
        "no_prune": "do not prune, even in CI",
        "no_smoke": "skip smoke commands",
        "platform": "build only this platform (OS/ARCH)",
        "refresh": "rebuild this permutation from scratch (repeatable)",
        "since": "reuse unchanged permutations of a release (last-known-good or git SHA)",
        "dry_run": "print the bake (and prune) commands, build nothing",
        "check_reproducible": "build twice with the cache bypassed; every digest must match",
    },
)
def build(
    c: Context,
    permutation: list[str],
    refresh: list[str],
    jobs: int = 0,
    prune: bool = False,
    no_prune: bool = False,
    no_smoke: bool = False,
    platform: str = "",
    since: str = "",
    dry_run: bool = False,
    check_reproducible: bool = False,
) -> None:
    """Build permutations (all when none is named) into dist/ + dist/manifest.json."""
    if prune and no_prune:
        raise Exit("say --prune or --no-prune, not both", code=2)
    _dcforge(
        "build",
        *_each(permutation, "--permutation"),
        *_option(jobs, "--jobs"),
        *_flag(prune, "--prune"),
        *_flag(no_prune, "--no-prune"),
        *_flag(no_smoke, "--no-smoke"),
        *_option(platform, "--platform"),
        *_each(refresh, "--refresh"),
        *_option(since, "--since"),
        *_flag(dry_run, "--dry-run"),
        *_flag(check_reproducible, "--check-reproducible"),
    )


@task(iterable=["permutation"], help={"permutation": PERMUTATION})
def reproduce(c: Context, permutation: list[str]) -> None:
    """Build twice with the build cache bypassed; every digest must match (which files don't)."""
    _dcforge("build", "--check-reproducible", *_each(permutation, "--permutation"))


@task(
    help={
        "self_test": "instead, prove a canary with planted CVEs is blocked",
        "no_scan_cache": "scan every image again",
    }
)
def gate(c: Context, self_test: bool = False, no_scan_cache: bool = False) -> None:
    """Scan + SBOM every permutation in dist/manifest.json; block per policy (--self-test)."""
    _dcforge("gate", *_flag(self_test, "--self-test"), *_flag(no_scan_cache, "--no-scan-cache"))


@task(
    help={
        "github_output": "also write affected=NAME,… to $GITHUB_OUTPUT",
        "dispatch_refresh": "on the default branch, start this workflow with the affected ones",
        "no_scan_cache": "scan every live image again",
    }
)
def rescan(
    c: Context, github_output: bool = False, dispatch_refresh: str = "", no_scan_cache: bool = False
) -> None:
    """Scan what is live with today's DB; non-zero when a rebuild could fix a new finding."""
    _dcforge(
        "rescan",
        *_flag(github_output, "--github-output"),
        *_option(dispatch_refresh, "--dispatch-refresh"),
        *_flag(no_scan_cache, "--no-scan-cache"),
    )


@task(help={"allow_dirty": "publish a build from a dirty tree (the provenance says so)"})
def publish(c: Context, allow_dirty: bool = False) -> None:
    """Push by digest, sign, attest, store the release record, then move floating tags."""
    _dcforge("publish", *_flag(allow_dirty, "--allow-dirty"))


@task(help={"sha": "git SHA of the release (default: last-known-good)"})
def verify(c: Context, sha: str = "") -> None:
    """Verify a published release (default: last-known-good)."""
    _dcforge("verify", *_option(sha, "--sha"))


@task(
    help={
        "reference": "the image: registry/repo:tag or @sha256:…",
        "platform": "the platform whose image to check (default: this machine's)",
        "key": "the publisher's cosign public key (a file)",
        "certificate_identity": "keyless: the identity that must have signed",
        "certificate_oidc_issuer": "keyless: its issuer (default: GitHub Actions')",
        "policy": "then print an admission policy: kyverno or sigstore",
        "registry": "the namespace published to (records in NAMESPACE/dcforge-releases)",
        "vex_out": "write the image's OpenVEX document to this file",
    }
)
def verify_image(
    c: Context,
    reference: str,
    platform: str = "",
    key: str = "",
    certificate_identity: str = "",
    certificate_oidc_issuer: str = "",
    policy: str = "",
    registry: str = "",
    vex_out: str = "",
) -> None:
    """Check a published image as someone who pulls it (signatures, provenance, SBOM, VEX)."""
    _dcforge(
        "verify-image",
        reference,
        *_option(platform, "--platform"),
        *_option(key, "--key"),
        *_option(certificate_identity, "--certificate-identity"),
        *_option(certificate_oidc_issuer, "--certificate-oidc-issuer"),
        *_option(policy, "--policy"),
        *_option(registry, "--registry"),
        *_option(vex_out, "--vex-out"),
    )


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
    aliases=["merge-manifests"],
    iterable=["part"],
    help={"part": "a directory holding a partial manifest.json and its tarballs (repeatable)"},
)
def merge(c: Context, part: list[str]) -> None:
    """Merge partial manifests from CI matrix jobs into dist/manifest.json (validated)."""
    _dcforge("merge-manifests", *part)


PRUNE_HELP = {
    "runner": "this runner's unused Docker state and build cache",
    "registry": "retention of old image versions",
    "artifacts": "old workflow artifacts",
    "yes": "really delete (default: print the plan)",
    "yes_on_default_branch": "delete only when GITHUB_REF is the default branch",
    "now": "the policy's clock (ISO)",
}


@task(help=PRUNE_HELP)
def prune(
    c: Context,
    runner: bool = False,
    registry: bool = False,
    artifacts: bool = False,
    yes: bool = False,
    yes_on_default_branch: bool = False,
    now: str = "",
) -> None:
    """Runner hygiene (--runner); retention (--registry, --artifacts; deletes only with --yes)."""
    _dcforge(
        "prune",
        *_flag(runner, "--runner"),
        *_flag(registry, "--registry"),
        *_flag(artifacts, "--artifacts"),
        *_flag(yes, "--yes"),
        *_flag(yes_on_default_branch, "--yes-on-default-branch"),
        *_option(now, "--now"),
    )


@task(help={k: PRUNE_HELP[k] for k in ("artifacts", "yes", "now")})
def retention(c: Context, artifacts: bool = False, yes: bool = False, now: str = "") -> None:
    """The earlier name of prune --registry (or --artifacts): plan, or --yes delete."""
    prune(c, registry=not artifacts, artifacts=artifacts, yes=yes, now=now)


@task(
    help={
        "directory": "where to write it (default: the current directory)",
        "force": "replace the files that exist (each is named first)",
    }
)
def init(c: Context, directory: str = "", force: bool = False) -> None:
    """Scaffold an images repository: permutations, noxfile, tasks, settings, workflow."""
    _dcforge("init", *([directory] if directory else []), *_flag(force, "--force"))


@task
def bootstrap(c: Context, stop: bool = False) -> None:
    """Start (or --stop) the local stack: dockerd, registry, tools."""
    c.run("scripts/bootstrap --stop" if stop else "scripts/bootstrap", pty=False)


namespace = Collection(
    plan,
    build,
    reproduce,
    gate,
    rescan,
    publish,
    verify,
    verify_image,
    rollback,
    merge,
    prune,
    pin,
    releases,
    retention,
    trivy,
    syft,
    cosign,
    trivy_db_mirror,
    bootstrap,
    init,
)
