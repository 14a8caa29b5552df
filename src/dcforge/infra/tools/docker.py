"""The Docker engine, through the ``docker`` SDK: load an image, smoke-run it with no
network, prune a runner, and tell which image store the engine keeps images in.

The engine is the one ``DOCKER_HOST`` (and ``DOCKER_TLS_VERIFY``/``DOCKER_CERT_PATH``)
name, else the local socket — the way every Docker client finds it. Both image stores are
handled: the containerd store names a loaded image by its manifest digest, the classic
store by its config digest, and loads only archives carrying Docker's ``manifest.json``;
each platform's image is loaded on its own from an archive made for both.
"""

from __future__ import annotations

import io
import re
import shlex
import tarfile
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import requests
import tenacity

from dcforge.core import devcontainer, oci_archive, oci_index
from dcforge.core.errors import BuildError, ManifestError, ToolError
from dcforge.infra import locks, log
from dcforge.infra.runner import Runner, redact, secret_values

CONTAINERD = "containerd"
CLASSIC = "classic"

# What ``uname -m`` says inside a container of each platform (foreign ones under qemu).
MACHINES: dict[str, tuple[str, ...]] = {
    "linux/amd64": ("x86_64",),
    "linux/arm64": ("aarch64",),
    "linux/arm/v7": ("armv7l", "armv8l"),  # armv8l: 32-bit on an arm64 kernel
    "linux/ppc64le": ("ppc64le",),
    "linux/s390x": ("s390x",),
    "linux/riscv64": ("riscv64",),
    "linux/386": ("i686", "i386"),
}


def _engine_errors() -> tuple[type[Exception], ...]:
    """What a failed engine call raises: the SDK's errors and its HTTP client's. The SDK is
    imported where the engine is first used (build and prune), not at every command's
    start."""
    from docker.errors import DockerException

    return (DockerException, requests.RequestException)


