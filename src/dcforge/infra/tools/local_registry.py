"""A throwaway distribution registry process on a free loopback port.

For the benchmarks and the tests, which need registries of their own (one they can kill,
restart or count blobs in) next to the stack's registry on :5000 that scripts/bootstrap
runs. The same ``docker-registry`` binary and config shape as the bootstrap's.
"""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

from dcforge.core.errors import ToolError


class LocalRegistry:
    """``tls`` (certificate, key) serves HTTPS; ``htpasswd`` (a bcrypt htpasswd file)
    requires basic auth, as a production registry does; ``token`` (realm URL, service,
    issuer, root certificate bundle) requires bearer tokens from that realm, as GHCR and
    Docker Hub do (distribution's token auth)."""

    def __init__(
        self,
        root: Path,
        *,
        tls: tuple[Path, Path] | None = None,
        htpasswd: Path | None = None,
        token: tuple[str, str, str, Path] | None = None,
    ) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port: int = s.getsockname()[1]
        root.mkdir(parents=True, exist_ok=True)
        self.storage = root / "storage"
        self.config = root / "registry.yml"
        self.pid_file = root / "registry.pid"
        self.log = root / "registry.log"
        self.tls = tls
        http = f"addr: 127.0.0.1:{self.port}"
        if tls:
            http += f", tls: {{certificate: {tls[0]}, key: {tls[1]}}}"
        auth = f"auth: {{htpasswd: {{realm: dcforge, path: {htpasswd}}}}}\n" if htpasswd else ""
        if token:
            realm, service, issuer, bundle = token
            auth = (
                f'auth: {{token: {{realm: "{realm}", service: "{service}", '
                f'issuer: "{issuer}", rootcertbundle: "{bundle}"}}}}\n'
            )
        self.config.write_text(
            "version: 0.1\nlog: {level: warn, accesslog: {disabled: true}}\n"
            f"storage: {{filesystem: {{rootdirectory: {self.storage}}}, "
            "delete: {enabled: true}}\n"
            f"http: {{{http}}}\n{auth}"
        )
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def host(self) -> str:
        # A TLS registry is named by its IP (its certificate says so; "localhost" is on the
        # default plain-HTTP list).
        return f"{'127.0.0.1' if self.tls else 'localhost'}:{self.port}"

    def _answers(self) -> bool:
        scheme = "https" if self.tls else "http"
        # Liveness only: whether the certificate is trusted is what the tests are about.
        context = ssl._create_unverified_context() if self.tls else None  # noqa: S323
        try:
            url = f"{scheme}://127.0.0.1:{self.port}/v2/"  # http(s) only
            urllib.request.urlopen(url, timeout=1, context=context).close()  # noqa: S310
        except urllib.error.HTTPError as err:
            return err.code == 401  # up, and asking for credentials
        except OSError:
            return False
        return True

    def start(self, timeout: float = 20) -> None:
        """Start it and wait until /v2/ answers (polling the endpoint, not sleeping blind)."""
        binary = shutil.which("docker-registry")
        if binary is None:
            raise ToolError("couldn't find 'docker-registry' on PATH — run scripts/bootstrap")
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [binary, "serve", str(self.config)], stdout=log, stderr=log
            )
        self.pid_file.write_text(str(self.proc.pid))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._answers():
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise ToolError(
            f"the registry on :{self.port} did not start: {self.log.read_text()[-500:]}"
        )

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
        if self.proc is not None:
            self.proc.wait(timeout=10)

    def blobs(self) -> dict[str, int]:
        """Blob digest → size (manifests are stored as blobs too)."""
        root = self.storage / "docker/registry/v2/blobs"
        return (
            {p.parent.name: p.stat().st_size for p in root.rglob("data")} if root.exists() else {}
        )
