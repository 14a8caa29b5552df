"""The facts ``scripts/bootstrap`` decides from, read off this machine, and the plan handed
back to it as shell assignments (``python -m dcforge host-plan``).

The scripts read the project's settings here, through the one reader the CLI uses
(``[tool.dcforge]`` with ``DCFORGE_*`` overrides), instead of parsing them again in shell.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import fcntl
import hashlib
import io
import json
import os
import platform
import shlex
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path

import requests

from dcforge.core import hostplan, toolpins
from dcforge.core.errors import ToolError
from dcforge.core.files import extract_plain
from dcforge.core.settings import Settings, is_loopback
from dcforge.infra.tools.devcontainer_cli import INSTALL_DIR, PACKAGE

BINFMT = Path("/proc/sys/fs/binfmt_misc")
OS_RELEASE = (Path("/etc/os-release"), Path("/usr/lib/os-release"))
# Tools found by their command on PATH (their version is read only where it matters);
# busybox, qemu, buildx and node are found otherwise (read_facts).
COMMANDS: tuple[str, ...] = (
    *("dockerd", "docker", "cosign", "oras", "skopeo", "curl"),
    *("docker-registry", "debootstrap", "mmdebstrap", "arch-test"),
)
DEFAULT_REGISTRY_ADDR = "127.0.0.1:5000"


def _output(argv: list[str], env: Mapping[str, str]) -> str | None:
    """A version command's first line, or None when it cannot run."""
    try:
        done = subprocess.run(
            argv, capture_output=True, text=True, timeout=30, check=False, env=dict(env)
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip().splitlines()[0] if done.returncode == 0 and done.stdout else None


def _binfmt_entries() -> dict[str, str]:
    entries: dict[str, str] = {}
    status = BINFMT / "status"
    if not BINFMT.is_dir() or (status.is_file() and status.read_text().strip() == "disabled"):
        return entries  # binfmt_misc off as a whole: no handler runs
    for entry in BINFMT.iterdir():
        if entry.name in ("register", "status"):
            continue
        try:
            entries[entry.name] = entry.read_text()
        except OSError:
            continue
    return entries


def _os_release() -> dict[str, str]:
    for path in OS_RELEASE:
        if path.is_file():
            return hostplan.parse_os_release(path.read_text(errors="replace"))
    return {}


def read_facts(conf: Settings, env: Mapping[str, str]) -> hostplan.HostFacts:
    """What this machine has: os-release, tools on PATH, binfmt handlers, the engine."""
    path = env.get("PATH", os.defpath)
    tools = {name: "" for name in COMMANDS if shutil.which(name, path=path)}
    if Path("/bin/busybox").is_file():
        tools["busybox"] = ""
    if Path("/usr/lib/binfmt.d/qemu-aarch64.conf").is_file():
        tools["qemu"] = ""  # a handler to register (Debian's and Ubuntu's qemu-user-static)
    if "docker" in tools:
        buildx = hostplan.buildx_version(_output(["docker", "buildx", "version"], env) or "")
        if buildx is not None:
            tools["buildx"] = buildx
    node = shutil.which("node", path=path) and _output(["node", "--version"], env)
    if node:
        tools["node"] = node
    engine = "docker" in tools and _output(
        ["docker", "version", "--format", "{{.Server.Version}}"], env
    )
    return hostplan.HostFacts(
        os_release=_os_release(),
        machine=platform.machine(),
        root=os.geteuid() == 0,
        github_actions=env.get("GITHUB_ACTIONS") == "true",
        apt=bool(shutil.which("apt-get", path=path)),
        binfmt=_binfmt_entries(),
        tools=tools,
        engine_up=bool(engine),
        local_registry=_local_stack(conf),
    )


def _local_stack(conf: Settings) -> bool:
    """A registry on this machine is needed: to publish to, or for the base images."""
    return is_loopback(conf.registry) or is_loopback(conf.base_registry)


def registry_addr(conf: Settings, env: Mapping[str, str]) -> str:
    """Where the local registry listens: DCFORGE_REGISTRY_ADDR, else the port of the first
    loopback one of the registry and base_registry settings on 127.0.0.1
    (``localhost:5001/dcforge`` → ``127.0.0.1:5001``; no port: 5000)."""
    if env.get("DCFORGE_REGISTRY_ADDR"):
        return env["DCFORGE_REGISTRY_ADDR"]
    for reference in (conf.registry, conf.base_registry):
        if is_loopback(reference):
            host = reference.split("/", 1)[0]
            _, colon, port = host.rpartition(":")
            if colon and port.isdigit() and not host.endswith("]"):
                return f"127.0.0.1:{port}"
            break
    return DEFAULT_REGISTRY_ADDR


def settings_lines(conf: Settings, env: Mapping[str, str]) -> list[str]:
    """The settings the scripts use, as shell assignments."""
    values = {
        "DCF_STATE": str(conf.state_root),
        "DCF_REGISTRY": conf.registry,
        "DCF_BASE_REGISTRY": conf.base_registry,
        "DCF_LOCAL": "1" if _local_stack(conf) else "0",
        "DCF_LOCAL_BASES": "1" if is_loopback(conf.base_registry) else "0",
        "DCF_REGISTRY_ADDR": registry_addr(conf, env),
        "DCF_MIRROR": env.get("DCFORGE_DEBIAN_MIRROR", "http://deb.debian.org/debian"),
        "DCF_CLI": str(conf.state_root / INSTALL_DIR / "node_modules" / ".bin" / "devcontainer"),
        "DCF_CLI_VERSION": toolpins.npm_pins()[PACKAGE],
    }
    return [f"{name}={shlex.quote(value)}" for name, value in values.items()]


def plan_lines(conf: Settings, env: Mapping[str, str]) -> list[str]:
    """The settings and the host plan, as shell assignments for ``eval``."""
    facts = read_facts(conf, env)
    trixie_pins, bookworm_pins = toolpins.debian_pins("trixie"), toolpins.debian_pins("bookworm")
    made = hostplan.plan(facts, frozenset(trixie_pins))
    # dcforge's pinned versions (an upstream-version prefix: a Debian revision bump is taken,
    # a new release is not): the trixie ones on Debian 12 and 13, bookworm's on Debian 12.
    release = facts.os_release
    pins = {
        **(bookworm_pins if hostplan.bookworm(release) else {}),
        **(trixie_pins if hostplan.takes_trixie_pins(release) else {}),
    }

    def pinned(packages: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(f"{p}={pins[p]}*" if p in pins else p for p in packages)

    def array(name: str, items: tuple[str, ...]) -> str:
        return f"{name}=({' '.join(shlex.quote(item) for item in items)})"

    return [
        *settings_lines(conf, env),
        f"DCF_FAMILY={shlex.quote(made.family)}",
        array("DCF_INSTALL", pinned(made.install)),
        array("DCF_INSTALL_TRIXIE", pinned(made.install_trixie)),
        array("DCF_DOWNLOAD", made.download),
        array("DCF_MANUAL", made.manual),
        f"DCF_NODE={'system' if hostplan.node_ok(facts.tools) else 'fetch'}",
        f"DCF_ARM64={made.arm64}",
        f"DCF_ACTIONS={'1' if facts.github_actions else '0'}",
        f"DCF_ADD_TRIXIE={'1' if hostplan.bookworm(facts.os_release) else '0'}",
    ]


ARCHES = {"x86_64": "amd64", "aarch64": "arm64"}
NODE_ARCHES = {"x86_64": "x64", "aarch64": "arm64"}
MAX_DOWNLOAD_BYTES = 512 * 1024 * 1024
NPM_REGISTRY = "https://registry.npmjs.org"
NODE_DIR = Path("tools/node")


# What the machine trusts (curl's and apt's store, with the CAs a network adds to it), before
# requests' own bundle: a proxy's CA installed with update-ca-certificates is honoured.
SYSTEM_CA_BUNDLES = (
    Path("/etc/ssl/certs/ca-certificates.crt"),  # Debian, Ubuntu
    Path("/etc/pki/tls/certs/ca-bundle.crt"),  # Fedora, RHEL
)


def _verify(env: Mapping[str, str]) -> str | bool:
    """The CA bundle a download trusts: one the environment names (as requests and curl
    read them), else the system's, else requests' own."""
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        if env.get(name):
            return env[name]
    found = next((path for path in SYSTEM_CA_BUNDLES if path.is_file()), None)
    return str(found) if found else True


def _download(url: str, what: str, env: Mapping[str, str]) -> bytes:
    """``url``'s body (redirects followed, at most MAX_DOWNLOAD_BYTES); one clear error."""
    data = bytearray()
    try:
        with requests.get(url, timeout=(30, 300), stream=True, verify=_verify(env)) as answer:
            answer.raise_for_status()
            for chunk in answer.iter_content(chunk_size=1 << 20):
                data += chunk
                if len(data) > MAX_DOWNLOAD_BYTES:
                    raise ToolError(f"{url}: more than {MAX_DOWNLOAD_BYTES} bytes; refusing it")
    except (requests.RequestException, OSError) as err:
        raise ToolError(f"could not download {what} from {url}: {err}") from None
    return bytes(data)


def _write_executable(target: Path, data: bytes) -> Path:
    """``data`` at ``target`` (mode 0755), whole or not at all."""
    partial: Path | None = None
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
        partial = Path(name)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        partial.chmod(0o755)
        partial.replace(target)
    except OSError as err:
        if partial is not None:
            partial.unlink(missing_ok=True)
        raise ToolError(f"could not write {target}: {err.strerror or err}") from None
    return target


def fetch(
    tool: str,
    dest: Path,
    pins: Mapping[str, tuple[str, str]],
    machine: str,
    env: Mapping[str, str],
) -> Path:
    """Put ``tool``'s pinned release binary (its sha256 checked before anything is
    written) at ``dest/tool``; a tarball gives its member named ``tool``."""
    key = f"{tool}.{ARCHES.get(machine, machine)}"
    if key not in pins:
        raise ToolError(f"no {toolpins.WHERE} [upstream] pin for {key}: install {tool} by hand")
    url, want = pins[key]
    data = _download(url, tool, env)
    got = hashlib.sha256(data).hexdigest()
    if got != want:
        raise ToolError(
            f"{url} has sha256 {got}, dcforge pins {want} ({toolpins.WHERE}); refusing it"
        )
    if url.endswith((".tar.gz", ".tgz")):
        data = _member(data, tool, url)
    return _write_executable(dest / tool, data)


def _member(data: bytes, name: str, url: str) -> bytes:
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
            member = tar.getmember(name)
            content = tar.extractfile(member) if member.isfile() else None
            if content is None:
                raise KeyError(name)
            return content.read()
    except (tarfile.TarError, KeyError, OSError) as err:
        raise ToolError(f"{url}: no file '{name}' in the release tarball ({err})") from None


def npm_tarball(package: str, version: str, integrity: str, env: Mapping[str, str]) -> bytes:
    """A package's tarball from the npm registry, checked against its pinned integrity
    (npm's ``sha512-<base64>``) before it is used."""
    url = f"{NPM_REGISTRY}/{package}/-/{package.rsplit('/', 1)[-1]}-{version}.tgz"
    data = _download(url, f"{package}@{version}", env)
    algo, _, want = integrity.partition("-")
    try:
        ok = hashlib.new(algo, data).digest() == base64.b64decode(want, validate=True)
    except (ValueError, binascii.Error):
        ok = False
    if not ok:
        raise ToolError(
            f"{package}@{version} from the npm registry does not match its pinned integrity "
            f"{integrity} ({toolpins.WHERE}); refusing it"
        )
    return data


def _npm_pin(pins: Mapping[str, str], package: str) -> tuple[str, str]:
    if package not in pins or f"{package}#integrity" not in pins:
        raise ToolError(f"{toolpins.WHERE}: no pin for {package} in [npm]")
    return pins[package], pins[f"{package}#integrity"]


@contextlib.contextmanager
def _tools_lock(state_root: Path) -> Iterator[None]:
    """One installer at a time in a state folder (two bootstraps may run at once)."""
    (state_root / "tools").mkdir(parents=True, exist_ok=True)
    with (state_root / "tools" / ".lock").open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        yield


def _node_runs(node: Path, version: str, env: Mapping[str, str]) -> bool:
    return node.is_file() and _output([str(node), "--version"], env) == f"v{version}"


def install_node(
    state_root: Path, pins: Mapping[str, str], machine: str, env: Mapping[str, str]
) -> Path:
    """Node's own Linux build (npm's ``node-linux-<arch>``) under the state folder."""
    if machine not in NODE_ARCHES:
        raise ToolError(f"no Node.js build for {machine}: install Node.js 20 or newer")
    package = f"node-linux-{NODE_ARCHES[machine]}"
    version, integrity = _npm_pin(pins, package)
    target = state_root / NODE_DIR / "bin" / "node"
    if _node_runs(target, version, env):
        return target
    data = npm_tarball(package, version, integrity, env)
    _write_executable(target, _member(data, "package/bin/node", package))
    if not _node_runs(target, version, env):
        raise ToolError(f"{target} ({package}@{version}) does not run here")
    return target


def install_cli(
    state_root: Path, pins: Mapping[str, str], node: str, env: Mapping[str, str]
) -> Path:
    """The pinned Dev Containers CLI (it has no dependencies: its tarball is the whole CLI)
    under the state folder, unpacked anew beside the old one and swapped in whole, started
    by ``node``; its ``.bin/devcontainer`` is what dcforge runs."""
    version, integrity = _npm_pin(pins, PACKAGE)
    root = state_root / INSTALL_DIR / "node_modules"
    package = root / PACKAGE
    data = npm_tarball(PACKAGE, version, integrity, env)
    package.parent.mkdir(parents=True, exist_ok=True)
    unpacked = Path(tempfile.mkdtemp(prefix=".cli-", dir=package.parent))
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
            extract_plain(tar, unpacked)
        (top,) = unpacked.iterdir()  # npm's "package/" (one folder, whatever its name)
        meta = json.loads((top / "package.json").read_text())
        if (meta.get("name"), meta.get("version")) != (PACKAGE, version):
            raise ToolError(f"the {PACKAGE} tarball names {meta.get('name')}@{meta.get('version')}")
        old = package.with_name(f"{package.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        if package.exists():
            package.replace(old)
        top.replace(package)
        shutil.rmtree(old, ignore_errors=True)
    except (tarfile.TarError, OSError, ValueError) as err:
        raise ToolError(f"could not unpack {PACKAGE}@{version} under {root}: {err}") from None
    finally:
        shutil.rmtree(unpacked, ignore_errors=True)
    main = shlex.quote(str(package / "devcontainer.js"))
    script = f'#!/bin/sh\nexec {shlex.quote(node)} {main} "$@"\n'
    return _write_executable(root / ".bin" / "devcontainer", script.encode())


def install_node_tools(conf: Settings, env: Mapping[str, str]) -> Path:
    """The Dev Containers CLI (installed anew: the bootstrap asks when the one there does not
    answer with the pinned version), on this machine's Node.js when it is 20 or newer, else
    on Node's own build fetched for it."""
    pins, path = toolpins.npm_pins(), env.get("PATH", os.defpath)
    system = shutil.which("node", path=path)
    version = _output([system, "--version"], env) if system else None
    with _tools_lock(conf.state_root):
        if system and version and hostplan.node_ok({"node": version}):
            # The path that answered, not its target: snap's and Volta's launchers pick
            # what to run by the name they are called by.
            node = os.path.abspath(system)
        else:
            node = str(install_node(conf.state_root, pins, platform.machine(), env))
        return install_cli(conf.state_root, pins, node, env)
