"""Registry reads (and tag moves) in-process: the OCI distribution API over HTTP(S).

One process of ``oras`` per manifest read costs tens of milliseconds of start-up; a release of
1,000 images reads tens of thousands of manifests. This client speaks the same API
(distribution-spec "Pulling manifests", "Content discovery") with the registry's own auth
(Docker's "Token Authentication Specification": a 401 names a realm, the realm gives a
bearer token for the repository's scope; Basic for registries that ask for it), and the
credentials every other tool here reads: ``$DOCKER_CONFIG/config.json`` (or
``~/.docker/config.json``), its ``auths``, ``credHelpers`` and ``credsStore``.

Everything it returns is checked against its digest: a manifest read by digest must hash to
it, and a tag resolves to the sha256 of the bytes served, never to a header. Failures are
ToolErrors worded as the tools word them ("not found", "connection refused", "503"), so
:func:`dcforge.infra.retry.transient` and the callers' absent-vs-down checks hold unchanged.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import ssl
import subprocess
import threading
import weakref
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import requests
import urllib3
from requests.adapters import HTTPAdapter

from dcforge.core.errors import ToolError
from dcforge.core.refs import registry_host, split_reference
from dcforge.infra.runner import tool_env

MANIFEST_TYPES = (
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.oci.artifact.manifest.v1+json",
)
ACCEPT = ", ".join(MANIFEST_TYPES)
POOL = 64  # connections kept per host
MAX_MANIFEST = 4 * 1024 * 1024  # the distribution spec's advice for manifest size
MAX_LIST = 64 * 1024 * 1024  # one page of tags or repositories
MAX_BLOB_JSON = 16 * 1024 * 1024
# Docker Hub: images are named docker.io/…, served from registry-1.docker.io, and its
# credentials are filed under the v1 index URL.
DOCKER_HUB = {"docker.io": "registry-1.docker.io", "index.docker.io": "registry-1.docker.io"}
DOCKER_HUB_KEY = "https://index.docker.io/v1/"
_CHALLENGE_PARAM = re.compile(r'(\w+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]+))')


def parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    """``WWW-Authenticate: Bearer realm="…",service="…",scope="…"`` → ("bearer", {…})."""
    scheme, _, rest = header.strip().partition(" ")
    params = {
        m[1].lower(): (m[2] if m[2] or not m[3] else m[3]) for m in _CHALLENGE_PARAM.finditer(rest)
    }
    return scheme.lower(), params


def next_link(response_link: str, base: str) -> str:
    """The URL of a ``Link: <…>; rel="next"`` header (paginated tag and catalog lists)."""
    for part in response_link.split(","):
        url, _, params = part.partition(";")
        if 'rel="next"' in params.replace(" ", "") or "rel=next" in params.replace(" ", ""):
            return urljoin(base, url.strip().strip("<>"))
    return ""


def config_path(env: Mapping[str, str]) -> Path:
    """Where Docker, oras, cosign and skopeo keep registry credentials."""
    if env.get("DOCKER_CONFIG"):
        return Path(env["DOCKER_CONFIG"]) / "config.json"
    return Path(env.get("HOME") or Path.home()) / ".docker" / "config.json"


def _auth_entry(auths: Mapping[str, Any], host: str) -> Mapping[str, Any] | None:
    """The ``auths`` entry for ``host``: Docker files them by host, by URL, or (Docker Hub)
    by the v1 index URL."""
    keys = [host, f"https://{host}", f"http://{host}", f"https://{host}/v1/", f"https://{host}/v2/"]
    if host in DOCKER_HUB or host in DOCKER_HUB.values():
        keys.append(DOCKER_HUB_KEY)  # Docker files Hub logins under the v1 index URL
    for key in keys:
        entry = auths.get(key)
        if isinstance(entry, Mapping):
            return entry
    return None


def credentials(host: str, env: Mapping[str, str]) -> tuple[str, str] | None:
    """(username, secret) for ``host`` the way the Docker CLI finds them: a ``credHelpers``
    entry, else the ``credsStore``, else the ``auths`` entry of config.json; None: anonymous.
    A username of ``<token>`` marks an identity (refresh) token."""
    path = config_path(env)
    try:
        config = json.loads(path.read_text()) if path.is_file() else {}
    except (OSError, json.JSONDecodeError) as err:
        raise ToolError(f"cannot read registry credentials from {path}: {err}") from None
    if not isinstance(config, dict):
        raise ToolError(f"cannot read registry credentials from {path}: not a JSON object")
    hub = host in DOCKER_HUB or host in DOCKER_HUB.values()
    helper = (config.get("credHelpers") or {}).get(host) or config.get("credsStore")
    if helper:
        return _from_helper(str(helper), DOCKER_HUB_KEY if hub else host, env)
    entry = _auth_entry(config.get("auths") or {}, host)
    if entry is None:
        return None
    if entry.get("identitytoken"):
        return "<token>", str(entry["identitytoken"])
    if entry.get("auth"):
        try:
            user, _, secret = base64.b64decode(str(entry["auth"])).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            raise ToolError(
                f"{path}: the auth entry for {host} is not base64 user:password"
            ) from None
        return user, secret
    if entry.get("username"):
        return str(entry["username"]), str(entry.get("password", ""))
    return None


def _from_helper(helper: str, server: str, env: Mapping[str, str]) -> tuple[str, str] | None:
    """``docker-credential-HELPER get`` (the credential helper protocol); its output holds the
    secret, so it is never logged."""
    program = f"docker-credential-{helper}"
    try:
        proc = subprocess.run(
            [program, "get"], input=server, capture_output=True, text=True, timeout=60,
            env=tool_env(program, env), check=False,
        )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired) as err:
        raise ToolError(f"the credential helper {program} could not run: {err}") from None
    if proc.returncode != 0:
        if "credentials not found" in (proc.stdout + proc.stderr).lower():
            return None
        raise ToolError(
            f"the credential helper {program} failed for {server} (exit {proc.returncode})"
        )
    try:
        found = json.loads(proc.stdout)
        return str(found["Username"]), str(found["Secret"])
    except (json.JSONDecodeError, KeyError, TypeError):
        raise ToolError(
            f"the credential helper {program} answered no credentials for {server}"
        ) from None


def ca_bundle(env: Mapping[str, str]) -> str | bool:
    """What to trust for HTTPS, as the Go tools do: ``SSL_CERT_FILE``, else the system's
    bundle (where ``update-ca-certificates`` puts a team's CA), else certifi's."""
    if env.get("SSL_CERT_FILE"):
        return env["SSL_CERT_FILE"]
    system = ssl.get_default_verify_paths().openssl_cafile
    return system if system and Path(system).is_file() else True


class HttpStatusError(ToolError):
    """The registry answered with an error status: ``status`` says which (404 alone means
    "absent"; a message naming "not found" under another status is no such answer)."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Ref:
    host: str  # as written in the reference (with port)
    repository: str  # the path below the host
    tag: str
    digest: str

    @classmethod
    def parse(cls, reference: str) -> Ref:
        """Checked as the distribution spec names repositories and tags (nothing of it
        can reach another path of the registry's API)."""
        try:
            name, tag, digest = split_reference(reference)
        except ValueError as err:
            raise ToolError(str(err)) from None
        host, _, repository = name.partition("/")
        return cls(host, repository, tag, digest)

    @property
    def target(self) -> str:
        return self.digest or self.tag or "latest"


@dataclass(frozen=True)
class Manifest:
    body: bytes
    media_type: str
    digest: str

    def json(self) -> Any:
        try:
            return json.loads(self.body)
        except (json.JSONDecodeError, UnicodeDecodeError):
            return None


@dataclass
class HttpRegistry:
    """One client for a process: connections and bearer tokens are kept per host and scope
    (safe to share between threads)."""

    insecure_hosts: frozenset[str] = frozenset()
    env: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    timeout: float = 60
    _session: requests.Session = field(default_factory=requests.Session, init=False, repr=False)
    _tokens: dict[tuple[str, str], str] = field(default_factory=dict, init=False, repr=False)
    _basic: dict[str, tuple[str, str] | None] = field(default_factory=dict, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)
    _verify: str | bool = field(default=True, init=False, repr=False)  # ca_bundle(env), once

    def __post_init__(self) -> None:
        # As many kept-alive connections per host as publish and verify run threads (a
        # smaller pool drops connections with a warning on stderr).
        for scheme in ("http://", "https://"):
            self._session.mount(scheme, HTTPAdapter(pool_connections=8, pool_maxsize=POOL))
        # Nothing from the process environment or ~/.netrc rides along (requests would put
        # netrc credentials over the registry's token); proxies from this client's env only.
        self._session.trust_env = False
        self._verify = ca_bundle(self.env)
        # Kept-alive connections are closed with the client, not left to the collector.
        weakref.finalize(self, self._session.close)

    # -- reads ---------------------------------------------------------------------------

    def manifest(self, reference: str) -> Manifest:
        """The manifest (or index) ``reference`` names, its digest the sha256 of its bytes
        (and the digest asked for, when the reference has one)."""
        ref = Ref.parse(reference)
        r = self._request("GET", ref, f"manifests/{ref.target}", "pull", headers={"Accept": ACCEPT})
        body = _bounded(r, MAX_MANIFEST, reference)
        digest = "sha256:" + hashlib.sha256(body).hexdigest()
        if ref.digest and digest != ref.digest:
            raise ToolError(
                f"the registry served {reference} with digest {digest}, not the one asked for"
            )
        media = r.headers.get("Content-Type", "").split(";")[0].strip()
        return Manifest(body, media, digest)

    def blob(self, ref_at_digest: str, limit: int = MAX_BLOB_JSON) -> bytes:
        ref = Ref.parse(ref_at_digest)
        if not ref.digest:
            raise ToolError(f"{ref_at_digest}: a blob is read by digest")
        r = self._request("GET", ref, f"blobs/{ref.digest}", "pull")
        body = _bounded(r, limit, ref_at_digest)
        if "sha256:" + hashlib.sha256(body).hexdigest() != ref.digest:
            raise ToolError(f"the registry served the blob {ref_at_digest} with other content")
        return body

    def tags(self, repository: str) -> list[str]:
        ref = Ref.parse(repository)
        return self._paged(ref, f"{self._base(ref)}tags/list?n=1000", "pull", "tags")

    def catalog(self, host: str) -> list[str]:
        """Every repository the registry lists (the catalog API, paginated)."""
        ref = Ref(host, "", "", "")
        url = f"{self._scheme(host)}://{_api_host(host)}/v2/_catalog?n=1000"
        return self._paged(ref, url, "catalog", "repositories")

    # -- writes --------------------------------------------------------------------------

    def put_manifest(self, reference: str, manifest: Manifest) -> None:
        """Store ``manifest`` under the tag ``reference`` names (a tag move: the bytes, so
        the digest, unchanged)."""
        ref = Ref.parse(reference)
        declared = _declared_type(manifest)
        if manifest.media_type and declared and manifest.media_type != declared:
            raise ToolError(
                f"{reference}: the registry served {manifest.digest} as {manifest.media_type}, "
                f"its body says {declared}: not moved"
            )
        headers = {"Content-Type": declared or manifest.media_type or MANIFEST_TYPES[1]}
        r = self._request(
            "PUT", ref, f"manifests/{ref.target}", "pull,push", headers=headers, data=manifest.body
        )
        stored = r.headers.get("Docker-Content-Digest", manifest.digest)
        r.close()
        if stored != manifest.digest:
            raise ToolError(f"{reference}: the registry stored {stored}, not {manifest.digest}")

    # -- the protocol --------------------------------------------------------------------

    def _scheme(self, host: str) -> str:
        return "http" if registry_host(host) in self.insecure_hosts else "https"

    def _base(self, ref: Ref) -> str:
        return f"{self._scheme(ref.host)}://{_api_host(ref.host)}/v2/{ref.repository}/"

    def _paged(self, ref: Ref, url: str, action: str, key: str) -> list[str]:
        """Every page of a list; a next page must be on the first page's scheme, host and
        port (the credentials go with it), and no page is read twice."""
        found: list[str] = []
        origin, pages = urlsplit(url)[:2], set()
        while url:
            if urlsplit(url)[:2] != origin or url in pages:
                raise ToolError(f"the registry's next page {url} leaves {origin[1]} or loops")
            pages.add(url)
            r = self._request("GET", ref, url, action)
            try:
                found += [str(x) for x in (json.loads(_bounded(r, MAX_LIST, url)).get(key) or [])]
            except (ValueError, AttributeError):
                raise ToolError(f"the registry answered no {key} list at {url}") from None
            url = next_link(r.headers.get("Link", ""), url)
        return found

    def _request(
        self,
        method: str,
        ref: Ref,
        path: str,
        action: str,
        *,
        headers: Mapping[str, str] | None = None,
        data: bytes | None = None,
    ) -> requests.Response:
        url = path if "://" in path else self._base(ref) + path
        scope = (
            "registry:catalog:*" if action == "catalog" else f"repository:{ref.repository}:{action}"
        )
        sent = dict(headers or {})
        auth = self._cached_auth(ref.host, scope)
        r = self._send(method, url, sent, data, auth)
        if r.status_code == 401:
            r.close()  # back to the pool before the retry
            auth = self._authorize(ref.host, scope, r.headers.get("WWW-Authenticate", ""), url)
            r = self._send(method, url, sent, data, auth)
        if r.status_code >= 400:
            raise _failure(method, url, r)
        return r

    def _send(
        self, method: str, url: str, headers: dict[str, str], data: bytes | None, auth: str
    ) -> requests.Response:
        if auth:
            headers = {**headers, "Authorization": auth}
        try:
            return self._session.request(
                method, url, headers=headers, data=data, timeout=self.timeout,
                verify=self._verify, stream=True, proxies=proxies(url, self.env),
            )  # fmt: skip
        except requests.exceptions.SSLError as err:
            raise ToolError(
                f"{url}: TLS: {_reason(err)} — trust the registry's CA (SSL_CERT_FILE) "
                "or list the host as insecure"
            ) from None
        except requests.exceptions.Timeout:
            raise ToolError(
                f"{method} {url}: i/o timeout: timed out after {self.timeout:g} s"
            ) from None
        except requests.exceptions.ConnectionError as err:
            raise ToolError(
                f"{method} {url}: connection refused or reset ({_reason(err)})"
            ) from None

    def _cached_auth(self, host: str, scope: str) -> str:
        with self._lock:
            token = self._tokens.get((host, scope))
            if token:
                return f"Bearer {token}"
            basic = self._basic.get(host)
        return _basic_header(basic) if basic else ""

    def _authorize(self, host: str, scope: str, challenge: str, url: str) -> str:
        scheme, params = parse_challenge(challenge)
        creds = credentials(_api_host(host) if host in DOCKER_HUB else host, self.env)
        if scheme == "basic":
            if creds is None:
                raise ToolError(
                    f"{url}: unauthorized: the registry asks for a login "
                    f"(no credentials for {host})"
                )
            with self._lock:
                self._basic[host] = creds
            return _basic_header(creds)
        if scheme != "bearer" or not params.get("realm"):
            raise ToolError(
                f"{url}: unauthorized: an authentication scheme this client does not "
                f"speak ({scheme})"
            )
        token = self._token(params, scope, creds, host)
        with self._lock:
            self._tokens[(host, scope)] = token
        return f"Bearer {token}"

    def _token(
        self, params: dict[str, str], scope: str, creds: tuple[str, str] | None, host: str
    ) -> str:
        realm = params["realm"]
        query = {"service": params.get("service", "")}
        query["scope"] = params.get("scope") or scope
        try:
            if creds and creds[0] == "<token>":
                form = {
                    **query,
                    "grant_type": "refresh_token",
                    "refresh_token": creds[1],
                    "client_id": "dcforge",
                }
                r = self._session.post(
                    realm, data=form, timeout=self.timeout, verify=self._verify,
                    proxies=proxies(realm, self.env), stream=True,
                )  # fmt: skip
            else:
                r = self._session.get(
                    realm, params=query, auth=creds, timeout=self.timeout,
                    verify=self._verify, proxies=proxies(realm, self.env), stream=True,
                )  # fmt: skip
        except requests.exceptions.RequestException as err:
            raise ToolError(
                f"the token service {realm} for {host}: connection refused or reset "
                f"({_reason(err)})"
            ) from None
        if r.status_code >= 400:
            r.close()
        if r.status_code in (401, 403):
            raise ToolError(
                f"{host}: unauthorized: the token service {realm} refused the credentials "
                f"({r.status_code})"
            )
        if r.status_code >= 400:
            raise ToolError(f"{host}: the token service {realm} answered {r.status_code}")
        try:
            body = json.loads(_bounded(r, MAX_MANIFEST, realm))
            return str(body.get("token") or body["access_token"])
        except (ValueError, KeyError, AttributeError):
            raise ToolError(f"{host}: the token service {realm} answered no token") from None


def _api_host(host: str) -> str:
    return DOCKER_HUB.get(host, host)


def _basic_header(creds: tuple[str, str]) -> str:
    return "Basic " + base64.b64encode(f"{creds[0]}:{creds[1]}".encode()).decode()


def _bounded(r: requests.Response, limit: int, what: str) -> bytes:
    """At most ``limit`` bytes of the body; a body cut short is a reset connection (retried),
    never a partial answer."""
    try:
        body = r.raw.read(limit + 1, decode_content=True)
    except (urllib3.exceptions.HTTPError, requests.exceptions.RequestException, OSError) as err:
        raise ToolError(
            f"{what}: connection reset: the body was cut short ({_reason(err)})"
        ) from None
    finally:
        r.close()
    if len(body) > limit:
        raise ToolError(f"the registry served more than {limit} bytes for {what}: refused")
    return bytes(body)


def _declared_type(manifest: Manifest) -> str:
    """The media type the manifest's body declares ("" when it declares none)."""
    doc = manifest.json()
    return str(doc.get("mediaType") or "") if isinstance(doc, dict) else ""


def proxies(url: str, env: Mapping[str, str]) -> dict[str, str]:
    """The proxy for ``url`` from ``env`` (HTTPS_PROXY / HTTP_PROXY / NO_PROXY, either case),
    as the Go tools read them."""
    scheme = urlsplit(url).scheme
    found = env.get(f"{scheme}_proxy") or env.get(f"{scheme.upper()}_PROXY")
    no_proxy = env.get("no_proxy") or env.get("NO_PROXY") or ""
    if not found or requests.utils.should_bypass_proxies(url, no_proxy=no_proxy):
        return {}
    return {scheme: found}


def _reason(err: BaseException) -> str:
    text = str(err)
    if found := re.search(r"\[Errno -?\d+\] [^'\")]+", text):
        return found.group(0)
    return text if len(text) <= 300 else text[:300] + "…"


def _failure(method: str, url: str, r: requests.Response) -> ToolError:
    """A ToolError worded as oras words it: ``name unknown``/``manifest unknown`` for a
    missing repository or manifest, the status code for the rest."""
    try:
        errors = json.loads(_bounded(r, 64 * 1024, url)).get("errors") or []
        said = "; ".join(
            f"{str(e.get('code', '')).replace('_', ' ').lower()}: {e.get('message', '')}"
            for e in errors
        )
    except (ValueError, AttributeError, TypeError, ToolError):
        said = ""
    if r.status_code == 404 and not said:
        said = "not found"
    text = f"{method} {url}: {r.status_code} {r.reason}: {said[:300]}".rstrip(": ")
    return HttpStatusError(text, r.status_code)