@dataclass
class Engine:
    """One Docker engine. ``runner`` supplies the environment, dry run and verbosity."""

    runner: Runner
    _client: Any = None
    _opening: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def client(self) -> Any:
        """The SDK client, made on first use (once, when threads ask together)."""
        with self._opening:
            return self._client or self._open()

    def _open(self) -> Any:
        if self._client is None:
            try:
                import docker as sdk

                self._client = sdk.from_env(environment=dict(self.runner.env), timeout=900)
                self._client.ping()
            except _engine_errors() as err:
                where = self.runner.env.get("DOCKER_HOST") or "the local socket"
                raise ToolError(
                    f"cannot reach the Docker engine at {where} ({_short(err)}) — start it "
                    "(scripts/bootstrap does here) or set DOCKER_HOST"
                ) from None
        return self._client

    def _say(self, action: str, *, mutates: bool = True) -> bool:
        """Echo an engine call like the runner echoes a command; False when a dry run
        skips it."""
        shown = redact(action, secret_values(self.runner.env))
        if self.runner.dry_run and mutates:
            log.info(f"+ engine: {shown}  (dry run: not run)")
            return False
        if self.runner.verbose:
            log.info(f"+ engine: {shown}")
        return True

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def image_store(self) -> str:
        """``containerd`` (the containerd snapshotter) or ``classic`` (graph drivers)."""
        status = self._call("info", self.client.info).get("DriverStatus") or []
        snapshotter = any(
            isinstance(row, list) and "io.containerd.snapshotter" in " ".join(map(str, row))
            for row in status
        )
        return CONTAINERD if snapshotter else CLASSIC

    def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except _engine_errors() as err:
            raise ToolError(f"docker engine: {what} failed: {_short(err)}") from None

    @contextmanager
    def loaded(self, tarball: Path, digest: str, name: str, platform: str = "") -> Iterator[str]:
        """Load image ``digest`` (one platform's manifest) of the OCI archive ``tarball``
        under ``name``; yields the engine's image id, checked to be that image's on this
        engine's store (its manifest digest on containerd, its config digest on classic).
        The image is removed again afterwards."""
        with tempfile.TemporaryDirectory(prefix="dcforge-load-") as tmp:
            single = Path(tmp) / "image.tar"
            try:
                found, config_digest = oci_index.image_archive(tarball, digest, single, name)
            except ManifestError as err:
                raise BuildError(str(err)) from None
            if platform and not oci_archive.same_platform(found, platform):
                raise BuildError(
                    f"{tarball}: the {platform} image {digest[:19]} is a {found} image"
                )
            if not self._say(f"load {tarball.name} ({digest[:19]}) as {name}"):
                yield name
                return
            store = self.image_store()
            images = self._load(single, tarball)
        ids = {str(image.id) for image in images}
        want = digest if store == CONTAINERD else config_digest
        try:
            if ids != {want}:
                raise BuildError(
                    f"{tarball}: the engine ({store} image store) loaded "
                    f"{', '.join(sorted(ids)) or 'nothing'} for {digest}, expected {want}"
                )
            yield want
        finally:
            try:  # never let the clean-up hide what went wrong
                with locks.image_store_lock(self._where()):
                    self.client.images.remove(name, force=True)
            except _engine_errors() as err:
                log.warn(f"could not remove the smoke image {name}: {_short(err)}")

    def _where(self) -> str:
        return self.runner.env.get("DOCKER_HOST") or "unix:///var/run/docker.sock"

    def _load(self, single: Path, tarball: Path) -> Any:
        """Load one image archive while no other load or removal runs on this engine; a
        load that still finds a base snapshot collected under it is tried again."""
        for attempt in tenacity.Retrying(
            retry=tenacity.retry_if_exception(_snapshot_gone),
            stop=tenacity.stop_after_attempt(3),
            wait=tenacity.wait_fixed(1),
            reraise=True,
        ):
            with attempt, locks.image_store_lock(self._where()), single.open("rb") as data:
                return self._call(f"load {tarball}", self.client.images.load, data)
        raise AssertionError("unreachable: tenacity reraises the last failure")

    def run(
        self,
        image: str,
        argv: list[str],
        *,
        platform: str,
        timeout: float,
        user: str = "",
        files: bytes = b"",
        check: bool = True,
        environment: Mapping[str, str] | None = None,
    ) -> str:
        """Run ``argv`` in a new container of ``image`` with no network (as ``user``, with
        the tar archive ``files`` unpacked at ``/`` first); its output, or a ToolError
        naming the exit code and the last line it printed (``check=False``: the output
        ends with a line ``exit N``)."""
        as_user = f" --user {user}" if user else ""
        shown = f"run --network none --platform {platform}{as_user} {image} {shlex.join(argv)}"
        if not self._say(shown):
            return ""
        container = self._call(
            f"create a container of {image}",
            self.client.containers.create,
            image,
            argv,
            network_mode="none",
            platform=platform or None,
            user=user or None,
            environment=dict(environment or {}) or None,
        )
        try:
            if files:
                self._call(f"copy files into {image}", container.put_archive, "/", files)
            self._call(f"start {image}", container.start)
            status = self._wait(container, image, argv, timeout)
            output = str(self._call("read logs", container.logs).decode(errors="replace"))
        finally:
            try:  # never let the clean-up hide what went wrong
                container.remove(force=True, v=True)
            except _engine_errors() as err:
                log.warn(f"could not remove the container of {image}: {_short(err)}")
        code = int(status.get("StatusCode", -1))
        if not check:
            return f"{output}\nexit {code}\n"
        if code != 0:
            lines = [ln for ln in output.splitlines() if ln.strip()]
            raise ToolError(f"exited {code}: {lines[-1][:400] if lines else '(no output)'}")
        return output

    def _wait(self, container: Any, image: str, argv: list[str], timeout: float) -> Any:
        """The container's exit status; while it runs, a "still running" line whenever it
        has been quiet for the runner's heartbeat (a long smoke or image test, emulated
        arm64 above all, never looks hung)."""
        sink = self.runner.sink if self.runner.sink is not None else log.sink()
        watch = sink.call(
            f"{Path(argv[0]).name} (container)", argv, shown=shlex.join(argv),
            verbose=self.runner.verbose,
        )  # fmt: skip
        start = time.monotonic()
        try:
            while True:
                left = timeout - (time.monotonic() - start)
                if left <= 0:
                    raise ToolError(f"{argv[0]} in {image} timed out after {timeout:g} s")
                try:
                    return container.wait(timeout=max(1.0, min(left, self.runner.heartbeat)))
                except requests.RequestException:
                    watch.heartbeat(time.monotonic() - start)
        finally:
            watch.close()

    def prune(self) -> str:
        """Remove every stopped container, unused image, network, anonymous volume and the
        engine's build cache; the space reclaimed, as Docker counts it."""
        if not self._say("prune containers, images (all unused), networks, volumes, build cache"):
            return "0B"
        reclaimed = 0
        client = self.client
        for what, fn, kwargs in (
            ("container prune", client.containers.prune, {}),
            ("image prune", client.images.prune, {"filters": {"dangling": False}}),
            ("network prune", client.networks.prune, {}),
            ("volume prune", client.volumes.prune, {}),
            ("build cache prune", client.api.prune_builds, {"all": True}),
        ):
            result = self._call(what, fn, **kwargs) or {}
            reclaimed += int(result.get("SpaceReclaimed") or 0)
        return _size(reclaimed)


