"""Faults with the real stack, and secrets: dcforge stops with a clear reason, publishes
nothing half-done, and re-running completes. `nox -s reliability` tabulates these."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from dcforge.core import manifest as mf
from dcforge.core import toolpins
from dcforge.infra.runner import Runner
from tests.integration import fault_proxy, faults
from tests.integration import oras_oracle as registry
from tests.integration.conftest import (
    ROOT,
    PrivateRegistry,
    TrivyDb,
    TwoReleases,
    base_env,
    build_and_gate,
    env_for,
    git_commit,
    pinned_record,
    run_dcforge,
)
from tests.projects import write_project

pytestmark = pytest.mark.integration


class ProxiedRegistry(PrivateRegistry):
    proxy: fault_proxy.FaultProxy


@pytest.fixture
def private_registry(tmp_path: Path) -> Iterator[ProxiedRegistry]:
    """This module's registry answers through a fault proxy on its port: requests dcforge
    makes in-process (tag moves) are caught there, as tool processes are by PATH wrappers."""
    reg = ProxiedRegistry(tmp_path / "private-registry")
    inner = fault_proxy.free_port()
    fault_proxy.rewrite_port(reg.config, reg.port, inner)
    reg.proxy = fault_proxy.start(reg.port, inner)
    reg.start()
    yield reg
    reg.stop()
    reg.proxy.close()


def tag_writes(m: mf.Manifest) -> bytes:
    """The request line of a floating tag's write (one per tag)."""
    tags = sorted({t for e in m.permutations for t in e.floating_tags})
    return (
        rb"^PUT /v2/dc/\S+/manifests/(?:" + b"|".join(re.escape(t.encode()) for t in tags) + rb") "
    )


def rel(scenario: str, checks: str) -> pytest.MarkDecorator:
    return pytest.mark.reliability(scenario=scenario, checks=checks)


def with_path(env: dict[str, str], directory: Path) -> dict[str, str]:
    return {**env, "PATH": f"{directory}{os.pathsep}{base_env()['PATH']}"}


def floating(runner: Runner, m: mf.Manifest) -> dict[str, str | None]:
    return {
        f"{e.repository}:{t}": registry.digest_or_none(
            runner, f"{e.repository}:{t}", plain_http=True
        )
        for e in m.permutations
        for t in e.floating_tags
    }


def at(m: mf.Manifest) -> dict[str, str | None]:
    return {f"{e.repository}:{t}": e.image_digest for e in m.permutations for t in e.floating_tags}


def lkg(runner: Runner, reg: PrivateRegistry) -> str | None:
    return registry.digest_or_none(
        runner, f"{reg.host}/dc/dcforge-releases:last-known-good", plain_http=True
    )


@rel("registry killed during push", "clear error; tags + last-known-good still A; re-run completes")
def test_registry_killed_during_push(
    release_and_next: TwoReleases,
    private_registry: PrivateRegistry,
    runner: Runner,
    tmp_path: Path,
) -> None:
    project, env, a, b = (
        release_and_next.root,
        release_and_next.env,
        release_and_next.a,
        release_and_next.b,
    )
    pointer = lkg(runner, private_registry)
    inject = faults.wrapper(
        tmp_path / "f", "skopeo", "copy", 1, faults.kill_registry(private_registry.pid_file)
    )
    broken = run_dcforge("publish", cwd=project, env=with_path(env, inject))
    assert broken.returncode != 0
    assert (inject / "fired").exists()
    assert "Traceback" not in broken.stderr
    assert broken.stderr.strip().splitlines()[-1].startswith("error:")
    private_registry.stop()
    private_registry.start()
    assert floating(runner, a) == at(a)
    assert lkg(runner, private_registry) == pointer
    assert run_dcforge("publish", cwd=project, env=env).returncode == 0
    assert floating(runner, b) == at(b)


@rel(
    "registry killed during tag moves (and stays down)",
    "clear error saying what could not be put back; last-known-good still A; re-run: all B",
)
def test_registry_killed_during_tag_moves(
    release_and_next: TwoReleases,
    private_registry: ProxiedRegistry,
    runner: Runner,
    tmp_path: Path,
) -> None:
    project, env, a, b = (
        release_and_next.root,
        release_and_next.env,
        release_and_next.a,
        release_and_next.b,
    )
    pointer = lkg(runner, private_registry)
    # Killed at the second tag write (the writes run side by side: the first may or may
    # not have landed); the put-back cannot reach the registry either.
    fault = private_registry.proxy.arm(
        tag_writes(b), 2, faults.kill_registry(private_registry.pid_file)
    )
    broken = run_dcforge("publish", cwd=project, env=env)
    assert broken.returncode != 0
    assert fault.fired.is_set()
    assert "moving floating tags failed" in broken.stderr
    private_registry.stop()
    private_registry.start()
    state = floating(runner, a)
    # With the registry dead the put-back could not run: the report says so, and what the
    # registry shows is reported; a re-run completes the move.
    assert "re-run to complete" in broken.stderr
    assert "could not put back" in broken.stderr
    assert lkg(runner, private_registry) == pointer
    assert set(state.values()) <= set(at(a).values()) | set(at(b).values())
    assert run_dcforge("publish", cwd=project, env=env).returncode == 0
    assert floating(runner, b) == at(b)


