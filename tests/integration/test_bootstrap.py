"""What scripts/bootstrap does to a machine it did not set up: an existing
/etc/docker/daemon.json is merged (a backup kept), never replaced; a broken one stops it. On
GitHub's ubuntu-24.04 runner image (tests/integration/runner_images.py) it installs nothing
and takes the setup actions' tools and emulation; it reads the project's settings through
dcforge's own reader, so a registry set only in pyproject.toml is the one it acts on."""

from __future__ import annotations

import concurrent.futures
import functools
import hashlib
import http.server
import io
import json
import os
import platform
import re
import shutil
import socket
import subprocess
import sys
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from dcforge.core import settings, toolpins
from dcforge.core.errors import ToolError
from dcforge.infra import hostsetup
from tests.integration.conftest import base_env
from tests.integration.runner_images import UBUNTU_2404

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.integration


def merge(path: Path) -> subprocess.CompletedProcess[str]:
    """Run the exact daemon.json merge the bootstrap runs (its heredoc), on ``path``."""
    script = (ROOT / "scripts/bootstrap").read_text()
    found = re.search(r"<<'PY' \|\| exit 1\n(.*?)\nPY\n", script, re.S)
    assert found, "the daemon.json merge moved; update this test"
    return subprocess.run(
        [sys.executable, "-", str(path)],
        input=found[1],
        capture_output=True,
        text=True,
        check=False,
    )


def test_an_existing_daemon_json_is_merged_not_replaced(tmp_path: Path) -> None:
    path = tmp_path / "daemon.json"
    mine = {
        "log-driver": "journald",
        "registry-mirrors": ["https://m.example"],
        "features": {"cdi": True},
    }
    path.write_text(json.dumps(mine))
    assert merge(path).returncode == 0
    merged = json.loads(path.read_text())
    assert merged == {**mine, "features": {"cdi": True, "containerd-snapshotter": True}}
    assert json.loads((tmp_path / "daemon.json.before-dcforge").read_text()) == mine
    before = path.read_bytes()
    assert merge(path).returncode == 0 and path.read_bytes() == before  # idempotent


@pytest.mark.parametrize("text", ["{not json", "[1, 2]", '{"features": "on"}'])
def test_a_daemon_json_it_cannot_read_stops_it_and_is_left_alone(tmp_path: Path, text: str) -> None:
    path = tmp_path / "daemon.json"
    path.write_text(text)
    result = merge(path)
    assert result.returncode != 0 and "bootstrap: error:" in result.stderr
    assert path.read_text() == text


def test_no_daemon_json_gets_just_the_image_store(tmp_path: Path) -> None:
    path = tmp_path / "daemon.json"
    assert merge(path).returncode == 0
    assert json.loads(path.read_text()) == {"features": {"containerd-snapshotter": True}}


def _on_runner(
    tmp_path: Path, setup: dict[str, dict[str, str]], env: dict[str, str]
) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    """scripts/bootstrap as a build job runs it on GitHub's ubuntu-24.04 image, after the
    setup actions named in ``setup``; returns its result and the apt-get calls it made."""
    runner_dir = tmp_path / "runner"
    (runner_dir / "temp").mkdir(parents=True)
    UBUNTU_2404.prepare(runner_dir)
    path = [p for action, given in setup.items()
            for p in UBUNTU_2404.setup_action(action, given, runner_dir)]  # fmt: skip
    full = {**base_env(), "GITHUB_ACTIONS": "true", "CI": "true", **env}
    full["PATH"] = os.pathsep.join([*path, full["PATH"]])
    argv = UBUNTU_2404.wrap([str(ROOT / "scripts/bootstrap")], runner_dir)
    done = subprocess.run(argv, env=full, capture_output=True, text=True, timeout=600, check=False)
    return done, UBUNTU_2404.apt_calls(runner_dir)


# build-publish.yml's endpoints: GHCR, and the base images from Docker Hub.
WORKFLOW_ENV = {
    "DCFORGE_REGISTRY": "ghcr.io/acme/images",
    "DCFORGE_BASE_REGISTRY": "docker.io/library",
}
# What the workflow's build job sets up before its session runs scripts/bootstrap.
BUILD_JOB_SETUP = {
    "docker/setup-qemu-action": {"platforms": "arm64"},
    "oras-project/setup-oras": {"version": "1.2.0"},
    "sigstore/cosign-installer": {"cosign-release": "v2.5.0"},
}


