"""A built image, checked before it enters the manifest: its archive holds exactly the
declared platforms; a devcontainer.json image is on its pinned base with only pinned
Features; a Dockerfile image's devcontainer.metadata label is valid; then its smoke
commands and its image test run in each platform's image (foreign ones emulated)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

from dcforge.core import devcontainer, oci_archive, permfile
from dcforge.core.build_plan import PlannedPermutation
from dcforge.core.errors import BuildError
from dcforge.core.files import atomic_write_json
from dcforge.infra import log
from dcforge.infra.tools import docker


def archive_platforms(
    perm: permfile.Permutation, children: Mapping[str, str], digest: str
) -> dict[str, str]:
    """platform → image digest in the archive, which must hold exactly the declared ones."""
    if len(perm.platforms) == 1 and not children:
        return {perm.platforms[0]: digest}
    if len(perm.platforms) == 1 or set(children) != set(perm.platforms):
        raise BuildError(
            f"{perm.name}: the archive holds images for {', '.join(sorted(children)) or 'one'} "
            f"platform(s), the permutation declares {', '.join(perm.platforms)}"
        )
    return {pl: children[pl] for pl in perm.platforms}


def check_archive(item: PlannedPermutation, tarball: Path, platforms: Mapping[str, str]) -> None:
    """Each platform's image is what its kind of permutation must build: a devcontainer.json
    one on its base with pinned Features, a Dockerfile one with a valid metadata label."""
    if item.perm.devcontainer:
        _check_devcontainer_image(item, tarball, platforms)
    else:
        _check_metadata_label(item, tarball, platforms)


def _check_metadata_label(
    item: PlannedPermutation, tarball: Path, platforms: Mapping[str, str]
) -> None:
    """A Dockerfile permutation's devcontainer.metadata label, when its build set one (its
    own LABEL, not the base's), is what the spec says — checked like 'metadata'."""
    for platform, digest in platforms.items():
        label = oci_archive.config_labels(oci_archive.image_config(tarball, digest)).get(
            "devcontainer.metadata", ""
        )
        base = oci_archive.config_labels(item.base_configs.get(platform, {}))
        if not label or label == base.get("devcontainer.metadata"):
            continue
        try:
            problems = devcontainer.metadata_errors(json.loads(label))
        except json.JSONDecodeError as err:
            problems = [("", f"is not JSON ({err.msg})")]
        if problems:
            raise BuildError(
                "\n".join(
                    f"{item.perm.source}: '{item.perm.name}' ({platform}): the image's "
                    f"devcontainer.metadata label{' ' + loc if loc else ''}: {why} — set it "
                    "with 'metadata' in the permutation, not a LABEL"
                    for loc, why in problems
                )
            )


def _check_devcontainer_image(
    item: PlannedPermutation, tarball: Path, platforms: Mapping[str, str]
) -> None:
    """What the CLI built is on the pinned base (its layers come first), and every Feature
    it installed is local or one dcforge pinned: a Feature another one ``dependsOn`` is
    resolved by the CLI itself, by tag, unrecorded — refused. (The base's own label may
    name Features: those entries come first in the merged label and are the base's.)"""
    perm, pins = item.perm, item.features
    for platform, digest in platforms.items():
        config = oci_archive.image_config(tarball, digest)
        base = item.base_configs.get(platform, {})
        base_layers = oci_archive.config_layers(base)
        if oci_archive.config_layers(config)[: len(base_layers)] != base_layers:
            raise BuildError(
                f"{perm.source}: '{perm.name}' ({platform}) is not built on its base "
                f"{perm.base_ref}@{item.base_platforms.get(platform, '')[:19]} (its layers do "
                "not start with the base's) — the Dockerfile must build FROM ${BASE_IMAGE}"
            )
        label = oci_archive.config_labels(config).get("devcontainer.metadata", "")
        base_label = oci_archive.config_labels(base).get("devcontainer.metadata", "")
        unpinned = devcontainer.unpinned_features(label, pins, base_label)
        if unpinned:
            raise BuildError(
                f"{perm.source}: '{perm.name}' ({platform}) got Feature(s) "
                f"{', '.join(unpinned)} that dcforge did not pin (another Feature's dependsOn, "
                "resolved by the CLI by tag) — declare each in the devcontainer.json so that "
                "it is pinned by digest and recorded"
            )


def smoke(
    engine: docker.Engine,
    perm: permfile.Permutation,
    tarball: Path,
    platforms: Mapping[str, str],
) -> None:
    """Load each platform's image of the archive and run every smoke command in it (foreign
    platforms under emulation), first checking that the container really runs that
    architecture. The engine's image store may be either of Docker's."""
    store = docker.smoke_archive(engine, tarball, platforms, list(perm.smoke), perm.name)
    log.step(
        perm.name,
        f"smoke ok ({len(perm.smoke)} command(s) on {', '.join(platforms)}, {store} image store)",
    )


def image_test(
    engine: docker.Engine,
    perm: permfile.Permutation,
    tarball: Path,
    platforms: Mapping[str, str],
    reports: Path,
) -> None:
    """Run the permutation's image test in each platform's image (as its remote user, no
    network); the results go to dist/reports/NAME.image-test.json; a failed check fails
    the build with its name."""
    if perm.test is None:
        return
    results = docker.image_test(engine, tarball, platforms, perm.test, perm.name)
    if engine.runner.dry_run:
        return
    reports.mkdir(parents=True, exist_ok=True)
    atomic_write_json(
        reports / f"{perm.name}.image-test.json",
        {"permutation": perm.name, "test": perm.test.name, "platforms": results},
    )
    for result in results:
        failed = [c["name"] for c in result["checks"] if not c["passed"]]
        where = f"on {result['platform']} as {result['user']}"
        if failed:
            raise BuildError(
                f"{perm.name}: image test check {failed[0]!r} failed {where}"
                + (f" (and {len(failed) - 1} more: {', '.join(failed[1:])})" if failed[1:] else "")
                + f" — see {reports / (perm.name + '.image-test.json')}"
            )
        if result["exit_code"] != 0:
            lines = [ln for ln in result["output"].splitlines() if ln.strip()]
            last = lines[-1:] or ["(no output)"]
            raise BuildError(
                f"{perm.name}: image test {perm.test.name} exited {result['exit_code']} {where}: "
                f"{last[0][:300]}"
            )
    checks = sum(len(r["checks"]) for r in results)
    log.step(perm.name, f"image test ok ({checks} check(s) on {', '.join(platforms)})")
