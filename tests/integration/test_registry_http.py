"""The in-process registry client against real registries: a ``docker-registry`` with token
auth (a token service speaking Docker's token spec, as GHCR and Docker Hub do), credentials
written by a real ``oras login``, content pushed by ``oras``; what it reads is what oras
reads. And against a registry that lies: bytes that do not hash to the digest are refused."""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import stat
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from dcforge.core.errors import RegistryError, ToolError
from dcforge.infra.runner import Runner
from dcforge.infra.tools.local_registry import LocalRegistry
from dcforge.infra.tools.registry import Registry
from dcforge.infra.tools.registry_http import HttpRegistry
from tests.integration import oras_oracle
from tests.integration.token_server import ISSUER, SERVICE, TokenService, token_service

pytestmark = pytest.mark.integration

USER = "robot"


@dataclass
class TokenRegistry:
    registry: LocalRegistry
    tokens: TokenService
    home: Path

    def env(self, **extra: str) -> dict[str, str]:
        return {"PATH": os.environ["PATH"], "HOME": str(self.home), **extra}


@pytest.fixture
def token_registry(tmp_path: Path) -> Iterator[TokenRegistry]:
    with token_service(USER, secrets.token_urlsafe(16)) as tokens:
        bundle = tokens.write_bundle(tmp_path / "token-ca.pem")
        reg = LocalRegistry(tmp_path / "registry", token=(tokens.url, SERVICE, ISSUER, bundle))
        reg.start()
        try:
            home = tmp_path / "home"
            home.mkdir()
            yield TokenRegistry(reg, tokens, home)
        finally:
            reg.stop()


@pytest.fixture
def notes(token_registry: TokenRegistry, tmp_path: Path) -> tuple[Runner, str]:
    """Logged in with ``oras login`` (the Docker config under the registry's HOME), and
    ``team/notes:v1`` pushed: (a runner with that HOME, the repository)."""
    tr = token_registry
    runner = Runner(env=tr.env())
    oras_oracle.login(runner, tr.registry.host, USER, tr.tokens.password, plain_http=True)
    repo = f"{tr.registry.host}/team/notes"
    _push(runner, tmp_path, f"{repo}:v1", "note\n")
    return runner, repo


def _push(runner: Runner, work: Path, reference: str, text: str) -> None:
    (work / "note.txt").write_text(text)
    runner.run(
        ["oras", "push", "--plain-http", "--artifact-type", "application/vnd.dcforge.test",
         reference, "note.txt:text/plain"],
        cwd=work,
    )  # fmt: skip


def test_token_auth_reads_what_oras_reads(token_registry: TokenRegistry, tmp_path: Path) -> None:
    tr = token_registry
    runner = Runner(env=tr.env())
    oras_oracle.login(runner, tr.registry.host, USER, tr.tokens.password, plain_http=True)
    assert json.loads((tr.home / ".docker/config.json").read_text())["auths"]  # oras wrote it
    repo = f"{tr.registry.host}/team/notes"
    for n in range(3):
        _push(runner, tmp_path, f"{repo}:v{n}", f"note {n}\n")
    reg = Registry(runner, frozenset({"localhost"}))
    tr.tokens.requests.clear()

    digests = [reg.resolve(f"{repo}:v{n}") for n in range(3)]
    manifests = [reg.manifest(f"{repo}@{d}") for d in digests]
    assert sorted(reg.tags(repo)) == ["v0", "v1", "v2"]
    assert reg.repositories(f"{tr.registry.host}/team") == [repo]
    assert reg.digest_or_none(f"{repo}:absent") is None
    config = manifests[0]["config"]
    assert reg.blob_json(f"{repo}@{config['digest']}") == {}
    # One token per scope for the whole run, not one per read.
    assert tr.tokens.requests == {"repository:team/notes:pull": 1, "registry:catalog:*": 1}
    for n, (digest, doc) in enumerate(zip(digests, manifests, strict=True)):
        assert digest == oras_oracle.resolve(runner, f"{repo}:v{n}", plain_http=True)
        assert doc == oras_oracle.manifest(runner, f"{repo}:v{n}", plain_http=True)

    # A tag move in-process is a push the registry's token auth allows; oras sees it.
    v0 = reg.resolve(f"{repo}:v0")
    reg.tag(f"{repo}@{v0}", ["stable", "latest"])
    assert oras_oracle.resolve(runner, f"{repo}:stable", plain_http=True) == v0
    assert oras_oracle.resolve(runner, f"{repo}:latest", plain_http=True) == v0


