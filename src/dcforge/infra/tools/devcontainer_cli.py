"""The Dev Containers CLI (``@devcontainers/cli``): build a devcontainer.json into the same
OCI archive a bake target writes, and publish Features to an OCI registry.

The CLI runs ``docker buildx build`` itself; ``--output type=oci,dest=…`` passes through,
so the archive is buildx's, byte for byte, and the digest in it is the one dcforge gates,
pushes and signs. buildx's default provenance attestation is switched off as for bake
(dcforge attests at publish time, by digest).

The CLI has ``--label`` but no ``--build-arg`` and no ``--annotation``: the annotations
ride in ``--output`` as the OCI exporter's own ``annotation-<level>.<key>`` attributes, and
SOURCE_DATE_EPOCH in the environment, which ``docker buildx build`` turns into the build
arg of that name (buildx >= 0.10, docker/buildx#1482) unless a build arg already sets it.
"""

from __future__ import annotations

import json
import shlex
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from dcforge.core import toolpins
from dcforge.core.errors import BuildError, ToolError
from dcforge.infra.runner import Runner
from dcforge.infra.tools import buildx

PACKAGE = "@devcontainers/cli"
# Where scripts/bootstrap installs the pinned CLI (under the state directory).
INSTALL_DIR = Path("tools/devcontainer-cli")
# The state directory of the dcforge checkout this module runs from, whose scripts/bootstrap
# installed the CLI there (a project elsewhere built with it finds it). An installed wheel
# has no checkout: this path does not exist there and only the project's state counts.
CHECKOUT_STATE = Path(__file__).resolve().parents[4] / ".dcforge"


def pinned_version() -> str:
    """The CLI version dcforge pins (its toolchain.toml's ``[npm]``)."""
    return toolpins.npm_pins()[PACKAGE]


def executable(runner: Runner, state_root: Path) -> str:
    """The CLI scripts/bootstrap installed (else one on PATH), checked to be the pinned
    version before anything runs it."""
    # The project's state directory, else the one of the dcforge checkout whose
    # scripts/bootstrap ran (a project elsewhere built with it), else PATH.
    candidates = [
        root / INSTALL_DIR / "node_modules" / ".bin" / "devcontainer"
        for root in (state_root, CHECKOUT_STATE)
    ]
    installed = next((c for c in candidates if c.is_file()), candidates[0])
    want = pinned_version()
    try:
        path = str(installed) if installed.is_file() else runner.which("devcontainer")
    except ToolError:
        raise ToolError(
            f"the Dev Containers CLI is not installed ({installed}) — run scripts/bootstrap "
            f"(it installs {PACKAGE}@{want})"
        ) from None
    got = runner.run([path, "--version"], timeout=60, mutates=False).stdout.strip()
    if got != want and not runner.dry_run:
        raise ToolError(
            f"{path} is the Dev Containers CLI {got or '(no version)'}, dcforge pins "
            f"{want} ({toolpins.WHERE}) — run scripts/bootstrap"
        )
    return path


def builder_env(builder: buildx.Builder) -> dict[str, str]:
    """The CLI calls plain ``docker buildx``: the builder setting reaches it through the
    environment (a docker context's builder, or a named buildx builder)."""
    if not builder.name:
        return {}
    key = "DOCKER_CONTEXT" if builder.is_context else "BUILDX_BUILDER"
    return {key: builder.name}


def build(
    runner: Runner,
    cli: str,
    *,
    workspace: Path,
    config: Path,
    output_tar: Path,
    image_name: str,
    platforms: Sequence[str],
    labels: Mapping[str, str],
    cache_from: Sequence[str],
    cache_to: Sequence[str],
    no_cache: bool,
    builder: buildx.Builder,
    timeout: float,
    output: str = "",
    source_date_epoch: int | None = None,
) -> str:
    """``devcontainer build`` of ``config`` into the OCI archive ``output_tar``, exported
    as ``output`` says (buildx's ``--output`` value; default: plain ``type=oci`` into
    ``output_tar``), dated by ``source_date_epoch``; its log."""
    argv: list[str | Path] = [
        cli, "build", "--workspace-folder", workspace, "--config", config,
        "--output", output or f"type=oci,dest={output_tar}", "--image-name", image_name,
        "--platform", ",".join(platforms), "--no-lockfile", "--log-format", "text",
    ]  # fmt: skip
    argv += _options(labels, cache_from, cache_to, no_cache)
    argv += ["--docker-path", docker_shim(runner, workspace.parent / f"{workspace.name}.bin")]
    # A temporary directory of its own: the CLI names its Feature staging folder by the
    # millisecond, so two builds started together would share (and mix) their Features.
    tmp = workspace.parent / f"{workspace.name}.tmp"
    tmp.mkdir(exist_ok=True)
    env = {"BUILDX_NO_DEFAULT_ATTESTATIONS": "1", "TMPDIR": str(tmp), **builder_env(builder)}
    if source_date_epoch is not None:
        env["SOURCE_DATE_EPOCH"] = str(source_date_epoch)
    # The runner gives the CLI (and the buildx it runs) only the engine, the builder, registry
    # credentials, proxies and CAs (dcforge.infra.runner.TOOL_ENV["devcontainer"]): no secret of
    # the runner can be substituted into a build or an image.
    result = runner.run(argv, timeout=timeout, env=env, cwd=workspace, check=False)
    if result.returncode != 0 or (not runner.dry_run and not output_tar.is_file()):
        raise BuildError(
            f"devcontainer build of {config} exited {result.returncode}: "
            f"{_cause(result.stdout, result.stderr)}",
            details="\n".join((result.stderr + result.stdout).strip().splitlines()[-30:]),
        )
    return result.stderr + result.stdout


