"""The build stage against dockerd + BuildKit + the local registry."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pytest

from dcforge.core import manifest as mf
from dcforge.core.hashing import file_sha256
from dcforge.infra.runner import Runner
from tests.integration import oras_oracle as registry
from tests.integration.conftest import git_commit, run_dcforge

pytestmark = pytest.mark.integration


def build(root: Path, *args: str, env: dict[str, str] | None = None) -> tuple[mf.Manifest, str]:
    result = run_dcforge("build", "--no-prune", *args, cwd=root, env=env)
    assert result.returncode == 0, result.stderr
    return mf.load(root / "dist/manifest.json"), result.stderr


def test_manifest_matches_files_registry_and_git(project: Path, runner: Runner) -> None:
    sha = git_commit(project, "second")
    m, log = build(project)
    assert m.git_sha == sha
    assert [e.name for e in m.permutations] == ["tiny-one", "tiny-two"]
    assert "smoke ok" in log
    for e in m.permutations:
        tar = project / "dist" / e.tarball
        assert file_sha256(tar) == e.tarball_sha256
        assert registry.resolve(runner, e.base_image.ref, plain_http=True) == e.base_image.digest
        assert any(sha in t for t in e.tags)
        assert f"{e.repository}:{e.name}-{sha}" in e.tags
        # The digest fixed at build time is what the registry serves after a push.
        pushed = f"{e.repository}:{e.immutable_tag}"
        registry.push_oci_archive(runner, tar, pushed, plain_http=True)
        assert registry.resolve(runner, pushed, plain_http=True) == e.image_digest
    assert not list((project / "dist").glob(".incoming-*"))


def test_subset_hash_stability_and_change_isolation(project: Path) -> None:
    families = project / "permutations"
    other_ctx = project / "images/other"
    other_ctx.mkdir()
    (other_ctx / "Dockerfile").write_text(
        "ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\nRUN echo other > /o\n"
    )
    (families / "other.yaml").write_text(
        "family: other\nname: other\ncontext: ../images/other\n"
        'base: "{base_registry}/busybox:latest"\ntags: [latest]\nsmoke: ["test -f /o"]\n'
    )
    git_commit(project, "add other")
    first, _ = build(project, "--jobs", "2")
    second, _ = build(project)
    hashes = {e.name: e.input_hash for e in first.permutations}
    assert hashes == {e.name: e.input_hash for e in second.permutations}
    (other_ctx / "Dockerfile").write_text(
        "ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\nRUN echo changed > /o\n"
    )
    git_commit(project, "change other")
    third, _ = build(project)
    changed = {e.name for e in third.permutations if e.input_hash != hashes[e.name]}
    assert changed == {"other"}
    subset, _ = build(project, "--permutation", "tiny-two")
    assert [e.name for e in subset.permutations] == ["tiny-two"]


def _tree_digest(directory: Path) -> str:
    h = hashlib.sha256()
    for path in sorted(directory.rglob("*")):
        h.update(str(path.relative_to(directory)).encode())
        if path.is_file():
            h.update(path.read_bytes())
    return h.hexdigest()


@pytest.mark.alone(0)  # empties the build cache every other test shares
def test_pr_builds_never_touch_mains_cache_and_main_reuses_it(
    project: Path, runner: Runner, tmp_path: Path
) -> None:
    main_env = {
        "GITHUB_ACTIONS": "true",
        "GITHUB_EVENT_NAME": "push",
        "GITHUB_REF": "refs/heads/main",
    }
    build(project, "--permutation", "tiny-one", env=main_env)
    cache_dir = project / ".dcforge/cache"
    main_dirs = sorted(p.name for p in cache_dir.iterdir())
    assert len(main_dirs) == 1
    assert main_dirs[0].startswith("main-tiny-one-")
    before = _tree_digest(cache_dir / main_dirs[0])

    event = tmp_path / "event.json"
    event.write_text(json.dumps({"number": 5, "pull_request": {"number": 5}}))
    pr_env = {
        "GITHUB_ACTIONS": "true",
        "GITHUB_EVENT_NAME": "pull_request",
        "GITHUB_REF": "refs/pull/5/merge",
        "GITHUB_EVENT_PATH": str(event),
    }
    (project / "images/tiny/greeting.txt").write_text("a PR changed me\n")
    git_commit(project, "pr change")
    build(project, "--permutation", "tiny-one", env=pr_env)
    assert _tree_digest(cache_dir / main_dirs[0]) == before
    assert any(p.name.startswith("pr-5-tiny-one-") for p in cache_dir.iterdir())

    # With BuildKit's own cache emptied, a main build can only hit through main's scope.
    (project / "images/tiny/greeting.txt").write_text("hi\n")
    git_commit(project, "back to main's content")
    runner.run(["docker", "buildx", "prune", "-af"])
    _, log = build(project, "--permutation", "tiny-one", env=main_env)
    cached = [int(n) for n in re.findall(r"built \((\d+) cached", log)]
    assert cached and cached[0] >= 1, log


BAD = {
    "malformed.yaml": "family: [oops\n",
    "unknown.yaml": "family: x\nname: x\ncontext: ../images/tiny\nbase: b\nsurprise: 1\n",
    "nodockerfile.yaml": "family: x\nname: x\ncontext: ../images/tiny\nbase: b\ndockerfile: Missing\n",
    "badvar.yaml": "family: x\nname: 'x-{nope}'\ncontext: ../images/tiny\nbase: b\n",
}


@pytest.mark.parametrize("filename", sorted(BAD))
def test_bad_input_one_line_nonzero_nothing_in_dist(project: Path, filename: str) -> None:
    (project / "permutations" / filename).write_text(BAD[filename])
    result = run_dcforge("build", "--no-prune", cwd=project)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and filename in lines[0], result.stderr
    assert "Traceback" not in result.stderr
    assert not (project / "dist").exists()


def test_failing_smoke_command_fails_the_build_and_writes_no_manifest(project: Path) -> None:
    yaml_path = project / "permutations/tiny.yaml"
    yaml_path.write_text(yaml_path.read_text().replace("/etc/built-greeting", "/etc/missing"))
    git_commit(project, "break smoke")
    result = run_dcforge("build", "--no-prune", cwd=project)
    assert result.returncode == 4
    assert "smoke command" in result.stderr
    assert not (project / "dist/manifest.json").exists()
    assert not list((project / "dist").glob("*.tar"))


def test_unreachable_base_is_a_registry_error(project: Path) -> None:
    yaml_path = project / "permutations/tiny.yaml"
    yaml_path.write_text(yaml_path.read_text().replace("busybox:latest", "no-such-image:1"))
    result = run_dcforge("build", "--no-prune", cwd=project)
    assert result.returncode == 8
    assert "cannot resolve" in result.stderr
    assert "no-such-image" in result.stderr
    assert not (project / "dist").exists()


def test_more_permutations_than_one_bake_takes_are_baked_in_turns(project: Path) -> None:
    """BuildKit lost track of a 256-target bake ("no such job"): a session bakes at most
    BAKE_MAX_TARGETS at a time, and every archive still comes back with its digest."""
    from dcforge.core.bake import BAKE_MAX_TARGETS

    n = BAKE_MAX_TARGETS + 1
    (project / "permutations/tiny.yaml").write_text(
        "family: many\nmatrix:\n  i: [" + ", ".join(str(i) for i in range(n)) + "]\n"
        'name: "many-{i}"\ncontext: ../images/tiny\nbase: "{base_registry}/busybox:latest"\n'
        'build_args:\n  GREETING: "hello {i}"\ntags: ["m{i}"]\n'
    )
    git_commit(project, "many")
    built = run_dcforge("--verbose", "build", "--no-prune", "--no-smoke", cwd=project)
    assert built.returncode == 0, built.stderr
    assert built.stderr.count("buildx bake --progress") == 2
    m = mf.load(project / "dist/manifest.json")
    assert len(m.permutations) == n
    assert len({e.image_digest for e in m.permutations}) == n


def test_a_bake_buildkit_gave_up_on_its_own_deadline_is_baked_again(
    project: Path, tmp_path: Path
) -> None:
    """BuildKit on a loaded machine ends a bake with its own DeadlineExceeded (seen in CI
    on a 33-target bake): the build bakes once more instead of failing the release."""
    import shutil

    from tests.integration.conftest import base_env

    real = shutil.which("docker", path=base_env()["PATH"])
    shims, first = tmp_path / "shims", tmp_path / "gave-up-once"
    shims.mkdir()
    (shims / "docker").write_text(
        "#!/bin/sh\n"
        f'case " $* " in *" bake "*) if [ ! -e "{first}" ]; then touch "{first}"; '
        'echo "ERROR: failed to solve: DeadlineExceeded: context deadline exceeded" >&2; '
        "exit 1; fi;; esac\n"
        f'exec "{real}" "$@"\n'
    )
    (shims / "docker").chmod(0o755)
    env = {"PATH": f"{shims}:{base_env()['PATH']}"}
    built = run_dcforge("build", "--no-prune", "--no-smoke", cwd=project, env=env)
    assert built.returncode == 0, built.stderr
    assert first.exists() and "baking again" in built.stderr
    assert len(mf.load(project / "dist/manifest.json").permutations) == 2
