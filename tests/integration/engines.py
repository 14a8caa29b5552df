"""A second Docker engine for a test: its own dockerd (data-root, exec-root, socket,
containerd), on Docker's classic image store or on the containerd store.

``network="none"``: in a network namespace of its own with no bridge (containers only
run with ``--network none``; nothing on the host's network is touched — a dockerd started
with ``--bridge none`` in the host's namespace deletes the host's ``docker0``).
``network="bridge"``: in the host's namespace (its BuildKit pulls base images from the
loopback registry) on a bridge of its own, with no iptables rules."""

from __future__ import annotations

import json
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class SecondEngine:
    host: str  # unix:///…/docker.sock
    store: str  # "classic" | "containerd"


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


def _ping(path: str) -> bool:
    """The engine's API answers ``GET /_ping`` with OK (its start has no other signal)."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(5)
            sock.connect(path)
            sock.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
            status = sock.recv(4096).split(b"\r\n", 1)[0].split()
            return len(status) > 1 and status[1] == b"200"
    except OSError:
        return False


def _answers(path: str, proc: subprocess.Popen[bytes], deadline: float) -> None:
    while not _ping(path):
        if proc.poll() is not None:
            raise RuntimeError(f"the second dockerd exited {proc.returncode}")
        if time.monotonic() > deadline:
            raise RuntimeError("the second dockerd did not answer within 90 s")
        time.sleep(0.2)  # polling a starting daemon, not synchronising a test


@contextmanager
def docker_context(host: str = "") -> Iterator[str]:
    """A docker context of its own for the engine at ``host`` (default: the current
    context's, under another name) — what the ``builder`` setting may name."""
    if not host:
        host = subprocess.run(
            ["docker", "context", "inspect", "--format", "{{.Endpoints.docker.Host}}"],
            capture_output=True, text=True, check=True,
        ).stdout.strip()  # fmt: skip
    name = f"dcforge-{uuid.uuid4().hex[:8]}"
    subprocess.run(
        ["docker", "context", "create", name, "--docker", f"host={host}"],
        capture_output=True, check=True,
    )  # fmt: skip
    try:
        yield name
    finally:
        subprocess.run(["docker", "context", "rm", "-f", name], capture_output=True, check=False)


@contextmanager
def second_engine(store: str, network: str = "none") -> Iterator[SecondEngine]:
    # A short path: a unix socket path is limited to 108 bytes.
    root = Path(tempfile.mkdtemp(prefix="dcf-engine-", dir="/var/tmp"))
    config = {"features": {"containerd-snapshotter": store == "containerd"}}
    (root / "daemon.json").write_text(json.dumps(config))
    host = f"unix://{root}/docker.sock"
    argv = [
        "dockerd",
        f"--config-file={root}/daemon.json",
        f"--data-root={root}/data",
        f"--exec-root={root}/exec",
        f"--pidfile={root}/docker.pid",
        f"--host={host}",
        "--iptables=false",
        "--ip6tables=false",
        "--ip-masq=false",
    ]
    bridge = ""
    if network == "none":
        argv = ["unshare", "--net", "--", *argv, "--bridge=none"]
    else:
        bridge = f"dcf{uuid.uuid4().hex[:8]}"
        _ip("link", "add", bridge, "type", "bridge")
        _ip("addr", "add", "10.219.77.1/24", "dev", bridge)
        _ip("link", "set", bridge, "up")
        argv.append(f"--bridge={bridge}")
    log = (root / "dockerd.log").open("wb")
    proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        _answers(f"{root}/docker.sock", proc, time.monotonic() + 90)
        yield SecondEngine(host=host, store=store)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=30)
        log.close()
        if bridge:
            subprocess.run(["ip", "link", "del", bridge], check=False, capture_output=True)
        subprocess.run(["umount", "-R", str(root / "data")], check=False, capture_output=True)
        shutil.rmtree(root, ignore_errors=True)