def test_token_auth_refusals_are_one_clear_line(
    token_registry: TokenRegistry, notes: tuple[Runner, str], tmp_path: Path
) -> None:
    tr, (_, repo) = token_registry, notes
    anonymous = Registry(Runner(env=tr.env(HOME=str(tmp_path))), frozenset({"localhost"}))
    with pytest.raises(RegistryError, match=r"unauthorized|denied|UNAUTHORIZED"):
        anonymous.resolve(f"{repo}:v1")

    wrong = tmp_path / "wrong"
    (wrong / ".docker").mkdir(parents=True)
    (wrong / ".docker/config.json").write_text(
        json.dumps({"auths": {tr.registry.host: {"username": USER, "password": "nope"}}})
    )
    refused = Registry(Runner(env=tr.env(HOME=str(wrong))), frozenset({"localhost"}))
    with pytest.raises(RegistryError, match="refused the credentials") as err:
        refused.resolve(f"{repo}:v1")
    assert "nope" not in str(err.value) and tr.tokens.password not in str(err.value)


def test_credentials_from_a_credential_helper(
    token_registry: TokenRegistry, notes: tuple[Runner, str], tmp_path: Path
) -> None:
    """``credHelpers`` names a program that answers the credential helper protocol."""
    tr, (runner, repo) = token_registry, notes
    bin_dir, home = tmp_path / "bin", tmp_path / "helper-home"
    bin_dir.mkdir()
    (home / ".docker").mkdir(parents=True)
    helper = bin_dir / "docker-credential-dcforgetest"
    answer = json.dumps({"ServerURL": tr.registry.host, "Username": USER,
                         "Secret": tr.tokens.password})  # fmt: skip
    helper.write_text(f"#!/bin/sh\nread server\ncat <<'EOF'\n{answer}\nEOF\n")
    helper.chmod(helper.stat().st_mode | stat.S_IXUSR)
    (home / ".docker/config.json").write_text(
        json.dumps({"credHelpers": {tr.registry.host: "dcforgetest"}})
    )
    env = tr.env(HOME=str(home), PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    served = oras_oracle.resolve(runner, f"{repo}:v1", plain_http=True)
    assert HttpRegistry(frozenset({"localhost"}), env).manifest(f"{repo}:v1").digest == served
    # The same helper as the store for every host (credsStore); the host's entry under
    # auths only says that a login exists.
    (home / ".docker/config.json").write_text(
        json.dumps({"credsStore": "dcforgetest", "auths": {tr.registry.host: {}}})
    )
    assert HttpRegistry(frozenset({"localhost"}), env).manifest(f"{repo}:v1").digest == served


# -- a registry that lies ----------------------------------------------------------------

HONEST = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                     "config": {"mediaType": "application/vnd.oci.empty.v1+json",
                                "digest": "sha256:" + "4" * 64, "size": 2},
                     "layers": []}).encode()  # fmt: skip
SWAPPED = HONEST.replace(b'"size": 2', b'"size": 3')
HONEST_DIGEST = "sha256:" + hashlib.sha256(HONEST).hexdigest()


