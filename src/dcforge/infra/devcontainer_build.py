"""The devcontainer.json permutations' build: the Dev Containers CLI, run on a rendered copy
of each one's folder (base and Features pinned by digest), into the same OCI archive a
bake target would write. The Dockerfile permutations are baked by the build stage."""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from dcforge.core import devcontainer
from dcforge.core.bake import Target
from dcforge.core.build_plan import PlannedPermutation
from dcforge.core.errors import BuildError, ToolError
from dcforge.core.refs import at_digest
from dcforge.core.settings import Settings
from dcforge.infra import hostsetup, log
from dcforge.infra.runner import Runner
from dcforge.infra.tools import buildx, devcontainer_cli


def _cli(settings: Settings, runner: Runner) -> str:
    """The pinned Dev Containers CLI; when it is missing (or another version), installed
    into the project's state folder first, as scripts/bootstrap does (no root, no npm: the
    npm registry's tarball, integrity-checked) — a project that uses dcforge as a package
    has no bootstrap of dcforge's to run."""
    try:
        return devcontainer_cli.executable(runner, settings.state_root)
    except ToolError as err:
        if runner.dry_run:
            raise
        log.info(f"{str(err).split(' — ')[0]}: installing it")
    hostsetup.install_node_tools(settings, runner.env)
    return devcontainer_cli.executable(runner, settings.state_root)


def build_all(
    settings: Settings,
    runner: Runner,
    work: Sequence[tuple[PlannedPermutation, Target]],
    builder: buildx.Builder,
) -> None:
    """Build the devcontainer.json permutations with the Dev Containers CLI, each from a
    rendered copy of its folder (base and Features pinned by digest) into its archive."""
    cli = _cli(settings, runner)

    def one(item: PlannedPermutation, target: Target) -> None:
        with log.permutation(item.perm.name):
            build_one(item, target)

    def build_one(item: PlannedPermutation, target: Target) -> None:
        p = item.perm
        workspace, config_file, features = render_workspace(item, target)
        log.step(p.name, f"building (Dev Containers CLI, {features} Feature(s))")
        devcontainer_cli.build(
            runner,
            cli,
            workspace=workspace,
            config=config_file,
            output_tar=target.output_tar,
            output=target.oci_output(with_annotations=True),
            source_date_epoch=target.epoch,
            image_name=target.tags[0],
            platforms=target.platforms,
            labels=target.labels,
            cache_from=[] if target.no_cache else target.cache_from,
            cache_to=target.cache_to,
            no_cache=target.no_cache,
            builder=builder,
            timeout=settings.build_timeout,
        )
        log.step(p.name, "built")

    with (
        log.group(f"build {len(work)} devcontainer.json permutation(s) (Dev Containers CLI)"),
        ThreadPoolExecutor(max_workers=max(1, min(len(work), settings.jobs or 2))) as pool,
    ):
        list(pool.map(lambda w: one(*w), work))


def render_workspace(item: PlannedPermutation, target: Target) -> tuple[Path, Path, int]:
    """A copy of the permutation's devcontainer.json folder next to its archive, with the
    devcontainer.json rendered: base and Features pinned by digest, the permutation's
    Feature options and build args merged in. (workspace, config file, Feature count)"""
    p = item.perm
    # The CLI finds local Features next to a devcontainer.json in a .devcontainer folder.
    workspace = target.output_tar.with_suffix(".workspace")
    folder = workspace / ".devcontainer"
    shutil.copytree(p.context, folder, symlinks=True)
    devcontainer.lock_file(folder / p.dockerfile.name).unlink(missing_ok=True)  # pinned below
    data = devcontainer.read_config(p.dockerfile)
    rendered = devcontainer.render(
        data,
        devcontainer.check_config(p.dockerfile, data),
        base=at_digest(p.base_ref, item.base_digest),
        build_args=dict(p.build_args),
        feature_options={ref: json.loads(opts) for ref, opts in p.features},
        pins=item.features,
    )
    config_file = folder / p.dockerfile.name
    _replace(folder, config_file, json.dumps(rendered, indent=2))
    if "build" in rendered:  # the CLI drops --label for the build form: the Dockerfile says them
        dockerfile = folder / rendered["build"]["dockerfile"]
        labels = " ".join(f"{_quoted(k)}={_quoted(v)}" for k, v in target.labels.items())
        _replace(folder, dockerfile, f"{dockerfile.read_text()}\n\nLABEL {labels}\n")
    return workspace, config_file, len(rendered["features"])


def _quoted(text: str) -> str:
    """``text`` as one double-quoted Dockerfile word, taken literally: the Dockerfile
    parser un-escapes only ``\\"``, ``\\$`` and ``\\\\`` there (and would expand a bare ``$``)."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("$", "\\$")
    return '"' + " ".join(escaped.splitlines()) + '"'


def _replace(folder: Path, path: Path, text: str) -> None:
    """Write a file of the rendered copy as a new file. A symlink there (copied as a link)
    must never carry the write back into the repository: the file itself is replaced, and
    a path through a linked directory that leads out of the copy is refused."""
    if not path.parent.resolve().is_relative_to(folder.resolve()):
        raise BuildError(
            f"{path.relative_to(folder)}: reached through a symlinked directory that points "
            "out of the devcontainer folder — use a real directory"
        )
    path.unlink(missing_ok=True)
    path.write_text(text)
