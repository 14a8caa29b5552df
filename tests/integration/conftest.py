"""The real local stack, brought up by scripts/bootstrap; fixtures bound to 127.0.0.1."""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import os
import shutil
import subprocess
import sys
import tempfile
import urllib.request
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path

import pytest

from dcforge.core import manifest as mf
from dcforge.core import trivydb
from dcforge.infra import vulndb
from dcforge.infra.runner import Runner
from dcforge.infra.tools.local_registry import LocalRegistry
from dcforge.infra.tools.registry import Registry
from tests.integration import oras_oracle as registry
from tests.projects import write_project

ROOT = Path(__file__).resolve().parents[2]
REGISTRY = "localhost:5000"
VULN_DIR = Path(__file__).parent / "data" / "vulnerable"

pytestmark = pytest.mark.integration


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests marked ``alone(rank)`` stop dockerd or empty the engine's images or build
    cache, which every other test shares: they run after all others, lowest rank first
    (``nox -s tests`` runs them in a pass of their own). Files with a ``slow`` test go
    first, so that workers side by side start the longest ones at once."""
    slow_files = {item.path for item in items if item.get_closest_marker("slow")}

    def order(item: pytest.Item) -> tuple[int, bool]:
        marker = item.get_closest_marker("alone")
        rank = 1 + int(marker.args[0]) if marker is not None else 0
        return (rank, item.path not in slow_files)

    items.sort(key=order)  # stable: file order within each


def base_env() -> dict[str, str]:
    """The environment for tools: this interpreter's bin (trivy, syft) first on PATH."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GITHUB_", "DCFORGE_"))}
    env.pop("CI", None)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', os.defpath)}"
    return env


# `nox -s tests` runs test files in workers side by side on one engine. Their builds take
# turns: a smoke container created while another worker's clean-up has containerd collect
# snapshots can lose its parent snapshot, and bakes piled up on 2 cores meet BuildKit's own
# deadlines. (Everything else — gate, publish, verify, the registry — runs side by side.)
ENGINE_LOCK = Path(tempfile.gettempdir()) / "dcforge-tests-engine.lock"


