"""Command line: ``python -m dcforge <command>``. The only place that prints errors and exits."""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from dcforge import log, settings
from dcforge.errors import DcforgeError
from dcforge.runner import Runner

DEFAULT_TRIVY_DB = "mirror.gcr.io/aquasec/trivy-db:2"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dcforge", description=__doc__)
    parser.add_argument("--dry-run", action="store_true", help="print commands, change nothing")
    parser.add_argument(
        "--verbose", "-v", action="store_true", help="echo every command and output"
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    parser.add_argument("--root", type=Path, default=None, help="project root (default: cwd)")
    sub = parser.add_subparsers(dest="command", required=True)

    plan = sub.add_parser("plan", help="print the resolved permutation matrix")
    plan.add_argument("--json", action="store_true", help="GitHub Actions matrix JSON")
    plan.add_argument(
        "--github-output", action="store_true", help="also write matrix=<json> to $GITHUB_OUTPUT"
    )
    plan.add_argument("--permutation", action="append", default=[])

    build = sub.add_parser("build", help="build permutations and write dist/manifest.json")
    build.add_argument("--permutation", action="append", default=[], metavar="NAME")
    build.add_argument(
        "--jobs", type=int, default=0, help="parallel bake sessions (default: cores)"
    )
    prune_flags = build.add_mutually_exclusive_group()
    prune_flags.add_argument("--prune", dest="prune", action="store_true", default=None)
    prune_flags.add_argument("--no-prune", dest="prune", action="store_false")
    build.add_argument("--no-smoke", action="store_true", help="skip smoke commands")
    build.add_argument(
        "--since",
        default="",
        metavar="REF",
        help="reuse unchanged permutations of a release (last-known-good or git SHA)",
    )

    prune = sub.add_parser("prune", help="runner hygiene (--runner)")
    prune.add_argument("--runner", action="store_true", help="prune Docker state on this runner")
    prune.add_argument("--registry", action="store_true", help="retention of old image versions")
    prune.add_argument("--artifacts", action="store_true", help="old workflow artifacts")
    prune.add_argument("--yes", action="store_true", help="really delete (default: plan only)")
    prune.add_argument(
        "--yes-on-default-branch",
        action="store_true",
        help="delete only when GITHUB_REF is the default branch (else plan only)",
    )
    prune.add_argument("--now", default="", help="the policy's clock (ISO time; default: now)")

    gate = sub.add_parser("gate", help="scan, SBOM and decide; writes dist/gate.json + reports")
    gate.add_argument("--self-test", action="store_true", help="prove a planted CVE blocks")

    merge = sub.add_parser("merge-manifests", help="merge partial manifests into dist/")
    merge.add_argument("parts", nargs="+", type=Path, help="directories with manifest.json")

    lint = sub.add_parser("lint-workflows", help="actionlint + zizmor + dcforge's workflow rules")
    lint.add_argument("directory", nargs="?", type=Path, default=None)

    publish = sub.add_parser(
        "publish", help="push by digest, sign, attest, release record, move tags"
    )
    publish.add_argument(
        "--allow-dirty",
        action="store_true",
        help="publish a build from a dirty tree (refused otherwise); the provenance says so",
    )
    verify = sub.add_parser("verify", help="check a published release end to end")
    verify.add_argument(
        "--sha", default="", help="git SHA of the release (default: last-known-good)"
    )

    rollback = sub.add_parser("rollback", help="move floating tags back to a verified release")
    which = rollback.add_mutually_exclusive_group(required=True)
    which.add_argument("--sha", help="git SHA (short or full) or sha256: digest of its record")
    which.add_argument("--last-known-good", action="store_true", help="the pinned release")
    rollback.add_argument(
        "--dry-run", dest="sub_dry_run", action="store_true", help="print the plan, change nothing"
    )
    pin = sub.add_parser("pin", help="point last-known-good at a verified release")
    pin.add_argument("--sha", required=True)
    releases = sub.add_parser("releases", help="list releases, newest first")
    releases.add_argument("--json", action="store_true")

    mirror = sub.add_parser("trivy-db-mirror", help="copy a Trivy DB into your registry")
    mirror.add_argument("--to", required=True, help="REGISTRY/REPO[:TAG] (tag default: 2)")
    mirror.add_argument("--from", dest="source", default=DEFAULT_TRIVY_DB)

    trivy = sub.add_parser("trivy", help="scan an OCI tarball with Trivy (JSON report)")
    trivy.add_argument("tarball", type=Path)
    trivy.add_argument("--report", type=Path, default=None)

    syft = sub.add_parser("syft", help="write an SPDX JSON SBOM for an OCI tarball")
    syft.add_argument("tarball", type=Path)
    syft.add_argument("--output", type=Path, default=None)

    cosign = sub.add_parser("cosign", help="sign or verify an image by digest")
    cosign.add_argument("action", choices=["sign", "verify"])
    cosign.add_argument("reference", help="REPO@sha256:...")

    return parser


def run(argv: Sequence[str], env: Mapping[str, str]) -> int:
    args = _parser().parse_args(argv)
    root = (args.root or Path.cwd()).resolve()
    conf = settings.load(settings.find_root(root), env)
    dry_run = args.dry_run or getattr(args, "sub_dry_run", False)
    runner = Runner(env=dict(env), dry_run=dry_run, verbose=args.verbose)

    if args.command == "plan":
        from dcforge.stages import build

        perms = build.load_permutations(conf, args.permutation)
        matrix = json.dumps({"permutation": [p.name for p in perms]})
        if args.github_output:
            out = env.get("GITHUB_OUTPUT")
            if not out:
                raise DcforgeError("--github-output: GITHUB_OUTPUT is not set")
            with open(out, "a", encoding="utf-8") as fh:
                fh.write(f"matrix={matrix}\n")
        if args.json:
            print(matrix)
        else:
            for p in perms:
                print(
                    f"{p.name:32} {p.repository}:{','.join(p.floating_tags) or '-'}"
                    f"  FROM {p.base_ref}"
                )
        return 0
    if args.command == "build":
        from dcforge.stages import build

        build.run(
            conf,
            runner,
            env,
            build.BuildOptions(
                names=args.permutation,
                jobs=args.jobs,
                prune=args.prune,
                smoke=not args.no_smoke,
                since=args.since,
            ),
        )
        return 0
    if args.command == "gate":
        from dcforge.stages import gate

        gate.run(conf, runner, env, gate.GateOptions(self_test=args.self_test))
        return 0
    if args.command == "merge-manifests":
        from dcforge import merge as merging

        merged = merging.merge(list(args.parts), conf.dist_dir)
        log.info(
            f"merged {len(args.parts)} part(s): {len(merged.permutations)} permutation(s)"
            f" → {conf.dist_dir / 'manifest.json'}"
        )
        return 0
    if args.command == "lint-workflows":
        from dcforge import workflows

        directory = args.directory or conf.root / ".github/workflows"
        config = conf.root / ".github/zizmor.yml"
        found = workflows.lint(runner, directory, config if config.is_file() else None)
        for problem in found:
            log.error(problem)
        if found:
            raise DcforgeError(f"{len(found)} workflow problem(s) in {directory}")
        log.info(f"workflows clean: {directory} (actionlint, zizmor, dcforge rules)")
        return 0
    if args.command == "publish":
        from dcforge.stages import publish

        publish.run(conf, runner, env, publish.PublishOptions(allow_dirty=args.allow_dirty))
        return 0
    if args.command == "verify":
        from dcforge.stages import verify

        verify.run(conf, runner, env, sha=args.sha)
        return 0
    if args.command in ("rollback", "pin", "releases"):
        from dcforge.stages import rollback as rb

        if args.command == "rollback":
            rb.rollback(conf, runner, env, "last-known-good" if args.last_known_good else args.sha)
        elif args.command == "pin":
            rb.pin(conf, runner, env, args.sha)
        else:
            rows = rb.releases(conf, runner, env)
            rb.show_releases(rows)
            if args.json:
                print(json.dumps(rows, indent=2))
        return 0
    if args.command == "prune":
        from dcforge.stages import prune

        if not (args.runner or args.registry or args.artifacts):
            raise DcforgeError("prune: say what to prune: --runner, --registry and/or --artifacts")
        if args.runner:
            prune.runner_hygiene(runner)
        now = None
        if args.now:
            try:
                now = datetime.datetime.fromisoformat(args.now.replace("Z", "+00:00"))
            except ValueError:
                raise DcforgeError(f"--now {args.now!r} is not an ISO date/time") from None
            now = now if now.tzinfo else now.replace(tzinfo=datetime.UTC)
        yes = args.yes or (
            args.yes_on_default_branch
            and env.get("GITHUB_REF") == f"refs/heads/{conf.default_branch}"
        )
        if args.yes_on_default_branch and not yes:
            log.info(f"not on {conf.default_branch}: planning only")
        if args.registry or args.artifacts:
            from dcforge.stages import retention

            if args.registry:
                retention.run(conf, runner, env, yes=yes, now=now)
            if args.artifacts:
                retention.artifacts(conf, env, yes=yes, now=now)
        return 0
    from dcforge import tools_cli

    return tools_cli.run(args, conf, runner, env)


def _tool_env(env: Mapping[str, str]) -> dict[str, str]:
    """The environment plus this interpreter's bin dir on PATH: trivy and syft ship as wheels
    into the same environment as dcforge, which need not be activated."""
    bindir = str(Path(sys.executable).parent)
    path = env.get("PATH", os.defpath)
    if bindir not in path.split(os.pathsep):
        path = f"{bindir}{os.pathsep}{path}"
    return {**env, "PATH": path}


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        return run(argv, _tool_env(os.environ))
    except DcforgeError as err:
        if "--debug" in argv:
            raise
        log.error(f"{err.kind}: {' '.join(str(err).split())}")
        if err.details and ("--verbose" in argv or "-v" in argv):
            log.info(err.details)
        return err.exit_code
    except KeyboardInterrupt:
        log.error("interrupted")
        return 130


if __name__ == "__main__":
    sys.exit(main())
