"""A real, signed apt repository for tests: ``.deb`` files built with ``dpkg-deb``, indices
and the ``Release`` file written here (apt-ftparchive is not on a stock Debian), signed
with a throwaway ``gpg`` key, served over plain HTTP by :func:`serve`.

    repo = AptRepo(tmp_path / "apt")
    repo.publish("demo-lib", "1.0-1", source="demo-lib")
    with serve(repo, host="0.0.0.0", advertise="172.17.0.1") as url:
        repo.write_context(build_context, url)
        dockerfile += repo.dockerfile_snippet("demo-lib")
        ...                                  # build; later:
        repo.publish("demo-lib", "1.1-1", source="demo-lib")  # both served; apt takes 1.1-1

Every published version stays in the indices (apt installs the newest) unless a publish
says ``replace=True``. The layout is Debian's: ``dists/<suite>/{InRelease,Release,
Release.gpg}``, ``dists/<suite>/<component>/binary-<arch>/Packages{,.gz}`` and
``pool/<component>/<prefix>/<source>/<name>_<version>_<arch>.deb``. ``Architecture: all``
packages are listed in every architecture's index, as Debian's archive does.

The private key lives in a short ``mkdtemp`` directory outside the served root (gpg-agent's
socket path must stay short); the agent is stopped after every signing, so none is left
running even if :meth:`AptRepo.close` is never called.
"""

from __future__ import annotations

import email.utils
import functools
import gzip
import hashlib
import os
import re
import shutil
import socket
import subprocess
import tempfile
import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path, PurePosixPath
from typing import Any

KEYRING_NAME = "dcforge-test.gpg"
SOURCES_NAME = "dcforge-test.sources"
KEYRING_PATH = f"/etc/apt/keyrings/{KEYRING_NAME}"
MAINTAINER = "dcforge tests <apt@dcforge.invalid>"

_NAME = re.compile(r"[a-z0-9][a-z0-9+.-]+")
_VERSION = re.compile(r"(?:[0-9]+:)?[0-9][A-Za-z0-9.+~-]*(?<!-)")  # no spaces, no ':' unless epoch
_SOURCE = re.compile(rf"{_NAME.pattern}(?: \({_VERSION.pattern}\))?")


@dataclass(frozen=True)
class _Deb:
    package: str
    version: str
    architecture: str
    control: str  # the .deb's control file, verbatim (deb822, ends with "\n")
    filename: str  # relative to the repository root
    size: int
    sha256: str

    def stanza(self) -> str:
        # The control fields, then where the file is and what it hashes to.
        return (
            self.control + f"Filename: {self.filename}\nSize: {self.size}\nSHA256: {self.sha256}\n"
        )


def _run(cmd: list[str], env: dict[str, str] | None = None) -> bytes:
    result = subprocess.run(cmd, capture_output=True, env=env, check=False)
    if result.returncode != 0:
        raise RuntimeError(
            f"{cmd[0]} failed ({result.returncode}): {result.stderr.decode(errors='replace')}"
        )
    return result.stdout


def _kill_agent_and_remove(home: str) -> None:
    subprocess.run(["gpgconf", "--kill", "all"], env={**os.environ, "GNUPGHOME": home},
                   capture_output=True, check=False)  # fmt: skip
    shutil.rmtree(home, ignore_errors=True)


