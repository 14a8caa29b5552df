"""The command line's dispatch: ``python -m dcforge <command>``. The only place that prints
errors and exits.

:mod:`dcforge.cli.parser` says what the command line accepts; here each command is one small
function, found through :data:`COMMANDS`. Stage modules are imported by the command that
needs them, so ``plan`` and ``--help`` stay fast.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from dcforge.cli.parser import parser, version
from dcforge.core import settings, toolpins
from dcforge.core.errors import INTERRUPTED_EXIT_CODE, ConfigError, DcforgeError
from dcforge.core.files import append_line
from dcforge.core.settings import Settings
from dcforge.infra import locks, log
from dcforge.infra.context import Context
from dcforge.infra.runner import Runner

Handler = Callable[[argparse.Namespace, Context], int]


def _plan(args: argparse.Namespace, ctx: Context) -> int:
    from dcforge.core import build_plan

    perms = build_plan.load_permutations(ctx.settings, args.permutation)
    matrix = json.dumps(
        build_plan.ci_matrix(perms, ctx.settings.runner_labels, ctx.settings.max_matrix_jobs)
    )
    if args.github_output:
        _append_github_output(ctx.env, f"matrix={matrix}")
    if args.json:
        print(matrix)
        return 0
    for p in perms:
        print(f"{p.name:32} {p.repository}:{','.join(p.floating_tags) or '-'}  FROM {p.base_ref}")
    return 0


def _append_github_output(env: Mapping[str, str], line: str) -> None:
    out = env.get("GITHUB_OUTPUT")
    if not out:
        raise DcforgeError("--github-output: GITHUB_OUTPUT is not set")
    append_line(out, f"{line}\n", "GITHUB_OUTPUT")


def _build(args: argparse.Namespace, ctx: Context) -> int:
    from dcforge.stages import build

    options = build.BuildOptions(
        names=args.permutation,
        jobs=args.jobs,
        prune=args.prune,
        smoke=not args.no_smoke,
        since=args.since,
        platform=args.platform,
        refresh=tuple(args.refresh),
    )
    if args.check_reproducible:
        if args.since:
            raise ConfigError("--check-reproducible builds everything selected: no --since")
        build.check_reproducible(ctx, options)
        return 0
    build.run(ctx, options)
    return 0


def _gate(args: argparse.Namespace, ctx: Context) -> int:
    from dcforge.stages import gate

    gate.run(
        ctx,
        gate.GateOptions(self_test=args.self_test, scan_cache=not args.no_scan_cache),
    )
    return 0


def _rescan(args: argparse.Namespace, ctx: Context) -> int:
    from dcforge.stages import rescan

    options = rescan.RescanOptions(
        github_output=args.github_output,
        dispatch_refresh=args.dispatch_refresh,
        scan_cache=not args.no_scan_cache,
    )
    rescan.run(ctx, options)
    return 0


def _merge_manifests(args: argparse.Namespace, ctx: Context) -> int:
    from dcforge.core import merge as merging

    merged = merging.merge(list(args.parts), ctx.settings.dist_dir)
    log.info(
        f"merged {len(args.parts)} part(s): {len(merged.permutations)} permutation(s)"
        f" → {ctx.settings.dist_dir / 'manifest.json'}"
    )
    return 0


def _lint_workflows(args: argparse.Namespace, ctx: Context) -> int:
    from dcforge.infra import reusable_workflows, workflows

    directory = args.directory or ctx.settings.root / ".github/workflows"
    config = ctx.settings.root / ".github/zizmor.yml"
    zizmor_config = config if config.is_file() else None
    # A reusable workflow may call dcforge's commands: these.
    commands = frozenset(COMMANDS) | frozenset(WITHOUT_PROJECT)
    found = workflows.lint(ctx.runner, directory, zizmor_config, commands)
    if args.scaffold:
        found += reusable_workflows.lint_scaffold(ctx.runner, zizmor_config, commands)
    for problem in found:
        log.error(problem)
    where = f"{directory}{' and the scaffold' if args.scaffold else ''}"
    if found:
        raise DcforgeError(f"{len(found)} workflow problem(s) in {where}")
    log.info(f"workflows clean: {where} (actionlint, zizmor, dcforge rules)")
    return 0


def _host_plan(args: argparse.Namespace, ctx: Context) -> int:
    import platform

    from dcforge.infra import hostsetup

    if args.fetch:
        pins = toolpins.upstream_pins()
        for tool in args.fetch:
            found = hostsetup.fetch(tool, Path("/usr/local/bin"), pins, platform.machine(), ctx.env)
            log.info(f"{tool}: {found}")
        return 0
    if args.node_tools:
        cli = hostsetup.install_node_tools(ctx.settings, ctx.env)
        log.info(f"Dev Containers CLI: {cli}")
        return 0
    lines = hostsetup.settings_lines if args.settings_only else hostsetup.plan_lines
    print("\n".join(lines(ctx.settings, ctx.env)))
    return 0


def _publish(args: argparse.Namespace, ctx: Context) -> int:
    from dcforge.stages import publish

    publish.run(ctx, publish.PublishOptions(allow_dirty=args.allow_dirty))
    return 0


def _verify(args: argparse.Namespace, ctx: Context) -> int:
    from dcforge.stages import verify

    verify.run(ctx, sha=args.sha)
    return 0


def _verify_image(args: argparse.Namespace, ctx: Context) -> int:
    import platform

    from dcforge.stages import verify_image

    who = verify_image.Identity(
        args.key,
        args.certificate_identity,
        args.certificate_oidc_issuer,
        args.certificate_github_workflow_repository,
        args.certificate_github_workflow_ref,
    )
    options = verify_image.Options(
        args.platform, who, args.registry, args.vex_out, machine=platform.machine()
    )
    found = verify_image.run(ctx, args.reference, options)
    verify_image.summary(found)
    if args.policy:
        print(verify_image.policy(ctx, found, who, args.policy), end="")
    return 0


def _rollback(args: argparse.Namespace, ctx: Context) -> int:
    from dcforge.stages import rollback

    target = "last-known-good" if args.last_known_good else args.sha
    rollback.rollback(ctx, target)
    return 0


def _pin(args: argparse.Namespace, ctx: Context) -> int:
    from dcforge.stages import rollback

    rollback.pin(ctx, args.sha)
    return 0


def _releases(args: argparse.Namespace, ctx: Context) -> int:
    from dcforge.stages import rollback

    rows = rollback.releases(ctx)
    rollback.show_releases(rows)
    if args.json:
        print(json.dumps(rows, indent=2))
    return 0


def parse_now(raw: str) -> datetime.datetime | None:
    """``--now``: an ISO date/time (``Z`` allowed; UTC when it names no zone), or None."""
    if not raw:
        return None
    try:
        now = datetime.datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise DcforgeError(f"--now {raw!r} is not an ISO date/time") from None
    return now if now.tzinfo else now.replace(tzinfo=datetime.UTC)


def _on_default_branch(conf: Settings, env: Mapping[str, str]) -> bool:
    return env.get("GITHUB_REF") == f"refs/heads/{conf.default_branch}"


def _deletes_confirmed(args: argparse.Namespace, conf: Settings, env: Mapping[str, str]) -> bool:
    """``--yes``, or ``--yes-on-default-branch`` on the default branch; else plan only."""
    yes = bool(args.yes) or (args.yes_on_default_branch and _on_default_branch(conf, env))
    if args.yes_on_default_branch and not yes:
        log.info(f"not on {conf.default_branch}: planning only")
    return yes


def _prune(args: argparse.Namespace, ctx: Context) -> int:
    from dcforge.stages import prune

    if not (args.runner or args.registry or args.artifacts):
        raise DcforgeError("prune: say what to prune: --runner, --registry and/or --artifacts")
    now = parse_now(args.now)  # a bad --now stops before anything is pruned
    yes = _deletes_confirmed(args, ctx.settings, ctx.env)
    if args.runner:
        prune.runner_hygiene(ctx.engine)
    if args.registry or args.artifacts:
        from dcforge.stages import retention

        if args.registry:
            retention.run(ctx, yes=yes, now=now)
        if args.artifacts:
            retention.artifacts(ctx.settings, ctx.env, yes=yes, now=now)
    return 0


def _tool(args: argparse.Namespace, ctx: Context) -> int:
    from dcforge.cli import tool_commands

    return tool_commands.run(args, ctx)


def _init(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    from dcforge.stages import init

    init.run(init.InitOptions(args.directory, force=args.force, version=version()))
    return 0


def _signing_identity(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    from dcforge.infra import actions_oidc

    target = env.get("GITHUB_ENV", "") if args.github_env else ""
    if args.github_env and not target:
        raise ConfigError("--github-env: GITHUB_ENV is not set (outside GitHub Actions?)")
    lines = [f"{k}={v}" for k, v in actions_oidc.workflow_identity(env).env().items()]
    print("\n".join(lines))
    if target:
        append_line(target, "".join(f"{line}\n" for line in lines), "GITHUB_ENV")
    return 0


COMMANDS: dict[str, Handler] = {
    "plan": _plan,
    "build": _build,
    "gate": _gate,
    "rescan": _rescan,
    "merge-manifests": _merge_manifests,
    "lint-workflows": _lint_workflows,
    "host-plan": _host_plan,
    "publish": _publish,
    "verify": _verify,
    "verify-image": _verify_image,
    "rollback": _rollback,
    "pin": _pin,
    "releases": _releases,
    "prune": _prune,
    "trivy": _tool,
    "syft": _tool,
    "cosign": _tool,
    "trivy-db-mirror": _tool,
}
# Commands that make a project rather than work in one: no settings are read.
WITHOUT_PROJECT: dict[str, Callable[[argparse.Namespace, Mapping[str, str]], int]] = {
    "init": _init,
    "signing-identity": _signing_identity,
}


def run(argv: Sequence[str], env: Mapping[str, str]) -> int:
    """Parse ``argv``, load the settings and run the command; errors propagate."""
    args = parser().parse_args(argv)
    if args.command in WITHOUT_PROJECT:
        return WITHOUT_PROJECT[args.command](args, env)
    root = (args.root or Path.cwd()).resolve()
    conf = settings.load(settings.find_root(root), env)
    # --dry-run before the command, or after it for the commands that accept it there.
    dry_run = args.dry_run or getattr(args, "sub_dry_run", False)
    ctx = Context(conf, Runner(env=dict(env), dry_run=dry_run, verbose=args.verbose), env)
    try:
        return COMMANDS[args.command](args, ctx)
    finally:
        ctx.close()


def _tool_env(env: Mapping[str, str]) -> dict[str, str]:
    """The environment plus this interpreter's bin dir on PATH: trivy and syft ship as wheels
    into the same environment as dcforge, which need not be activated."""
    bindir = str(Path(sys.executable).parent)
    path = env.get("PATH", os.defpath)
    if bindir not in path.split(os.pathsep):
        path = f"{bindir}{os.pathsep}{path}"
    return {**env, "PATH": path}


def _report(err: DcforgeError) -> None:
    """One line per problem the error names (a schema check can find several), each
    ``error: <kind>: …`` (``error: …`` for the plain kind)."""
    prefix = "" if err.kind == DcforgeError.kind else f"{err.kind}: "
    lines = [" ".join(line.split()) for line in str(err).splitlines()]
    for line in [line for line in lines if line] or [""]:
        log.error(f"{prefix}{line}")


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    env = _tool_env(os.environ)  # the one place dcforge reads the environment
    log.configure(github_actions=bool(env.get("GITHUB_ACTIONS")))
    locks.configure(locks.directory_for(env))
    try:
        code = run(argv, env)
        sys.stdout.flush()  # a reader that went away shows here, not at exit
        return code
    except DcforgeError as err:
        if "--debug" in argv:
            raise
        _report(err)
        if err.details and ("--verbose" in argv or "-v" in argv):
            log.info(err.details)
        return err.exit_code
    except KeyboardInterrupt:
        log.error("interrupted")
        return INTERRUPTED_EXIT_CODE
    except BrokenPipeError:  # `dcforge plan --json | head`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    finally:
        log.finish()  # the terminal's live display, if one was started