@contextmanager
def lying_registry() -> Iterator[str]:
    """Serves SWAPPED for every manifest while its headers claim HONEST's digest."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
            self.send_header("Docker-Content-Digest", HONEST_DIGEST)
            self.send_header("Content-Length", str(len(SWAPPED)))
            self.end_headers()
            self.wfile.write(SWAPPED)

        do_HEAD = do_GET  # noqa: N815

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"localhost:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_bytes_that_do_not_hash_to_the_digest_are_refused() -> None:
    with lying_registry() as host:
        reg = Registry(Runner(env={"PATH": os.environ["PATH"]}), frozenset({"localhost"}))
        # By digest: the bytes must hash to it, whatever the headers claim.
        with pytest.raises(RegistryError, match="not the one asked for"):
            reg.manifest(f"{host}/x/y@{HONEST_DIGEST}")
        # By tag: the digest is the served bytes' own, never the header's.
        assert reg.resolve(f"{host}/x/y:v1") == "sha256:" + hashlib.sha256(SWAPPED).hexdigest()
        with pytest.raises(ToolError, match="not the one asked for"):
            reg.tag(f"{host}/x/y@{HONEST_DIGEST}", ["moved"])


# -- a registry that misbehaves in other ways ---------------------------------------------


@dataclass
class Seen:
    requests: list[tuple[str, str, str]]  # method, path, Authorization


@contextmanager
def fake_registry(answer: Callable[[BaseHTTPRequestHandler], None]) -> Iterator[tuple[str, Seen]]:
    """A server whose every request is recorded, then answered by ``answer``."""
    seen = Seen([])

    class Handler(BaseHTTPRequestHandler):
        def _any(self) -> None:
            seen.requests.append((self.command, self.path, self.headers.get("Authorization", "")))
            answer(self)

        do_GET = do_PUT = do_HEAD = _any  # noqa: N815

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"localhost:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()


def _json(handler: BaseHTTPRequestHandler, status: int, body: object, **headers: str) -> None:
    data = json.dumps(body).encode()
    handler.send_response(status)
    for name, value in {"Content-Type": "application/json", **headers}.items():
        handler.send_header(name, value)
    handler.send_header("Content-Length", str(len(data)))
    handler.end_headers()
    handler.wfile.write(data)


def _logged_in(tmp_path: Path, *hosts: str) -> dict[str, str]:
    (tmp_path / ".docker").mkdir(exist_ok=True)
    auths = {h: {"username": "u", "password": "SECRETPW"} for h in hosts}
    (tmp_path / ".docker/config.json").write_text(json.dumps({"auths": auths}))
    return {"PATH": os.environ["PATH"], "HOME": str(tmp_path)}


def test_credentials_never_follow_a_next_page_to_another_host(tmp_path: Path) -> None:
    with fake_registry(lambda h: _json(h, 200, {"tags": ["x"]})) as (other, other_seen):

        def first_page(h: BaseHTTPRequestHandler) -> None:
            if not h.headers.get("Authorization"):
                h.send_response(401)
                h.send_header("WWW-Authenticate", 'Basic realm="r"')
                h.end_headers()
                return
            link = f'<http://127.0.0.2:{other.rsplit(":", 1)[1]}/v2/a/tags/list?last=x>; rel="next"'
            _json(h, 200, {"tags": ["v1"]}, Link=link)

        with fake_registry(first_page) as (host, _):
            reg = Registry(Runner(env=_logged_in(tmp_path, host)), frozenset({"localhost"}))
            with pytest.raises(ToolError, match="leaves"):
                reg.tags(f"{host}/a")
    assert other_seen.requests == []


def test_a_refusal_that_says_not_found_is_not_absent(tmp_path: Path) -> None:
    """Only a 404 means "not there": a 403 worded "not found" must not read as absent
    (last-known-good read as absent would let an old job pin backwards)."""
    denied = {"errors": [{"code": "DENIED", "message": "repository not found or no permission"}]}
    with fake_registry(lambda h: _json(h, 403, denied)) as (host, _):
        reg = Registry(Runner(env={"PATH": os.environ["PATH"]}), frozenset({"localhost"}))
        with pytest.raises(RegistryError, match="403"):
            reg.digest_or_none(f"{host}/a:last-known-good")
    missing = {"errors": [{"code": "MANIFEST_UNKNOWN", "message": "manifest unknown"}]}
    with fake_registry(lambda h: _json(h, 404, missing)) as (host, _):
        reg = Registry(Runner(env={"PATH": os.environ["PATH"]}), frozenset({"localhost"}))
        assert reg.digest_or_none(f"{host}/a:last-known-good") is None


def test_a_body_cut_short_is_retried_then_one_clear_error(tmp_path: Path) -> None:
    def cut(h: BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.send_header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
        h.send_header("Content-Length", "100")
        h.end_headers()
        h.wfile.write(b'{"sch')
        h.wfile.flush()
        h.close_connection = True

    with fake_registry(cut) as (host, seen):
        reg = Registry(Runner(env={"PATH": os.environ["PATH"]}), frozenset({"localhost"}))
        with pytest.raises(RegistryError, match="cut short"):
            reg.resolve(f"{host}/a:v1")
    assert len(seen.requests) > 1  # retried as a reset connection


def test_netrc_and_the_process_environment_stay_out(tmp_path: Path) -> None:
    """requests would send ~/.netrc's password to any host it names (over a registry's
    token, too); a registry read sends only what the Docker config says."""
    with fake_registry(lambda h: _json(h, 200, {"tags": ["v1"]})) as (host, seen):
        (tmp_path / ".netrc").write_text("machine localhost login n password NETRCPW\n")
        (tmp_path / ".netrc").chmod(0o600)
        env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path)}
        old_home = os.environ.get("HOME")
        os.environ["HOME"] = str(tmp_path)  # where requests itself would look
        try:
            Registry(Runner(env=env), frozenset({"localhost"})).tags(f"{host}/a")
        finally:
            os.environ["HOME"] = old_home or ""
    assert [auth for _, _, auth in seen.requests] == [""]


def test_a_tag_move_stores_exactly_the_digest_or_says_so(tmp_path: Path) -> None:
    def answer(h: BaseHTTPRequestHandler) -> None:
        if h.command == "GET":
            h.send_response(200)
            h.send_header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
            h.send_header("Content-Length", str(len(HONEST)))
            h.end_headers()
            h.wfile.write(HONEST)
            return
        h.rfile.read(int(h.headers["Content-Length"]))
        h.send_response(201)
        h.send_header("Docker-Content-Digest", "sha256:" + "0" * 64)
        h.send_header("Content-Length", "0")
        h.end_headers()

    with fake_registry(answer) as (host, seen):
        reg = Registry(Runner(env={"PATH": os.environ["PATH"]}), frozenset({"localhost"}))
        with pytest.raises(RegistryError, match="to a digest"):
            reg.tag(f"{host}/a:v1", ["latest"])
        with pytest.raises(ToolError, match="stored sha256:0000"):
            reg.tag(f"{host}/a@{HONEST_DIGEST}", ["latest"])
    assert ("PUT", "/v2/a/manifests/latest", "") in seen.requests


def test_a_credential_helper_sees_no_secret_of_the_run(
    token_registry: TokenRegistry, tmp_path: Path
) -> None:
    tr = token_registry
    bin_dir, home = tmp_path / "bin", tmp_path / "home2"
    bin_dir.mkdir()
    (home / ".docker").mkdir(parents=True)
    dump = tmp_path / "helper-env"
    helper = bin_dir / "docker-credential-spy"
    helper.write_text(f"#!/bin/sh\nenv > {dump}\necho 'credentials not found'\nexit 1\n")
    helper.chmod(0o755)
    (home / ".docker/config.json").write_text(json.dumps({"credsStore": "spy"}))
    env = tr.env(
        HOME=str(home),
        PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        GITHUB_TOKEN="ghp_" + "s" * 36,
        COSIGN_PASSWORD="cosign-secret-pw",
        DCFORGE_STAGING_PASSWORD="staging-secret-pw",
    )
    reg = Registry(Runner(env=env), frozenset({"localhost"}))
    with pytest.raises(RegistryError):
        reg.resolve(f"{tr.registry.host}/team/notes:v1")
    seen_env = dump.read_text()
    assert "HOME=" in seen_env
    for secret in ("ghp_", "cosign-secret-pw", "staging-secret-pw"):
        assert secret not in seen_env