class AptRepo:
    """A signed apt repository rooted at ``root`` (the directory :func:`serve` serves)."""

    def __init__(
        self,
        root: Path,
        suite: str = "dcforge-test",
        component: str = "main",
        *,
        architectures: tuple[str, ...] = ("amd64", "arm64"),
    ) -> None:
        self.root = Path(root)
        self.suite = suite
        self.component = component
        self.architectures = list(architectures)
        self.requests: list[str] = []  # "GET /dists/… 200", appended by serve()
        self._debs: list[_Deb] = []
        self.root.mkdir(parents=True, exist_ok=True)
        self._gnupghome = tempfile.mkdtemp(prefix="dcf-gpg-")  # 0700; short for the socket
        self._cleanup = weakref.finalize(self, _kill_agent_and_remove, self._gnupghome)
        try:
            self._gpg("--quick-gen-key", "dcforge apt test repository <apt@dcforge.invalid>",
                      "ed25519", "sign", "never")  # fmt: skip
            listing = self._gpg("--list-secret-keys", "--with-colons").decode()
            self.fingerprint = next(
                line.split(":")[9] for line in listing.splitlines() if line.startswith("fpr:")
            )
            self._public_key = self._gpg("--export", self.fingerprint)
            self._index()  # an empty but valid, signed repository from the start
        except BaseException:
            self.close()
            raise

    # -- lifecycle -------------------------------------------------------------------------

    def close(self) -> None:
        """Stop any gpg-agent of this key and delete the private key."""
        self._cleanup()

    def __enter__(self) -> AptRepo:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _gpg(self, *args: str) -> bytes:
        """Run gpg on the throwaway key; callers stop the agent it starts."""
        env = {**os.environ, "GNUPGHOME": self._gnupghome, "LC_ALL": "C"}
        return _run(["gpg", "--batch", "--quiet", "--no-tty", "--pinentry-mode", "loopback",
                     "--passphrase", "", *args], env=env)  # fmt: skip

    def _stop_agent(self) -> None:
        subprocess.run(["gpgconf", "--kill", "all"], capture_output=True, check=False,
                       env={**os.environ, "GNUPGHOME": self._gnupghome})  # fmt: skip

    # -- what a client needs -----------------------------------------------------------------

    def public_key(self) -> bytes:
        """The signing key as a binary OpenPGP keyring, for ``signed-by=`` (a ``.gpg`` file)."""
        return self._public_key

    def sources_line(self, url: str, keyring: str = KEYRING_PATH) -> str:
        """The one-line form, for ``/etc/apt/sources.list.d/*.list``."""
        return f"deb [signed-by={keyring}] {url} {self.suite} {self.component}\n"

    def sources(self, url: str, keyring: str = KEYRING_PATH) -> str:
        """The deb822 form, for ``/etc/apt/sources.list.d/*.sources``."""
        return (
            f"Types: deb\nURIs: {url}\nSuites: {self.suite}\nComponents: {self.component}\n"
            f"Signed-By: {keyring}\n"
        )

    def write_context(self, ctx_dir: Path, url: str) -> None:
        """Write ``dcforge-test.gpg`` and ``dcforge-test.sources`` (pointing at ``url``)
        into a build context, for :meth:`dockerfile_snippet`."""
        ctx_dir.mkdir(parents=True, exist_ok=True)
        for name, data in ((KEYRING_NAME, self.public_key()),
                           (SOURCES_NAME, self.sources(url).encode())):  # fmt: skip
            (ctx_dir / name).write_bytes(data)
            (ctx_dir / name).chmod(0o644)  # COPY keeps the mode; _apt must read the keyring

    @staticmethod
    def dockerfile_snippet(*packages: str) -> str:
        """Dockerfile lines installing ``packages`` from this repository and nothing else:
        the image's own sources are removed first. Needs :meth:`write_context`'s files."""
        if not packages or not all(_NAME.fullmatch(p) for p in packages):
            raise ValueError(f"package names expected, got {packages!r}")
        return (
            "RUN rm -f /etc/apt/sources.list /etc/apt/sources.list.d/*\n"
            f"COPY {KEYRING_NAME} {KEYRING_PATH}\n"
            f"COPY {SOURCES_NAME} /etc/apt/sources.list.d/{SOURCES_NAME}\n"
            "RUN apt-get update && apt-get install -y --no-install-recommends "
            f"{' '.join(packages)} && apt-get clean && rm -rf /var/lib/apt/lists/*\n"
        )

    # -- publishing ---------------------------------------------------------------------------

    def publish(
        self,
        package: str,
        version: str,
        *,
        source: str | None = None,
        architecture: str = "all",
        files: dict[str, bytes] | None = None,
        replace: bool = False,
    ) -> Path:
        """Build ``package`` ``version`` as a real .deb, put it in the pool and re-sign the
        indices. ``source`` is the Source field (``name`` or ``name (version)``): Trivy
        matches Debian advisories by source package. ``files`` maps paths inside the
        package to contents (default: ``usr/share/<package>/VERSION``). Earlier versions
        stay listed unless ``replace``. Returns the .deb's path."""
        if not _NAME.fullmatch(package):
            raise ValueError(f"bad package name {package!r}")
        if not _VERSION.fullmatch(version):
            raise ValueError(f"bad version {version!r}")
        if source is not None and not _SOURCE.fullmatch(source):
            raise ValueError(f"bad Source {source!r}")
        if not _NAME.fullmatch(architecture):
            raise ValueError(f"bad architecture {architecture!r}")
        if architecture != "all" and architecture not in self.architectures:
            self.architectures.append(architecture)
        if files is None:
            files = {f"usr/share/{package}/VERSION": f"{version}\n".encode()}

        src_name = (source or package).split(" ")[0]
        prefix = src_name[:4] if src_name.startswith("lib") else src_name[:1]
        upstream = version.split(":", 1)[-1]  # pool file names drop the epoch
        rel = f"pool/{self.component}/{prefix}/{src_name}/{package}_{upstream}_{architecture}.deb"
        deb = self.root / rel
        deb.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="dcf-deb-") as tmp:
            tree = Path(tmp) / "tree"
            installed = 0
            for name, data in files.items():
                path = PurePosixPath(name)
                if path.is_absolute() or ".." in path.parts or not path.parts:
                    raise ValueError(f"bad path in package: {name!r}")
                target = tree.joinpath(*path.parts)
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(data)
                target.chmod(0o644)
                installed += len(data)
            control = (
                f"Package: {package}\n"
                + (f"Source: {source}\n" if source else "")
                + f"Version: {version}\nArchitecture: {architecture}\n"
                + f"Maintainer: {MAINTAINER}\nInstalled-Size: {max(1, -(-installed // 1024))}\n"
                + "Section: misc\nPriority: optional\n"
                + f"Description: {package}, a dcforge test package\n"
                + " Published by tests/integration/apt_repo.py; contains no software.\n"
            )
            (tree / "DEBIAN").mkdir(parents=True)
            (tree / "DEBIAN/control").write_text(control)
            for d in [tree, *(p for p in tree.rglob("*") if p.is_dir())]:
                d.chmod(0o755)
            (tree / "DEBIAN/control").chmod(0o644)
            env = {**os.environ, "SOURCE_DATE_EPOCH": "1700000000", "LC_ALL": "C"}
            _run(["dpkg-deb", "--root-owner-group", "--build", str(tree), str(deb)], env=env)
        data = deb.read_bytes()
        sha256 = hashlib.sha256(data).hexdigest()
        entry = _Deb(package, version, architecture, control, rel, len(data), sha256)
        for old in [d for d in self._debs if d.package == package]:
            same = old.version == version and old.architecture == architecture
            if same or replace:
                self._debs.remove(old)
                if old.filename != rel:
                    (self.root / old.filename).unlink(missing_ok=True)
        self._debs.append(entry)
        self._index()
        return deb

    def _index(self) -> None:
        """Rewrite every Packages index and the Release file; sign it both ways."""
        dist = self.root / "dists" / self.suite
        indices: list[str] = []
        for arch in self.architectures:
            stanzas = [d.stanza() for d in self._debs if d.architecture in (arch, "all")]
            text = "\n".join(stanzas).encode()
            rel_dir = f"{self.component}/binary-{arch}"
            (dist / rel_dir).mkdir(parents=True, exist_ok=True)
            (dist / rel_dir / "Packages").write_bytes(text)
            (dist / rel_dir / "Packages.gz").write_bytes(gzip.compress(text, mtime=0))
            indices += [f"{rel_dir}/Packages", f"{rel_dir}/Packages.gz"]
        date = email.utils.formatdate(usegmt=True).replace("GMT", "UTC")
        release = (
            "Origin: dcforge\nLabel: dcforge test repository\n"
            f"Suite: {self.suite}\nCodename: {self.suite}\nDate: {date}\n"
            f"Architectures: {' '.join(self.architectures)}\nComponents: {self.component}\n"
            "Description: packages published by dcforge's tests\n"
        )
        release += "SHA256:\n"  # apt wants a strong hash; MD5 alone it calls "weak"
        for rel in indices:
            data = (dist / rel).read_bytes()
            release += f" {hashlib.sha256(data).hexdigest()} {len(data):>8} {rel}\n"
        (dist / "Release").write_text(release)
        try:
            for out, mode in (("InRelease", "--clearsign"), ("Release.gpg", "--detach-sign")):
                (dist / out).unlink(missing_ok=True)
                self._gpg("--local-user", self.fingerprint, "--digest-algo", "SHA512",
                          "--armor", mode, "--output", str(dist / out),
                          str(dist / "Release"))  # fmt: skip
        finally:
            self._stop_agent()  # none left running, whatever the caller does next


