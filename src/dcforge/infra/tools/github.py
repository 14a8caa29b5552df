"""GitHub REST API client: container package versions (GHCR) and workflow artifacts.

Documented endpoints only:
- GET /{orgs|users}/{owner}/packages?package_type=container (GHCR has no /v2/_catalog)
- GET/DELETE /{orgs|users}/{owner}/packages/container/{package}/versions[/{id}]
- GET /users/{owner} (is the owner an organisation?)
- GET /repos/{owner}/{repo}/actions/artifacts, DELETE …/artifacts/{id}
- POST /repos/{owner}/{repo}/actions/workflows/{workflow}/dispatches (a refresh build)
Pagination follows the ``Link: <…>; rel="next"`` header (on the API's own origin only: the
token never goes elsewhere); 403 rate limits (``x-ratelimit-remaining: 0``) and 429
are retried with backoff (``Retry-After`` / ``x-ratelimit-reset`` honoured, capped).
"""

from __future__ import annotations

import email.utils
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import requests
import tenacity

from dcforge.core.errors import RegistryError

PER_PAGE = 100
MAX_WAIT = 60.0
HINTS = {
    401: " — GITHUB_TOKEN is not valid",
    403: " — the token may not read (or delete) these packages: give the job "
    "'packages: read' ('packages: write' to delete) or a token with read:packages",
    404: " — no such owner or package, or the token cannot see it",
}


class RateLimited(Exception):
    def __init__(self, wait: float) -> None:
        super().__init__(f"rate limited, retry in {wait:.0f} s")
        self.wait = wait


class Transient(Exception):
    """A 5xx or connection error worth one more try."""


def _wait(retry_state: tenacity.RetryCallState) -> float:
    exc = retry_state.outcome.exception() if retry_state.outcome else None
    if isinstance(exc, RateLimited):
        return min(exc.wait, MAX_WAIT)
    return float(min(2**retry_state.attempt_number * 0.25, 8.0))


@dataclass(frozen=True)
class PackageVersion:
    id: int
    digest: str
    created_at: str
    tags: tuple[str, ...]


@dataclass(frozen=True)
class Artifact:
    id: int
    name: str
    created_at: str
    size_in_bytes: int
    expired: bool


def _seconds(retry_after: str) -> float:
    """``Retry-After``: seconds, or an HTTP date (RFC 9110); unreadable means a second."""
    try:
        return max(0.0, float(retry_after))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(retry_after)
    except (TypeError, ValueError):
        return 1.0
    return max(0.0, when.timestamp() - time.time())


MAX_PAGES = 1000  # 100,000 items: past that a Link loop, not a listing