@contextmanager
def engine_to_itself() -> Iterator[None]:
    """Hold the engine for one build (or a test that loads and runs images) at a time."""
    with ENGINE_LOCK.open("a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(held, fcntl.LOCK_UN)


def run_dcforge(
    *args: str, cwd: Path, env: Mapping[str, str] | None = None, timeout: float = 900
) -> subprocess.CompletedProcess[str]:
    with engine_to_itself() if "build" in args else nullcontext():  # the one that uses it
        return subprocess.run(
            [sys.executable, "-m", "dcforge", *args],
            cwd=cwd,
            env={**base_env(), **(env or {})},
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )


def git_commit(root: Path, message: str = "test") -> str:
    def git(*a: str) -> str:
        return subprocess.run(
            ["git", "-C", str(root), *a], capture_output=True, text=True, check=True
        ).stdout.strip()

    if not (root / ".git").exists():
        git("init", "-q", "-b", "main")
    git("add", "-A")
    git(
        "-c",
        "user.name=t",
        "-c",
        "user.email=t@example.invalid",
        "commit",
        "-q",
        "--allow-empty",
        "-m",
        message,
    )
    return git("rev-parse", "HEAD")


@pytest.fixture(scope="session")
def stack() -> str:
    """Bootstrap the stack (idempotent) and make sure the busybox base is in the registry."""
    env = base_env()
    subprocess.run([str(ROOT / "scripts/bootstrap")], check=True, env=env, timeout=1200)
    subprocess.run([str(ROOT / "scripts/base-images"), "busybox"], check=True, env=env, timeout=600)
    return REGISTRY


@pytest.fixture(scope="session")
def namespace(stack: str) -> str:
    """A registry namespace of this test session's own."""
    return f"{stack}/t{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="session")
def runner() -> Runner:
    return Runner(env=base_env())


@pytest.fixture(scope="session")
def busybox_digest(stack: str, runner: Runner) -> str:
    return registry.resolve(runner, f"{stack}/library/busybox:latest", plain_http=True)


def push_db(
    runner: Runner,
    work: Path,
    repository: str,
    advisories: list[trivydb.Advisory],
    updated_at: dt.datetime | None = None,
) -> str:
    """A test DB served from the local registry (dcforge's own DB writer and push)."""
    reg = Registry(runner, frozenset({"localhost", "127.0.0.1"}))
    return vulndb.publish_db(reg, work, repository, advisories, updated_at=updated_at)


@dataclass(frozen=True)
class TrivyDb:
    repository: str
    cache_dir: Path


@pytest.fixture(scope="session")
def trivy_db(namespace: str, runner: Runner, tmp_path_factory: pytest.TempPathFactory) -> TrivyDb:
    """An offline DB (planted CRITICAL for source 'zlib'), served from the local registry."""
    repository = push_db(
        runner,
        tmp_path_factory.mktemp("trivy-db"),
        f"{namespace}/trivy-db:2",
        [trivydb.Advisory("CVE-2099-0001", "zlib", "1:1.3.0-1", "CRITICAL")],
    )
    return TrivyDb(repository, tmp_path_factory.mktemp("trivy-cache"))


@dataclass(frozen=True)
class KeyPair:
    key: Path
    pub: Path
    password: str


def _key_pair(runner: Runner, directory: Path, password: str) -> KeyPair:
    directory.mkdir(parents=True, exist_ok=True)
    runner.run(["cosign", "generate-key-pair"], cwd=directory, env={"COSIGN_PASSWORD": password})
    return KeyPair(directory / "cosign.key", directory / "cosign.pub", password)


@pytest.fixture(scope="session")
def cosign_keys(runner: Runner, tmp_path_factory: pytest.TempPathFactory) -> KeyPair:
    return _key_pair(runner, tmp_path_factory.mktemp("cosign"), "test-password-1")


@pytest.fixture(scope="session")
def other_keys(runner: Runner, tmp_path_factory: pytest.TempPathFactory) -> KeyPair:
    return _key_pair(runner, tmp_path_factory.mktemp("cosign-other"), "test-password-2")


def build_tar(runner: Runner, context: Path, out: Path, base: str) -> Path:
    """An OCI archive of ``context`` built FROM ``base`` (a digest reference)."""
    runner.run(
        [
            "docker",
            "buildx",
            "build",
            "-q",
            "--provenance=false",
            "--build-arg",
            f"BASE_IMAGE={base}",
            "--output",
            f"type=oci,dest={out}",
            context,
        ]
    )
    return out


@pytest.fixture(scope="session")
def vulnerable_tar(
    stack: str, busybox_digest: str, runner: Runner, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """busybox + a Debian os-release and a dpkg status listing zlib1g 1:1.2.13.dfsg-1."""
    out = tmp_path_factory.mktemp("vuln") / "vulnerable.tar"
    return build_tar(runner, VULN_DIR, out, f"{stack}/library/busybox@{busybox_digest}")


@pytest.fixture(scope="session")
def clean_tar(
    stack: str, busybox_digest: str, runner: Runner, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """The same image without the vulnerable package (an empty dpkg status)."""
    work = tmp_path_factory.mktemp("clean")
    for name in ("Dockerfile", "os-release"):
        (work / name).write_bytes((VULN_DIR / name).read_bytes())
    (work / "status").write_text("")
    return build_tar(runner, work, work / "clean.tar", f"{stack}/library/busybox@{busybox_digest}")


@pytest.fixture
def project(tmp_path: Path, namespace: str) -> Path:
    """A committed throwaway project building busybox permutations into ``namespace``."""
    root = write_project(tmp_path / "proj", registry=f"{namespace}/p{uuid.uuid4().hex[:8]}")
    (root / ".gitignore").write_text(".dcforge/\ndist/\n")
    git_commit(root)
    return root


VULN_FAMILY = """\
family: vuln
name: vuln
context: ../images/vuln
base: "{base_registry}/busybox:latest"
tags: [latest]
"""


@pytest.fixture
def gated_project(project: Path) -> Path:
    """tiny-one/tiny-two (clean) + vuln (zlib1g 1:1.2.13.dfsg-1, a planted CRITICAL), built."""
    shutil.copytree(VULN_DIR, project / "images/vuln")
    (project / "permutations/vuln.yaml").write_text(VULN_FAMILY)
    git_commit(project, "add vuln")
    result = run_dcforge("build", "--no-prune", cwd=project)
    assert result.returncode == 0, result.stderr
    return project


@dataclass(frozen=True)
class Shipped:
    dist: Path
    env: dict[str, str]


@pytest.fixture(scope="session")
def shipped(namespace: str, tmp_path_factory: pytest.TempPathFactory) -> Shipped:
    """The shipped permutations, built once FROM the debootstrap base into a temp dist."""
    subprocess.run(
        [str(ROOT / "scripts/base-images"), "debian"], check=True, env=base_env(), timeout=900
    )
    dist = tmp_path_factory.mktemp("shipped") / "dist"
    env = {"DCFORGE_DIST": str(dist), "DCFORGE_REGISTRY": f"{namespace}/shipped"}
    result = run_dcforge("build", "--no-prune", cwd=ROOT, env=env, timeout=1800)
    assert result.returncode == 0, result.stderr
    return Shipped(dist, env)


class PrivateRegistry(LocalRegistry):
    """A distribution registry of one test's own on a free port (so it can be killed)."""

    def blob_count(self) -> int:
        return len(self.blobs())

    def catalog(self) -> list[str]:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/v2/_catalog", timeout=5) as r:
            repos: list[str] = json.load(r)["repositories"]
        return repos


@pytest.fixture
def private_registry(tmp_path: Path) -> Iterator[PrivateRegistry]:
    reg = PrivateRegistry(tmp_path / "private-registry")
    reg.start()
    yield reg
    reg.stop()


def pinned_record(runner: Runner, releases_repo: str, work: Path) -> str:
    """The record digest ``last-known-good``'s pin statement names."""
    out = work / f"pin-{uuid.uuid4().hex[:8]}"
    registry.fetch_artifact(runner, f"{releases_repo}:last-known-good", out, plain_http=True)
    return str(json.loads((out / "pin.json").read_text())["record_digest"])


def env_for(reg: PrivateRegistry, db: TrivyDb, **extra: str) -> dict[str, str]:
    return {
        "DCFORGE_REGISTRY": f"{reg.host}/dc",
        "DCFORGE_TRIVY_DB_REPOSITORY": db.repository,
        **extra,
    }


def build_and_gate(root: Path, env: dict[str, str]) -> mf.Manifest:
    for step in (["build", "--no-prune"], ["gate"]):
        result = run_dcforge(*step, cwd=root, env=env)
        assert result.returncode == 0, result.stderr
    return mf.load(root / "dist/manifest.json")


def next_commit(root: Path, text: str) -> str:
    """The tiny image's greeting changed to ``text`` and committed: a new release's source."""
    (root / "images/tiny/greeting.txt").write_text(text)
    return git_commit(root, text.strip() or "next")


def publish_release(root: Path, env: dict[str, str], text: str = "") -> mf.Manifest:
    """Build, gate and publish the project (after ``next_commit(root, text)`` when given)."""
    if text:
        next_commit(root, text)
    m = build_and_gate(root, env)
    result = run_dcforge("publish", cwd=root, env=env)
    assert result.returncode == 0, result.stderr
    return m


@dataclass
class TwoReleases:
    root: Path
    env: dict[str, str]
    a: mf.Manifest
    b: mf.Manifest
    releases: str


@pytest.fixture
def release_and_next(
    project: Path, private_registry: PrivateRegistry, trivy_db: TrivyDb
) -> TwoReleases:
    """Release A published (pinned, served by the floating tags); the next commit, B, built
    and gated but not published — the starting point of every publish-fault test."""
    env = env_for(private_registry, trivy_db)
    a = publish_release(project, env)
    next_commit(project, f"release B {uuid.uuid4()}\n")
    b = build_and_gate(project, env)
    return TwoReleases(project, env, a, b, f"{private_registry.host}/dc/dcforge-releases")


@pytest.fixture
def two_releases(release_and_next: TwoReleases) -> TwoReleases:
    """Releases A and B both published; B is pinned and served."""
    r = release_and_next
    result = run_dcforge("publish", cwd=r.root, env=r.env)
    assert result.returncode == 0, result.stderr
    return r


def tags_point_at(runner: Runner, m: mf.Manifest) -> bool:
    return all(
        registry.resolve(runner, f"{e.repository}:{t}", plain_http=True) == e.image_digest
        for e in m.permutations
        for t in e.floating_tags
    )


def gate(
    root: Path, db: TrivyDb | str, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``dcforge gate`` in ``root`` with the DB repository ``db``."""
    repo = db if isinstance(db, str) else db.repository
    return run_dcforge(
        "gate", *args, cwd=root, env={"DCFORGE_TRIVY_DB_REPOSITORY": repo, **(env or {})}
    )


def verdicts(root: Path) -> dict[str, dict[str, object]]:
    doc = json.loads((root / "dist/gate.json").read_text())
    return {v["name"]: v for v in doc["permutations"]}


def fake_tool(directory: Path, name: str, body: str) -> Path:
    """An executable shell script ``name`` in ``directory`` (put it first on PATH)."""
    directory.mkdir(parents=True, exist_ok=True)
    script = directory / name
    script.write_text("#!/bin/sh\n" + body)
    script.chmod(0o755)
    return directory