@rel(
    "registry restarts during tag moves (transient)",
    "retried with backoff; all B; put-back when a move fails",
)
def test_transient_registry_restart_is_retried(
    release_and_next: TwoReleases,
    private_registry: ProxiedRegistry,
    runner: Runner,
    tmp_path: Path,
) -> None:
    project, env, _, b = (
        release_and_next.root,
        release_and_next.env,
        release_and_next.a,
        release_and_next.b,
    )
    fault = private_registry.proxy.arm(
        tag_writes(b),
        2,
        faults.restart_registry(
            private_registry.pid_file, private_registry.config, private_registry.log
        ),
    )
    done = run_dcforge("publish", cwd=project, env=env)
    assert private_registry.proc is not None
    private_registry.proc.wait(timeout=10)  # killed by the wrapper; reap it
    private_registry.proc = None  # the wrapper's restarted registry is the live one now
    assert done.returncode == 0, done.stderr
    assert fault.fired.is_set()
    assert "transient registry error, retry" in done.stderr
    assert floating(runner, b) == at(b)
    subprocess.run(["kill", private_registry.pid_file.read_text().strip()], check=False)


@rel(
    "cosign key with the wrong password, or not the public key's pair",
    "refused before anything is pushed, naming the key; re-run with the right password and "
    "pair completes",
)
def test_cosign_wrong_password(
    project: Path,
    private_registry: PrivateRegistry,
    trivy_db: TrivyDb,
    runner: Runner,
    tmp_path: Path,
) -> None:
    keys = tmp_path / "keys"
    keys.mkdir()
    runner.run(["cosign", "generate-key-pair"], cwd=keys, env={"COSIGN_PASSWORD": "right-pass-1"})
    env = {**env_for(private_registry, trivy_db), "COSIGN_KEY": str(keys / "cosign.key")}
    m = build_and_gate(project, env)
    wrong = run_dcforge("publish", cwd=project, env={**env, "COSIGN_PASSWORD": "wrong-pass-2"})
    assert wrong.returncode == 7
    last = wrong.stderr.strip().splitlines()[-1]
    assert last.startswith("error: publish refused: COSIGN_PASSWORD does not decrypt")
    assert str(keys / "cosign.key") in last and last.endswith("nothing was pushed")
    assert "wrong-pass-2" not in wrong.stderr
    assert private_registry.catalog() == []
    assert set(floating(runner, m).values()) == {None}
    assert lkg(runner, private_registry) is None
    # The right password, but the public key of another pair: nothing signed would verify.
    (tmp_path / "other").mkdir()
    runner.run(["cosign", "generate-key-pair"], cwd=tmp_path / "other", env={"COSIGN_PASSWORD": ""})
    unpaired = run_dcforge(
        "publish",
        cwd=project,
        env={
            **env,
            "COSIGN_PASSWORD": "right-pass-1",
            "COSIGN_PUBLIC_KEY": str(tmp_path / "other/cosign.pub"),
        },
    )
    assert unpaired.returncode == 7, unpaired.stderr
    last = unpaired.stderr.strip().splitlines()[-1]
    assert "is not the private key of the public key" in last, last
    assert str(tmp_path / "other/cosign.pub") in last and last.endswith("nothing was pushed")
    assert private_registry.catalog() == []
    ok = run_dcforge("publish", cwd=project, env={**env, "COSIGN_PASSWORD": "right-pass-1"})
    assert ok.returncode == 0, ok.stderr
    assert floating(runner, m) == at(m)


@rel(
    "signing the new last-known-good statement fails",
    "last-known-good put back on A's signed statement; re-run completes and verifies",
)
def test_pin_signature_fails(
    release_and_next: TwoReleases,
    private_registry: PrivateRegistry,
    runner: Runner,
    tmp_path: Path,
) -> None:
    project, env, a, b = (
        release_and_next.root,
        release_and_next.env,
        release_and_next.a,
        release_and_next.b,
    )
    pointer = lkg(runner, private_registry)
    # B's images are signed first, then its record, then the pin statement: fail that one.
    images = sum(len(e.platform_images()) + e.multi_platform for e in b.permutations)
    fired = tmp_path / "f" / "fired"
    inject = faults.wrapper(
        tmp_path / "f",
        "cosign",
        "attach signature",
        images + 2,
        f'touch "{fired}"; echo "injected: the registry refused the signature" >&2; exit 1',
        version_json=json.dumps({"gitVersion": toolpins.pins()["cosign"]}),
    )
    broken = run_dcforge("publish", cwd=project, env=with_path(env, inject))
    assert fired.exists(), broken.stderr
    assert broken.returncode != 0
    assert "injected: the registry refused the signature" in broken.stderr
    last = broken.stderr.strip().splitlines()[-1]
    assert "last-known-good was put back" in last and "re-run publish to pin it" in last, last
    # The statement the push tagged was never signed: the tag went back to A's (signed).
    assert lkg(runner, private_registry) == pointer
    assert floating(runner, b) == at(b)  # phase 2 had moved them; the pin comes last
    done = run_dcforge("publish", cwd=project, env=env)
    assert done.returncode == 0, done.stderr
    assert lkg(runner, private_registry) not in (None, pointer)
    assert run_dcforge("verify", cwd=project, env=env).returncode == 0
    assert floating(runner, a) != at(a)