# The CLI adds ``--build-arg BUILDKIT_INLINE_CACHE=1`` to every build unless its
# ``--cache-to`` is inline (0.89.0: ``RQ(e.buildxCacheTo)||c.push("--build-arg",
# "BUILDKIT_INLINE_CACHE=1")``). BuildKit then writes an inline cache into the image config
# (``moby.buildkit.cache.v0``) whose records carry the time each layer was made, so no two
# builds of the same inputs had the same digest. dcforge hands the CLI a ``docker`` that
# drops that one build arg; everything else reaches the real docker as the CLI wrote it.
INLINE_CACHE_ARG = "BUILDKIT_INLINE_CACHE=1"
_SHIM = """# dcforge: the Dev Containers CLI's docker, without its inline build cache
# (dcforge.infra.tools.devcontainer_cli.INLINE_CACHE_ARG). Anything else passes as written.
import os, sys
args, out = sys.argv[1:], []
while args:
    if args[:2] == ["--build-arg", {arg!r}]:
        args = args[2:]
        continue
    out.append(args.pop(0))
os.execv({docker!r}, [{docker!r}, *out])
"""


def docker_shim(runner: Runner, directory: Path) -> Path:
    """The ``docker`` the CLI runs (``--docker-path``): the real one, minus the inline cache
    build arg. A shell script (any interpreter path, spaces and all, runs from it) that
    hands its arguments to the Python one beside it."""
    docker = runner.which("docker")
    directory.mkdir(parents=True, exist_ok=True)
    script = directory / "docker_shim.py"
    script.write_text(_SHIM.format(arg=INLINE_CACHE_ARG, docker=docker))
    shim = directory / "docker"
    python, target = shlex.quote(sys.executable), shlex.quote(str(script))
    shim.write_text(f'#!/bin/sh\nexec {python} -I {target} "$@"\n')
    shim.chmod(0o755)
    return shim


def _options(
    labels: Mapping[str, str], cache_from: Sequence[str], cache_to: Sequence[str], no_cache: bool
) -> list[str | Path]:
    """``--label`` for each label, and the cache options (no cache read with ``no_cache``)."""
    argv: list[str | Path] = []
    for key, value in sorted(labels.items()):
        argv += ["--label", f"{key}={value}"]
    if no_cache:
        argv.append("--no-cache")
    else:
        for source in cache_from:
            argv += ["--cache-from", source]
    for target in cache_to:
        argv += ["--cache-to", target]
    return argv


def _cause(stdout: str, stderr: str) -> str:
    """buildx's ERROR line when the build failed, else the CLI's own message (its JSON
    outcome line, which for a failed build is only the command it ran)."""
    lines = [ln.strip() for ln in (stderr + stdout).splitlines() if ln.strip()]
    error = next((ln for ln in reversed(lines) if ln.startswith(("ERROR", "#"))
                  and "ERROR" in ln), "")  # fmt: skip
    if error:
        return error[:400]
    for line in reversed(stdout.strip().splitlines()):
        try:
            outcome: Any = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(outcome, dict) and outcome.get("outcome") == "error":
            text = f"{outcome.get('message', '')} {outcome.get('description', '')}".strip()
            return " ".join(text.split())[:400]
    return (lines[-1] if lines else "(no output)")[:400]


def publish_features(
    runner: Runner, cli: str, source: Path, registry: str, namespace: str
) -> dict[str, Any]:
    """``devcontainer features publish`` of a Feature (or a collection's ``src``) to
    ``registry/namespace``; the CLI's report (Feature id → published tags and digest)."""
    out = runner.run(
        [cli, "features", "publish", "--registry", registry, "--namespace", namespace, source],
        timeout=300,
    ).stdout
    for line in reversed(out.strip().splitlines()):
        try:
            report = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(report, dict):
            return report
    raise ToolError(f"devcontainer features publish printed no report for {source}")
