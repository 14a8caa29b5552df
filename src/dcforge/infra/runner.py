"""The one way dcforge runs an external tool.

argv lists only (never a shell), the executable looked up first, the command echoed with
secrets redacted, a timeout on every call, ``dry_run`` echoing instead of running, and a
failure turned into a :class:`ToolError` naming the tool, its exit code and the last lines
of its stderr.

Output is streamed: stdout and stderr are read line by line on two threads while the call
runs, kept whole for the :class:`Result` (exactly what ``subprocess.run(capture_output=True,
text=True, errors="replace")`` returns) and handed, redacted, to a
:class:`dcforge.infra.progress.Sink` (the console's, through :mod:`dcforge.infra.log`, unless the
runner is given another): ``--verbose`` prints every line as it comes, and a call that has
shown nothing for ``heartbeat`` seconds gets a "still running" line (dcforge.infra.progress).
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import IO

from dcforge.core.errors import ToolError
from dcforge.infra import log, progress


@dataclass(frozen=True)
class Allowed:
    """Environment variables a tool may see: these names, and any name with these prefixes."""

    names: frozenset[str] = frozenset()
    prefixes: tuple[str, ...] = ()

    def admits(self, name: str) -> bool:
        return name in self.names or name.startswith(self.prefixes)


def _allow(*names: str, prefixes: tuple[str, ...] = ()) -> Allowed:
    return Allowed(frozenset(names), prefixes)


# What every child process sees: the process basics, locale, proxies and CAs, where registry
# clients keep their credentials (DOCKER_CONFIG: Docker CLI reference, "Environment
# variables"; oras-go credentials.NewStoreFromDocker; REGISTRY_AUTH_FILE: skopeo-login(1),
# containers-auth.json(5)) and whether it runs in CI. Unknown executables get this only.
COMMON_ENV = _allow(
    "PATH", "HOME", "USER", "LOGNAME", "LANG", "LANGUAGE", "TZ", "TMPDIR", "TERM",
    "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "ALL_PROXY",
    "http_proxy", "https_proxy", "no_proxy", "all_proxy",
    "SSL_CERT_FILE", "SSL_CERT_DIR", "DOCKER_CONFIG", "REGISTRY_AUTH_FILE",
    "CI", "GITHUB_ACTIONS",
    prefixes=("LC_", "XDG_"),
)  # fmt: skip

# Registry clients run the Docker config's credential helpers (``credHelpers``/``credsStore``:
# docs.docker.com/reference/cli/docker/login, "Credential helpers") with their own
# environment, so they carry what the common helpers read: the cloud SDKs' credentials
# (amazon-ecr-credential-helper: the AWS SDK's AWS_*; docker-credential-gcr / gcloud:
# GOOGLE_APPLICATION_CREDENTIALS, CLOUDSDK_CONFIG; acr-env: AZURE_*), pass(1)'s store
# (PASSWORD_STORE_DIR, GNUPGHOME), the Secret Service's bus, and the SSH agent Docker uses
# for an ssh:// DOCKER_HOST (Docker CLI reference, "Environment variables").
_HELPER_NAMES = (
    "GOOGLE_APPLICATION_CREDENTIALS", "CLOUDSDK_CONFIG", "PASSWORD_STORE_DIR", "GNUPGHOME",
    "DBUS_SESSION_BUS_ADDRESS", "SSH_AUTH_SOCK",
)  # fmt: skip
_HELPER_PREFIXES = ("AWS_", "AZURE_")


def _registry_client(*names: str, prefixes: tuple[str, ...] = ()) -> Allowed:
    return _allow(*names, *_HELPER_NAMES, prefixes=(*prefixes, *_HELPER_PREFIXES))


# What each tool sees on top of COMMON_ENV, by the base name of argv[0]; variables a call
# passes in ``run(env=…)`` always reach it. GITHUB_TOKEN reaches none of them (the GitHub API
# is called in-process, dcforge.infra.tools.github); registry passwords go to ``oras login`` on
# stdin. Sources, each the tool's own documentation or code:
TOOL_ENV: Mapping[str, Allowed] = MappingProxyType(
    {
        # sigstore/cosign pkg/cosign/env/env.go (COSIGN_*, SIGSTORE_*, TUF_*, the GitHub Actions
        # OIDC request for keyless, SOURCE_DATE_EPOCH); KMS keys: docs.sigstore.dev/cosign/
        # key_management/overview (AWS_*, GOOGLE_APPLICATION_CREDENTIALS, AZURE_*, VAULT_*).
        "cosign": _allow(
            "ACTIONS_ID_TOKEN_REQUEST_URL",
            "ACTIONS_ID_TOKEN_REQUEST_TOKEN",
            "SOURCE_DATE_EPOCH",
            "GOOGLE_APPLICATION_CREDENTIALS",
            prefixes=("COSIGN_", "SIGSTORE_", "TUF_", "AWS_", "AZURE_", "VAULT_"),
        ),
        # trivy.dev docs, Configuration: every flag as TRIVY_<FLAG> (the gate refuses those that
        # change what is scanned, dcforge.infra.scan_setup).
        "trivy": _registry_client(prefixes=("TRIVY_",)),
        # anchore/syft wiki, Configuration: every key as SYFT_<KEY> (refused by the gate likewise).
        "syft": _registry_client(prefixes=("SYFT_",)),
        # git(1), ENVIRONMENT VARIABLES: GIT_* (repository, config, identity).
        "git": _allow(prefixes=("GIT_",)),
        # Docker CLI reference, "Environment variables" (DOCKER_*); docs.docker.com/build/building/
        # variables (BUILDX_*, BUILDKIT_*, SOURCE_DATE_EPOCH); docs.docker.com/build/cache/backends/
        # gha ("url" $ACTIONS_CACHE_URL or $ACTIONS_RESULTS_URL, "token" $ACTIONS_RUNTIME_TOKEN,
        # "version" 2 when $ACTIONS_CACHE_SERVICE_V2 is set).
        "docker": _registry_client(
            "ACTIONS_CACHE_URL",
            "ACTIONS_RESULTS_URL",
            "ACTIONS_RUNTIME_TOKEN",
            "ACTIONS_CACHE_SERVICE_V2",
            "SOURCE_DATE_EPOCH",
            prefixes=("DOCKER_", "BUILDX_", "BUILDKIT_"),
        ),
        # The Dev Containers CLI (Node.js) runs ``docker buildx``: the engine, the builder and
        # Node's CA bundle (nodejs.org/api/cli.html, NODE_EXTRA_CA_CERTS). No more than that: a
        # build must not be able to read a token of the runner (the attack review, b8b06c1).
        "devcontainer": _allow(
            "DOCKER_HOST",
            "DOCKER_CONTEXT",
            "DOCKER_TLS_VERIFY",
            "DOCKER_CERT_PATH",
            "NODE_EXTRA_CA_CERTS",
            prefixes=("BUILDX_", "BUILDKIT_"),
        ),
        # oras.land/docs/how_to_guides/authentication and oras-go NewStoreFromDocker: the Docker
        # config (COMMON_ENV); ORAS_CACHE: oras pull/manifest fetch (cmd/oras/root).
        "oras": _registry_client("ORAS_CACHE"),
        # containers-auth.json(5): $XDG_RUNTIME_DIR/containers/auth.json, then
        # $XDG_CONFIG_HOME, $HOME/.docker/config.json (all COMMON_ENV); containers/image
        # registries.conf: CONTAINERS_REGISTRIES_CONF.
        "skopeo": _registry_client("CONTAINERS_REGISTRIES_CONF"),
    }
)


def common_variable(name: str) -> bool:
    """Whether every child process sees the variable ``name`` (COMMON_ENV)."""
    return COMMON_ENV.admits(name)


def tool_env(tool: str | Path, base: Mapping[str, str]) -> dict[str, str]:
    """What of ``base`` the tool ``tool`` (argv[0]: a name or a path) may see: COMMON_ENV
    and its own entry in TOOL_ENV; an unknown executable COMMON_ENV only."""
    own = TOOL_ENV.get(Path(tool).name, Allowed())
    return {k: v for k, v in base.items() if COMMON_ENV.admits(k) or own.admits(k)}


# Environment variables whose values must never be printed.
_SECRET_NAME = re.compile(r"(PASSWORD|TOKEN|SECRET|PRIVATE|CREDENTIAL|_KEY$|^COSIGN_KEY$)", re.I)
_MIN_SECRET_LEN = 4
DEFAULT_TIMEOUT = 600.0
STDERR_TAIL_LINES = 8
HEARTBEAT = progress.HEARTBEAT
READER_GRACE = 5.0  # after a timeout's kill: how long to wait for the pipes to close


def secret_values(env: Mapping[str, str]) -> frozenset[str]:
    """Values of variables whose names say they are secrets (long enough to be worth hiding)."""
    return frozenset(
        value
        for name, value in env.items()
        if _SECRET_NAME.search(name) and len(value) >= _MIN_SECRET_LEN
    )


def redact(text: str, secrets: frozenset[str]) -> str:
    for value in sorted(secrets, key=len, reverse=True):
        text = text.replace(value, "***")
    return text


def line_secrets(secrets: frozenset[str]) -> frozenset[str]:
    """``secrets`` for redacting one line at a time: a secret of several lines (a PEM key)
    never shows whole in one line, so each of its lines is a secret too."""
    pieces = {
        piece.strip()
        for value in secrets
        if "\n" in value or "\r" in value
        for piece in value.splitlines()
        if len(piece.strip()) >= _MIN_SECRET_LEN
    }
    return secrets | frozenset(pieces)


@dataclass(frozen=True)
class Result:
    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str


@dataclass
class Runner:
    """Runs tools. ``env`` is the base environment (the entry point passes ``os.environ``);
    each tool is given only what of it TOOL_ENV allows.

    ``sink`` receives every call's output lines (None: the console, dcforge.infra.log);
    ``heartbeat`` is the silence, in seconds, after which a call gets a "still running" line.
    """

    env: Mapping[str, str] = field(default_factory=dict)
    dry_run: bool = False
    verbose: bool = False
    heartbeat: float = HEARTBEAT
    sink: progress.Sink | None = None

    def which(self, tool: str) -> str:
        found = shutil.which(tool, path=self.env.get("PATH", os.defpath))
        if found is None:
            raise ToolError(
                f"couldn't find '{tool}' on PATH — run scripts/bootstrap "
                "(and install dcforge into the active environment: pip install -e .)"
            )
        return found

    def run(
        self,
        argv: Sequence[str | Path],
        *,
        timeout: float = DEFAULT_TIMEOUT,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        input_text: str | None = None,
        check: bool = True,
        mutates: bool = True,
        ok_codes: Sequence[int] = (0,),
        redacted: Sequence[str] = (),
    ) -> Result:
        """Run ``argv`` with what of the base environment its tool may see (tool_env), and
        ``env`` on top (always passed: the wrapper asked for it).

        ``mutates=False`` marks a read-only call (an inspect, a digest lookup) that still runs
        under ``dry_run`` so that a dry run can show a true plan. ``redacted``: secrets in no
        variable (a password given on stdin), hidden from what is shown like the others.
        """
        args = [str(a) for a in argv]
        # Every secret of the base is redacted, whether or not this tool is given it.
        extra = frozenset(v for v in redacted if len(v) >= _MIN_SECRET_LEN)
        secrets = secret_values({**self.env, **(env or {})}) | extra
        child_env = {**tool_env(args[0], self.env), **(env or {})}
        shown = redact(shlex.join(args), secrets)
        if self.dry_run and mutates:
            log.info(f"+ {shown}  (dry run: not run)")
            return Result(tuple(args), 0, "", "")
        result = self._execute(args, child_env, cwd, input_text, timeout, shown, secrets)
        if check and result.returncode not in ok_codes:
            raise _failure(result, shown, secrets)
        return result

    def _execute(
        self,
        args: list[str],
        env: Mapping[str, str],
        cwd: Path | None,
        input_text: str | None,
        timeout: float,
        shown: str,
        secrets: frozenset[str] = frozenset(),
    ) -> Result:
        tool = Path(args[0]).name
        sink = self.sink if self.sink is not None else log.sink()
        watch = sink.call(tool, args, shown=shown, verbose=self.verbose)
        try:
            executable = self.which(args[0])
            try:
                proc = subprocess.Popen(
                    [executable, *args[1:]],
                    env=dict(env),
                    cwd=cwd,
                    stdin=subprocess.PIPE if input_text is not None else None,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                    errors="replace",
                )
            except OSError as err:
                raise ToolError(f"{tool} could not start: {err}") from err
            try:
                stdout, stderr = _communicate(
                    proc, watch, line_secrets(secrets), input_text, timeout, self.heartbeat
                )
            except subprocess.TimeoutExpired as err:
                brief = shown if len(shown) <= 300 else f"{shown[:300]}… ({len(args)} arguments)"
                raise ToolError(
                    f"{tool} timed out after {timeout:g} s: {brief}", details=f"command: {shown}"
                ) from err
        finally:
            watch.close()
        return Result(tuple(args), proc.returncode, stdout, stderr)


class _Pump:
    """Reads one of a process's pipes to its end on a thread: every line is kept and handed,
    redacted and without its line end, to ``watch``. A failing watch stops the handing on,
    never the reading (a pipe left unread would stall the process); its error is raised
    once the process is done."""

    def __init__(
        self,
        stream: IO[str],
        name: progress.Stream,
        watch: progress.Watch,
        secrets: frozenset[str],
        on_shown: Callable[[], None],
    ) -> None:
        self.stream = stream
        self.name: progress.Stream = name
        self.watch = watch
        self.secrets = secrets
        self.on_shown = on_shown
        self.chunks: list[str] = []
        self.failure: Exception | None = None
        self.finished = threading.Event()
        self.thread = threading.Thread(target=self.run, name=f"dcforge-{name}", daemon=True)

    def run(self) -> None:
        try:
            for line in iter(self.stream.readline, ""):
                self.chunks.append(line)
                if self.failure is None:
                    self._hand_on(line)
        except (OSError, ValueError):  # the pipe was closed under us: nothing more to read
            pass
        finally:
            self.finished.set()

    def _hand_on(self, line: str) -> None:
        try:
            if self.watch.line(self.name, redact(line.rstrip("\n"), self.secrets)):
                self.on_shown()
        except Exception as err:  # raised once the process is done
            self.failure = err

    @property
    def text(self) -> str:
        return "".join(self.chunks)


def _communicate(
    proc: subprocess.Popen[str],
    watch: progress.Watch,
    secrets: frozenset[str],
    input_text: str | None,
    timeout: float,
    heartbeat: float,
) -> tuple[str, str]:
    """What ``proc.communicate(input_text, timeout)`` returns, streaming the lines on the
    way; a heartbeat to ``watch`` whenever nothing was shown for ``heartbeat`` seconds.
    On a timeout (or any exception) the process is killed, then the exception propagates."""
    start = time.monotonic()
    beat = progress.Heartbeat(heartbeat, start)
    pumps = [
        _Pump(_pipe(proc.stdout), "stdout", watch, secrets, lambda: beat.seen(time.monotonic())),
        _Pump(_pipe(proc.stderr), "stderr", watch, secrets, lambda: beat.seen(time.monotonic())),
    ]
    for pump in pumps:
        pump.thread.start()
    if input_text is not None:
        threading.Thread(
            target=_feed, args=(_pipe(proc.stdin), input_text), name="dcforge-stdin", daemon=True
        ).start()
    try:
        _wait(proc, pumps, watch, beat, start + timeout, start)
    except BaseException:
        proc.kill()
        proc.wait()
        grace = time.monotonic() + READER_GRACE
        for pump in pumps:
            pump.finished.wait(max(0.0, grace - time.monotonic()))
        if all(p.finished.is_set() for p in pumps):  # else a grandchild holds a pipe
            _close(proc)
        raise
    _close(proc)
    for pump in pumps:
        if pump.failure is not None:
            raise pump.failure
    return pumps[0].text, pumps[1].text


def _wait(
    proc: subprocess.Popen[str],
    pumps: Sequence[_Pump],
    watch: progress.Watch,
    beat: progress.Heartbeat,
    deadline: float,
    start: float,
) -> None:
    """Until both pipes are at their end and the process has exited (as communicate waits),
    or TimeoutExpired at ``deadline``; heartbeats on the way."""
    while True:
        now = time.monotonic()
        if now >= deadline:
            raise subprocess.TimeoutExpired(proc.args, deadline - start)
        wait = min(deadline - now, beat.wait(now))
        reading = [p for p in pumps if not p.finished.is_set()]
        if reading:
            reading[0].finished.wait(wait)
        else:
            try:
                proc.wait(timeout=wait)
                return
            except subprocess.TimeoutExpired:
                pass
        now = time.monotonic()
        if beat.due(now):
            watch.heartbeat(now - start)


def _pipe(stream: IO[str] | None) -> IO[str]:
    if stream is None:  # Popen made every pipe asked for
        raise ToolError("internal error: a pipe to the tool is missing")
    return stream


def _feed(stdin: IO[str], text: str) -> None:
    """Write ``text`` to the process's stdin, then close it (as communicate does; a process
    that exits or closes its stdin first is no error)."""
    with contextlib.suppress(OSError, ValueError):
        stdin.write(text)
    with contextlib.suppress(OSError, ValueError):
        stdin.close()


def _close(proc: subprocess.Popen[str]) -> None:
    for pipe in (proc.stdout, proc.stderr):
        if pipe is not None:
            pipe.close()


def _failure(result: Result, shown: str, secrets: frozenset[str]) -> ToolError:
    """One line for the user (the tool's last line); the tail is shown with --verbose."""
    lines = [ln.strip() for ln in (result.stderr or result.stdout).splitlines() if ln.strip()]
    last = redact(lines[-1], secrets)[:400] if lines else "(no output)"
    tail = redact("\n".join(lines[-STDERR_TAIL_LINES:]), secrets)
    tool = Path(result.argv[0]).name
    return ToolError(
        f"{tool} exited {result.returncode}: {last}", details=f"command: {shown}\n{tail}"
    )