class _Handler(SimpleHTTPRequestHandler):
    repo: AptRepo

    def do_GET(self) -> None:
        # Never answer 304: a re-publish within the second of the last fetch keeps the
        # InRelease mtime apt saw, and apt would then keep its stale copy.
        del self.headers["If-Modified-Since"]
        super().do_GET()

    def do_HEAD(self) -> None:
        del self.headers["If-Modified-Since"]
        super().do_HEAD()

    def list_directory(self, path: Any) -> None:
        self.send_error(404)

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        self.repo.requests.append(f"{self.command} {self.path} {int(code)}")

    def log_message(self, *args: Any) -> None:
        return


@contextmanager
def serve(repo: AptRepo, host: str = "127.0.0.1", *, advertise: str | None = None) -> Iterator[str]:
    """Serve ``repo.root`` read-only (GET/HEAD, no listings) on ``host``, port 0; yield the
    base URL. ``host`` may be ``0.0.0.0`` or e.g. the docker bridge gateway, which is what
    a container's ``apt-get`` can reach; ``advertise`` is the host put into the URL
    (default: ``host``, or ``127.0.0.1`` for a wildcard)."""

    class Server(ThreadingHTTPServer):
        address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        daemon_threads = True

    handler = functools.partial(
        type("Handler", (_Handler,), {"repo": repo}), directory=str(repo.root)
    )
    server = Server((host, 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    name = advertise or {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)  # noqa: S104
    name = f"[{name}]" if ":" in name else name
    try:
        yield f"http://{name}:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