@rel(
    "Trivy killed mid-scan (timeout)",
    "gate blocks naming the timeout; gate.json written whole, passed=false",
)
def test_trivy_timeout_blocks(project: Path, trivy_db: TrivyDb) -> None:
    assert run_dcforge("build", "--no-prune", cwd=project).returncode == 0
    result = run_dcforge(
        "gate",
        cwd=project,
        env={"DCFORGE_TRIVY_DB_REPOSITORY": trivy_db.repository, "DCFORGE_SCAN_TIMEOUT": "0.05"},
    )
    assert result.returncode == 6
    assert "timed out after 0.05 s" in result.stderr
    import json

    doc = json.loads((project / "dist/gate.json").read_text())
    assert doc["passed"] is False


@rel("dist/ on a full filesystem", "build fails clearly; no manifest.json, no partial files")
def test_full_filesystem(project: Path, tmp_path: Path) -> None:
    mount = tmp_path / "small"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)], check=True)
    try:
        result = run_dcforge("build", "--no-prune", cwd=project, env={"DCFORGE_DIST": str(mount)})
        assert result.returncode == 4, result.stderr
        assert "no space left on device" in result.stderr.lower()
        assert "Traceback" not in result.stderr
        assert sorted(p.name for p in mount.iterdir()) == []
    finally:
        subprocess.run(["umount", str(mount)], check=True)


@rel(
    "two publishes of a commit and its parent at once (two checkouts)",
    "the descendant's release ends up on the floating tags and last-known-good; the parent's "
    "publish either finished first or was refused for going back",
)
def test_concurrent_publishes(
    private_registry: PrivateRegistry, trivy_db: TrivyDb, runner: Runner, tmp_path: Path
) -> None:
    env = env_for(private_registry, trivy_db)
    root = write_project(tmp_path / "one", registry="localhost:5000/unused")
    (root / "images/tiny/greeting.txt").write_text("one\n")
    (root / ".gitignore").write_text(".dcforge/\ndist/\n")
    git_commit(root, "one")
    built = [(root, build_and_gate(root, env))]
    child = tmp_path / "two"
    subprocess.run(["git", "clone", "-q", str(root), str(child)], check=True)
    (child / "images/tiny/greeting.txt").write_text("two\n")
    git_commit(child, "two")
    built.append((child, build_and_gate(child, env)))
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "dcforge", "publish"],
            cwd=root,
            env={**base_env(), **env},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for root, _ in built
    ]
    (_, parent), (_, descendant) = [p.communicate(timeout=600) for p in procs]  # stderr
    assert procs[1].returncode == 0, descendant
    assert procs[0].returncode == 0 or (
        procs[0].returncode == 7 and "descends from the pinned release" in parent
    ), parent
    newer = built[1][1]
    assert floating(runner, newer) == at(newer)
    releases = f"{private_registry.host}/dc/dcforge-releases"
    winner_record = registry.resolve(runner, f"{releases}:{newer.git_sha}", plain_http=True)
    assert pinned_record(runner, releases, tmp_path) == winner_record


@rel("dockerd restarted during a build", "clear build error; no manifest written; re-run completes")
@pytest.mark.alone(0)
def test_dockerd_restart_during_build(project: Path, runner: Runner) -> None:
    # The dockerd scripts/bootstrap started (its pid file), else dockerd's own pid file.
    pid_file = ROOT / ".dcforge/run/dockerd.pid"
    if not pid_file.is_file():
        pid_file = Path("/var/run/docker.pid")
    assert pid_file.is_file(), "no dockerd pid file: is dockerd running?"
    slow = project / "images/tiny/Dockerfile"
    slow.write_text(slow.read_text() + "RUN sleep 30\n")
    git_commit(project, "slow build")
    proc = subprocess.Popen(
        [sys.executable, "-m", "dcforge", "build", "--no-prune"],
        cwd=project,
        env=base_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    seen = []
    try:
        # Wait until dcforge says the bake session is running (the RUN takes 30 s).
        assert proc.stderr is not None
        for line in proc.stderr:
            seen.append(line)
            if "building (bake session" in line:
                break
        subprocess.run(["kill", pid_file.read_text().strip()], check=True)
        _, rest = proc.communicate(timeout=300)
        err = "".join(seen) + rest
    finally:
        subprocess.run(
            [str(ROOT / "scripts/bootstrap")],
            check=True,
            env=base_env(),
            capture_output=True,
            timeout=300,
        )
    assert proc.returncode != 0
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith("error:")
    assert not (project / "dist/manifest.json").exists()
    slow.write_text(slow.read_text().replace("RUN sleep 30\n", ""))
    git_commit(project, "fast again")
    again = run_dcforge("build", "--no-prune", cwd=project)
    assert again.returncode == 0, again.stderr