def test_on_githubs_ubuntu_2404_runner_it_installs_nothing_and_finds_emulation(
    stack: str, tmp_path: Path
) -> None:
    done, apt = _on_runner(tmp_path, BUILD_JOB_SETUP, WORKFLOW_ENV)
    assert done.returncode == 0, done.stdout + done.stderr
    assert apt == []
    assert "arm64:     emulated" in done.stdout, done.stdout
    assert "registry:  ghcr.io/acme/images (remote; no local registry started)" in done.stdout


def test_on_the_runner_a_job_without_setup_qemu_gets_a_warning_not_a_failure(
    stack: str, tmp_path: Path
) -> None:
    setup = {k: v for k, v in BUILD_JOB_SETUP.items() if k != "docker/setup-qemu-action"}
    done, apt = _on_runner(tmp_path, setup, WORKFLOW_ENV)
    assert done.returncode == 0, done.stdout + done.stderr
    assert apt == [] and "arm64 permutations will not build" in done.stdout


def test_on_the_runner_a_missing_tool_names_its_setup_action(stack: str, tmp_path: Path) -> None:
    setup = {k: v for k, v in BUILD_JOB_SETUP.items() if k != "sigstore/cosign-installer"}
    done, apt = _on_runner(tmp_path, setup, WORKFLOW_ENV)
    assert done.returncode == 1 and apt == []
    assert "::error::this machine lacks what dcforge's stack needs" in done.stderr
    assert "cosign: add sigstore/cosign-installer to the workflow" in done.stdout
    assert "Traceback" not in done.stdout + done.stderr


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_registry_set_only_in_pyproject_is_the_one_bootstrap_acts_on(
    stack: str, tmp_path: Path
) -> None:
    """[tool.dcforge] names GHCR and Docker Hub and no DCFORGE_* says otherwise: no local
    registry is started (the script used to read only the environment and start one), and
    base-images has nothing to make."""
    project = tmp_path / "project"
    for name in ("scripts", "src"):
        shutil.copytree(ROOT / name, project / name, ignore=shutil.ignore_patterns("__pycache__"))
    pyproject = (ROOT / "pyproject.toml").read_text()
    mine = pyproject.replace(
        'registry = "localhost:5000/dcforge"\nbase_registry = "localhost:5000/library"',
        'registry = "ghcr.io/acme/images"\nbase_registry = "docker.io/library"',
        1,
    )
    assert mine != pyproject
    (project / "pyproject.toml").write_text(mine)
    port = _free_port()
    env = {**base_env(), "DCFORGE_REGISTRY_ADDR": f"127.0.0.1:{port}"}
    try:
        done = subprocess.run(
            [str(project / "scripts/bootstrap")], env=env, capture_output=True, text=True,
            timeout=600, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr
        assert not (project / ".dcforge/run/registry.pid").exists(), done.stdout
        assert "ghcr.io/acme/images (remote; no local registry started)" in done.stdout
        bases = subprocess.run(
            [str(project / "scripts/base-images")], env=env, capture_output=True, text=True,
            timeout=600, check=False,
        )  # fmt: skip
        assert bases.returncode == 0, bases.stderr
        assert "base images come from docker.io/library (not local)" in bases.stdout
    finally:
        subprocess.run([str(project / "scripts/bootstrap"), "--stop"], env=env, check=False,
                       capture_output=True, timeout=120)  # fmt: skip


@pytest.fixture
def release_server(tmp_path: Path) -> Iterator[str]:
    """A local HTTP server standing in for a project's release downloads."""
    root = tmp_path / "releases"
    root.mkdir()
    (root / "cosign-linux-amd64").write_bytes(b"#!/bin/sh\necho cosign\n")
    payload = b"#!/bin/sh\necho oras\n"
    info = tarfile.TarInfo("oras")
    info.size = len(payload)
    with tarfile.open(root / "oras.tar.gz", "w:gz") as tar:
        tar.addfile(info, io.BytesIO(payload))
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        thread.join()
        server.server_close()


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_release_binary_is_installed_only_with_its_pinned_sha256(
    release_server: str, tmp_path: Path
) -> None:
    """What Ubuntu does not package (cosign, oras) comes from the project's release, checked
    against the sha256 in dcforge's toolchain.toml before anything is written."""
    served = tmp_path / "releases"
    pins = {
        "cosign.amd64": (
            f"{release_server}/cosign-linux-amd64",
            _sha(served / "cosign-linux-amd64"),
        ),
        "oras.amd64": (f"{release_server}/oras.tar.gz", _sha(served / "oras.tar.gz")),
    }
    dest = tmp_path / "bin"
    cosign = hostsetup.fetch("cosign", dest, pins, "x86_64", {})
    oras = hostsetup.fetch("oras", dest, pins, "x86_64", {})
    assert cosign.read_bytes() == (served / "cosign-linux-amd64").read_bytes()
    assert oras.read_bytes() == b"#!/bin/sh\necho oras\n"
    assert os.access(cosign, os.X_OK) and os.access(oras, os.X_OK)

    tampered = {"cosign.amd64": (pins["cosign.amd64"][0], "0" * 64)}
    with pytest.raises(ToolError, match=r"dcforge pins 0{64} .*refusing it"):
        hostsetup.fetch("cosign", tmp_path / "other", tampered, "x86_64", {})
    assert not (tmp_path / "other").exists()  # nothing written
    wrong_member = {"syft.amd64": pins["oras.amd64"]}
    with pytest.raises(ToolError, match=r"no file 'syft' in the release tarball"):
        hostsetup.fetch("syft", tmp_path / "other", wrong_member, "x86_64", {})
    with pytest.raises(ToolError, match=r"no .* pin for cosign\.arm64"):
        hostsetup.fetch("cosign", dest, pins, "aarch64", {})


def test_the_shipped_release_pins_cover_both_architectures() -> None:
    pins = toolpins.upstream_pins()
    assert set(pins) == {"cosign.amd64", "cosign.arm64", "oras.amd64", "oras.arm64"}
    assert all(url.startswith("https://github.com/") for url, _ in pins.values())


def test_without_a_node_20_the_cli_runs_on_nodes_own_build(tmp_path: Path) -> None:
    """Debian 12 and Ubuntu 24.04 package Node.js 18 (and trixie's needs trixie's libc):
    Node's own build comes from the npm registry, integrity checked, under the state folder,
    and the pinned CLI runs on it. A wrong integrity is refused before anything is written."""
    state = tmp_path / "state"
    old_node = tmp_path / "bin/node"
    old_node.parent.mkdir()
    old_node.write_text("#!/bin/sh\necho v18.19.1\n")  # what Debian 12's nodejs says
    old_node.chmod(0o755)
    conf = settings.load(ROOT, {"DCFORGE_STATE_DIR": str(state)})
    env = {"PATH": f"{old_node.parent}:{os.defpath}"}  # the old node is found first
    cli = hostsetup.install_node_tools(conf, env)
    node = state / "tools/node/bin/node"
    assert f"exec {node} " in cli.read_text()
    ran = subprocess.run([str(cli), "--version"], capture_output=True, text=True, check=True)
    assert ran.stdout.strip() == toolpins.npm_pins()["@devcontainers/cli"]
    version = subprocess.run([str(node), "--version"], capture_output=True, text=True, check=True)
    package = f"node-linux-{hostsetup.NODE_ARCHES[platform.machine()]}"
    assert version.stdout.strip() == "v" + toolpins.npm_pins()[package]

    pins = toolpins.npm_pins()
    wrong = pins["@devcontainers/cli#integrity"][:-6] + "AAAAA="
    with pytest.raises(ToolError, match="does not match its pinned integrity"):
        hostsetup.npm_tarball("@devcontainers/cli", pins["@devcontainers/cli"], wrong, {})


def test_two_installs_at_once_leave_one_working_cli(tmp_path: Path) -> None:
    """Two bootstraps on one state folder (a lock serialises them; each swaps a whole
    unpacked CLI in), and an install over a damaged one repairs it."""
    conf = settings.load(ROOT, {"DCFORGE_STATE_DIR": str(tmp_path / "state")})
    env = {"PATH": os.environ["PATH"]}
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        clis = list(pool.map(lambda _: hostsetup.install_node_tools(conf, env), range(2)))
    assert clis[0] == clis[1]
    want = toolpins.npm_pins()["@devcontainers/cli"]
    ran = subprocess.run([str(clis[0]), "--version"], capture_output=True, text=True, check=True)
    assert ran.stdout.strip() == want
    package = tmp_path / "state/tools/devcontainer-cli/node_modules/@devcontainers/cli"
    (package / "devcontainer.js").unlink()
    hostsetup.install_node_tools(conf, env)
    ran = subprocess.run([str(clis[0]), "--version"], capture_output=True, text=True, check=True)
    assert ran.stdout.strip() == want
    leftovers = [p.name for p in package.parent.iterdir() if p.name != "cli"]
    assert leftovers == [], leftovers
