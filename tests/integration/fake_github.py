"""A local HTTP server speaking the documented GitHub REST endpoints dcforge uses.

Packages (GHCR) versions are derived from a real local registry's tags, with created_at
chosen by the test; DELETE of a version also deletes the manifest from that registry, as
GHCR would. Listings are paginated as GitHub documents it: ``per_page``/``page`` and a
``Link`` header with ``rel="next"`` (and ``"last"``) while more pages follow. Owners are
organisations or users (``owner_type``); an unknown owner is a 404. Faults (429 rate
limits, permanent 403s) are injected per request count.
"""

from __future__ import annotations

import json
import re
import threading
import urllib.request
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlencode, urlparse


@dataclass
class State:
    registry_port: int = 0
    owner: str = "acme"
    owner_type: str = "Organization"  # or "User": the API paths are /orgs/… or /users/…
    packages: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # name → versions
    artifacts: list[dict[str, Any]] = field(default_factory=list)
    rate_limit_next: int = 0  # answer this many requests with 429 first
    fail_delete_after: int | None = None  # permanent 403 after N successful deletes
    deletes: int = 0
    requests: list[str] = field(default_factory=list)
    auth: list[str] = field(default_factory=list)
    forbid: bool = False  # every request: 403 without rate-limit headers (a missing scope)
    link_host: str = ""  # a hostile server: its Link headers point at this origin
    dispatches: list[dict[str, Any]] = field(default_factory=list)  # workflow, ref, inputs

    def add_version(self, package: str, digest: str, tags: list[str], created_at: str) -> None:
        versions = self.packages.setdefault(package, [])
        vid = 1000 + sum(len(v) for v in self.packages.values())
        versions.append(
            {
                "id": vid,
                "name": digest,
                "url": f"https://api.github.com/x/{vid}",
                "package_html_url": "https://github.com/orgs/acme/packages/container/package/x",
                "created_at": created_at,
                "updated_at": created_at,
                "html_url": f"https://github.com/orgs/acme/packages/container/x/{vid}",
                "metadata": {"package_type": "container", "container": {"tags": tags}},
            }
        )


class Handler(BaseHTTPRequestHandler):
    state: State

    def log_message(self, *args: Any) -> None:
        return

    def _send(self, status: int, body: Any = None, headers: dict[str, str] | None = None) -> None:
        data = b"" if body is None else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _limited(self) -> bool:
        st = self.state
        st.requests.append(f"{self.command} {self.path}")
        st.auth.append(self.headers.get("Authorization", ""))
        if st.forbid:
            self._send(403, {"message": "Resource not accessible by integration"})
            return True
        if st.rate_limit_next > 0:
            st.rate_limit_next -= 1
            self._send(429, {"message": "secondary rate limit"}, {"Retry-After": "0"})
            return True
        return False

    def _page(self, items: list[Any], wrap: str | None = None) -> None:
        """One page of ``items`` with GitHub's Link header pointing at the next ones."""
        url = urlparse(self.path)
        q = {k: v[0] for k, v in parse_qs(url.query).items()}
        page, per_page = int(q.get("page", "1")), min(int(q.get("per_page", "30")), 100)
        last = max(1, -(-len(items) // per_page))
        links = []
        host = self.state.link_host or f"http://{self.headers.get('Host')}"
        for rel, n in (("next", page + 1), ("last", last)):
            if page < last:
                links.append(f'<{host}{url.path}?{urlencode({**q, "page": n})}>; rel="{rel}"')
        body = items[(page - 1) * per_page : page * per_page]
        payload: Any = {"total_count": len(items), wrap: body} if wrap else body
        self._send(200, payload, {"Link": ", ".join(links)} if links else None)

    def _owner(self, kind: str, owner: str) -> bool:
        expected = "orgs" if self.state.owner_type == "Organization" else "users"
        if owner != self.state.owner or kind != expected:
            self._send(404, {"message": "Not Found"})
            return False
        return True

    def do_GET(self) -> None:
        if self._limited():
            return
        url = urlparse(self.path)
        q = parse_qs(url.query)
        if m := re.fullmatch(r"/users/([^/]+)", url.path):
            self._send(200, {"login": m.group(1), "type": self.state.owner_type})
        elif m := re.fullmatch(r"/(orgs|users)/([^/]+)/packages", url.path):
            if not self._owner(m.group(1), m.group(2)):
                return
            if q.get("package_type") != ["container"]:
                self._send(400, {"message": "package_type is required"})
                return
            self._page([{"id": i, "name": n, "package_type": "container"}
                        for i, n in enumerate(sorted(self.state.packages))])  # fmt: skip
        elif m := re.fullmatch(
            r"/(orgs|users)/([^/]+)/packages/container/([^/]+)/versions", url.path
        ):
            if not self._owner(m.group(1), m.group(2)):
                return
            versions = self.state.packages.get(unquote(m.group(3)))
            if versions is None:
                self._send(404, {"message": "Package not found."})
                return
            self._page(versions)
        elif re.fullmatch(r"/repos/[^/]+/[^/]+/actions/artifacts", url.path):
            self._page(self.state.artifacts, wrap="artifacts")
        else:
            self._send(404, {"message": "Not Found"})

    def do_DELETE(self) -> None:
        if self._limited():
            return
        st = self.state
        if st.fail_delete_after is not None and st.deletes >= st.fail_delete_after:
            self._send(403, {"message": "Resource not accessible by integration"})
            return
        url = urlparse(self.path)
        if m := re.fullmatch(
            r"/(?:orgs|users)/([^/]+)/packages/container/([^/]+)/versions/(\d+)", url.path
        ):
            package, vid = unquote(m.group(2)), int(m.group(3))
            versions = st.packages.get(package, [])
            match = [v for v in versions if v["id"] == vid]
            if not match:
                self._send(404, {"message": "Not Found"})
                return
            versions.remove(match[0])
            req = urllib.request.Request(
                f"http://127.0.0.1:{st.registry_port}/v2/{st.owner}/{package}/manifests/{match[0]['name']}",
                method="DELETE",
            )
            urllib.request.urlopen(req, timeout=10).close()
            st.deletes += 1
            self._send(204)
        elif m := re.fullmatch(r"/repos/[^/]+/[^/]+/actions/artifacts/(\d+)", url.path):
            aid = int(m.group(1))
            st.artifacts = [a for a in st.artifacts if a["id"] != aid]
            st.deletes += 1
            self._send(204)
        else:
            self._send(404, {"message": "Not Found"})


def _do_post(self: Handler) -> None:
    if self._limited():
        return
    url = urlparse(self.path)
    m = re.fullmatch(r"/repos/([^/]+/[^/]+)/actions/workflows/([^/]+)/dispatches", url.path)
    body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))) or b"{}")
    if not m or not isinstance(body.get("ref"), str):
        self._send(422 if m else 404, {"message": "Invalid request" if m else "Not Found"})
        return
    self.state.dispatches.append({"repo": m.group(1), "workflow": unquote(m.group(2)), **body})
    self._send(204)


Handler.do_POST = _do_post  # type: ignore[attr-defined]


class FakeGitHub:
    def __init__(self, state: State) -> None:
        handler = type("BoundHandler", (Handler,), {"state": state})
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.state = state
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> FakeGitHub:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