def _short(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[-1][:300] if text else type(err).__name__


def _snapshot_gone(err: BaseException) -> bool:
    """containerd's unpack lost a parent snapshot to a concurrent clean-up (its layers are
    still in the content store, so a second load unpacks them again)."""
    return isinstance(err, ToolError) and "parent snapshot" in str(err) and "not found" in str(err)


def _size(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.4g}{unit}"
        n /= 1000
    return f"{n}B"


def smoke_archive(
    engine: Engine,
    tarball: Path,
    images: Mapping[str, str],
    commands: list[str],
    name: str,
    *,
    timeout: float = 600,
) -> str:
    """Load each platform's image of ``tarball`` (platform → manifest digest) on its own,
    check the container really runs that architecture, and run every smoke command in it
    with no network. Returns the engine's image store. A failure is a BuildError."""
    store = engine.image_store()
    for platform, digest in images.items():
        # A tag of this run's own: another job on the same engine never removes it.
        tag = f"dcforge-smoke/{name}:{platform.replace('/', '-')}-{uuid.uuid4().hex[:12]}"
        with engine.loaded(tarball, digest, tag, platform) as image:
            check_architecture(engine, image, platform)
            for command in commands:
                try:
                    engine.run(image, ["sh", "-c", command], platform=platform, timeout=timeout)
                except ToolError as err:
                    raise BuildError(
                        f"{name}: smoke command {command!r} failed on {platform}: {err}"
                    ) from None
    return store


def image_user(tarball: Path, digest: str) -> str:
    """The user an image's tools run as, from its config in the archive: the
    devcontainer.metadata label's last ``remoteUser`` (else ``containerUser``), else the
    image's own ``User``, else root."""
    config = oci_archive.image_config(tarball, digest)
    label = oci_archive.config_labels(config).get("devcontainer.metadata", "")
    return devcontainer.remote_user(label) or str((config.get("config") or {}).get("User") or "")


def image_test(
    engine: Engine,
    tarball: Path,
    images: Mapping[str, str],
    script: Path,
    name: str,
    *,
    timeout: float = 900,
) -> list[dict[str, Any]]:
    """Run the image test ``script`` (its folder copied to /tmp/dcforge-test, with
    dcforge's test-utils.sh when it has none) in each platform's image, as the image's
    remote user, with no network. One result per platform: its checks, its exit code."""
    files = _test_project(script.parent)
    argv = ["/bin/sh", "-c", f"cd /tmp/dcforge-test && exec ./{shlex.quote(script.name)}"]
    nonce = uuid.uuid4().hex
    results = []
    for platform, digest in images.items():
        tag = f"dcforge-test/{name}:{platform.replace('/', '-')}-{uuid.uuid4().hex[:12]}"
        user = image_user(tarball, digest)
        with engine.loaded(tarball, digest, tag, platform) as image:
            output = engine.run(
                image, argv, platform=platform, timeout=timeout, user=user, files=files,
                check=False, environment={"DCFORGE_CHECK_NONCE": nonce},
            )  # fmt: skip
        lines = output.rstrip("\n").splitlines()
        code = int(lines[-1].split()[-1]) if lines and lines[-1].startswith("exit ") else 0
        results.append(
            {
                "platform": platform,
                "user": user or "(image default)",
                "exit_code": code,
                "checks": devcontainer.parse_checks(output, nonce),
                "output": redact("\n".join(lines[:-1])[-20000:], secret_values(engine.runner.env)),
            }
        )
    return results


def _test_project(folder: Path) -> bytes:
    """The test folder as a tar archive for /tmp/dcforge-test (world-readable, the folder
    writable by the test's user), with dcforge's test-utils.sh unless it brings its own."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:

        def add(info: tarfile.TarInfo) -> tarfile.TarInfo:
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            info.mode = 0o1777 if info.isdir() else (info.mode & 0o755) | 0o444
            return info

        tar.add(folder, arcname="tmp/dcforge-test", filter=add)
        if not (folder / "test-utils.sh").is_file():
            data = resources.files("dcforge.resources").joinpath("test-utils.sh").read_bytes()
            info = tarfile.TarInfo("tmp/dcforge-test/test-utils.sh")
            info.size, info.mode = len(data), 0o755
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def check_architecture(engine: Engine, image: str, platform: str) -> None:
    """The container started for ``platform`` really runs that architecture (a wrong child
    in the index, or an engine silently running another platform, is a BuildError)."""
    want = MACHINES.get(platform.removesuffix("/v8"), ())
    try:
        got = engine.run(image, ["uname", "-m"], platform=platform, timeout=300).strip()
    except ToolError as err:
        raise BuildError(f"{image} does not start for {platform}: {err}") from None
    if engine.runner.dry_run or not want:  # a platform with no known machine name: the
        return  # image config's platform was checked at load
    if got not in want:
        raise BuildError(f"{image} for {platform} runs as {got!r}, expected {' or '.join(want)}")


_RECLAIMED = re.compile(r"Total(?: reclaimed)? space:?\s*(\S+)", re.I)


def prune_runner(engine: Engine) -> list[str]:
    """Prune the engine (SDK) and the buildx builder's cache; returns space lines."""
    reports = [f"system prune: reclaimed {engine.prune()}"]
    out = engine.runner.run(["docker", "buildx", "prune", "-af"], timeout=900).stdout
    found = _RECLAIMED.findall(out)
    reports.append(f"buildx prune: reclaimed {found[-1] if found else '0B'}")
    return reports


def runner_hygiene(engine: Engine) -> list[str]:
    """Prune Docker state before a build. Never touches the registry's data or any file."""
    with log.group("runner hygiene: engine prune + buildx prune"):
        reports = prune_runner(engine)
        for line in reports:
            log.info(line)
    return reports