class GitHub:
    def __init__(
        self,
        token: str,
        api_url: str = "https://api.github.com",
        session: requests.Session | None = None,
        attempts: int = 5,
    ) -> None:
        if not token:
            raise RegistryError("GITHUB_TOKEN is not set: the GitHub API needs a token")
        self.api = api_url.rstrip("/")
        self.session = session or requests.Session()
        self.session.headers.update(
            {
                "Authorization": f"Bearer {token}",
                "Accept": "application/vnd.github+json",
                "X-GitHub-Api-Version": "2022-11-28",
                "User-Agent": "dcforge",
            }
        )
        self.attempts = attempts

    def _request(
        self, method: str, path: str, json_body: Any = None, **params: Any
    ) -> requests.Response:
        """``path`` under the API, or an absolute URL on the API's own origin (a Link)."""
        url = path if path.startswith(("http://", "https://")) else f"{self.api}{path}"
        if urllib.parse.urlsplit(url)[:2] != urllib.parse.urlsplit(self.api)[:2]:
            raise RegistryError(f"GitHub API: refusing to follow {url} off {self.api}")

        @tenacity.retry(
            retry=tenacity.retry_if_exception_type((RateLimited, Transient)),
            wait=_wait,
            stop=tenacity.stop_after_attempt(self.attempts),
            reraise=True,
        )
        def once() -> requests.Response:
            try:
                resp = self.session.request(
                    method, url, params=params or None, json=json_body, timeout=30
                )
            except requests.RequestException as err:
                raise Transient(str(err)) from err
            if resp.status_code == 429 or (
                resp.status_code == 403 and resp.headers.get("x-ratelimit-remaining") == "0"
            ):
                if "retry-after" in resp.headers:
                    wait = _seconds(resp.headers["retry-after"])
                else:
                    reset = float(resp.headers.get("x-ratelimit-reset", time.time() + 1))
                    wait = max(0.0, reset - time.time())
                raise RateLimited(wait)
            if resp.status_code >= 500:
                raise Transient(f"{resp.status_code} from {path}")
            return resp

        try:
            resp = once()
        except (RateLimited, Transient) as err:
            raise RegistryError(
                f"GitHub API {method} {path}: gave up after retries ({err})"
            ) from None
        if resp.status_code >= 400:
            message = ""
            try:
                message = str(resp.json().get("message", ""))
            except (ValueError, AttributeError):
                message = resp.text[:200]
            hint = HINTS.get(resp.status_code, "")
            raise RegistryError(f"GitHub API {method} {path}: {resp.status_code} {message}{hint}")
        return resp

    def _pages(self, path: str, key: str | None = None, **params: Any) -> Iterator[dict[str, Any]]:
        """Every item of a listing, page after page as the ``Link`` header leads."""
        url: str | None = path
        query: dict[str, Any] = {"per_page": PER_PAGE, **params}
        seen: set[str] = set()
        while url:
            if url in seen or len(seen) >= MAX_PAGES:
                raise RegistryError(f"GitHub API GET {path}: the pages lead in a circle")
            seen.add(url)
            resp = self._request("GET", url, **query)
            try:
                data = resp.json()
            except ValueError:
                data = None
            items = data.get(key, []) if key and isinstance(data, dict) else data
            if not isinstance(items, list):
                raise RegistryError(f"GitHub API GET {path}: unexpected payload")
            yield from (i for i in items if isinstance(i, dict))
            url, query = resp.links.get("next", {}).get("url"), {}  # the Link keeps the query

    # --- packages -------------------------------------------------------------------------

    def owner_kind(self, owner: str) -> str:
        """``orgs`` or ``users``, the path prefix the packages API wants."""
        data = self._request("GET", f"/users/{urllib.parse.quote(owner)}").json()
        return "orgs" if data.get("type") == "Organization" else "users"

    def container_packages(self, kind: str, owner: str) -> list[str]:
        """Names of the owner's container packages (``dc/base`` for ghcr.io/owner/dc/base)."""
        path = f"/{kind}/{urllib.parse.quote(owner)}/packages"
        return [str(p["name"]) for p in self._pages(path, package_type="container") if "name" in p]

    def _package_path(self, kind: str, owner: str, package: str) -> str:
        return (
            f"/{kind}/{urllib.parse.quote(owner)}/packages/container/"
            f"{urllib.parse.quote(package, safe='')}/versions"
        )

    def package_versions(self, kind: str, owner: str, package: str) -> list[PackageVersion]:
        out = []
        for item in self._pages(self._package_path(kind, owner, package)):
            meta = (item.get("metadata") or {}).get("container") or {}
            out.append(
                PackageVersion(
                    int(item["id"]),
                    str(item["name"]),
                    str(item["created_at"]),
                    tuple(meta.get("tags") or ()),
                )
            )
        return out

    def delete_package_version(self, kind: str, owner: str, package: str, version_id: int) -> None:
        self._request("DELETE", f"{self._package_path(kind, owner, package)}/{version_id}")

    # --- workflow artifacts ---------------------------------------------------------------

    def artifacts(self, repo: str) -> list[Artifact]:
        return [
            Artifact(
                int(a["id"]),
                str(a["name"]),
                str(a["created_at"]),
                int(a.get("size_in_bytes", 0)),
                bool(a.get("expired", False)),
            )
            for a in self._pages(f"/repos/{repo}/actions/artifacts", key="artifacts")
        ]

    def delete_artifact(self, repo: str, artifact_id: int) -> None:
        self._request("DELETE", f"/repos/{repo}/actions/artifacts/{artifact_id}")

    # --- workflow dispatch ----------------------------------------------------------------

    def dispatch_workflow(self, repo: str, workflow: str, ref: str, inputs: dict[str, str]) -> None:
        """Start ``workflow`` (a file name in .github/workflows) on ``ref`` with ``inputs``."""
        path = f"/repos/{repo}/actions/workflows/{urllib.parse.quote(workflow)}/dispatches"
        self._request("POST", path, json_body={"ref": ref, "inputs": inputs})
