"""The in-process registry client's pure parts: challenges, pagination, where credentials
come from, and errors worded so that the retry and absent-vs-down checks hold."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

import pytest
import requests

from dcforge.core.errors import ToolError
from dcforge.infra.retry import is_transient
from dcforge.infra.tools.registry import ABSENT
from dcforge.infra.tools.registry_http import (
    Ref,
    _failure,
    ca_bundle,
    credentials,
    next_link,
    parse_challenge,
)


def test_bearer_and_basic_challenges() -> None:
    scheme, params = parse_challenge(
        'Bearer realm="https://ghcr.io/token",service="ghcr.io",scope="repository:o/r:pull"'
    )
    assert scheme == "bearer"
    assert params == {
        "realm": "https://ghcr.io/token",
        "service": "ghcr.io",
        "scope": "repository:o/r:pull",
    }
    assert parse_challenge('Basic realm="Registry Realm"') == ("basic", {"realm": "Registry Realm"})
    # A scope with commas stays whole inside its quotes; unquoted values are taken too.
    _, params = parse_challenge('Bearer realm=http://x/t, scope="repository:a:pull,push"')
    assert params == {"realm": "http://x/t", "scope": "repository:a:pull,push"}


def test_next_link_is_resolved_against_the_page() -> None:
    base = "https://r.example/v2/a/tags/list?n=1000"
    link = '</v2/a/tags/list?n=1000&last=v9>; rel="next"'
    assert next_link(link, base) == "https://r.example/v2/a/tags/list?n=1000&last=v9"
    assert next_link("", base) == ""
    assert next_link('</x>; rel="prev"', base) == ""


def _config(home: Path, config: object) -> dict[str, str]:
    (home / ".docker").mkdir(parents=True, exist_ok=True)
    (home / ".docker/config.json").write_text(json.dumps(config))
    return {"HOME": str(home), "PATH": os.environ["PATH"]}


def test_credentials_as_docker_files_them(tmp_path: Path) -> None:
    auth = base64.b64encode(b"me:s3cret:with:colons").decode()
    env = _config(tmp_path, {"auths": {"ghcr.io": {"auth": auth}}})
    assert credentials("ghcr.io", env) == ("me", "s3cret:with:colons")
    assert credentials("other.io", env) is None
    env = _config(tmp_path, {"auths": {"https://ghcr.io": {"username": "u", "password": "p"}}})
    assert credentials("ghcr.io", env) == ("u", "p")
    env = _config(tmp_path, {"auths": {"https://index.docker.io/v1/": {"auth": auth}}})
    assert credentials("docker.io", env) == ("me", "s3cret:with:colons")
    env = _config(tmp_path, {"auths": {"r.example": {"identitytoken": "refresh"}}})
    assert credentials("r.example", env) == ("<token>", "refresh")


def test_docker_config_overrides_home(tmp_path: Path) -> None:
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere/config.json").write_text(
        json.dumps({"auths": {"r.example": {"username": "a", "password": "b"}}})
    )
    env = {"HOME": str(tmp_path / "nohome"), "DOCKER_CONFIG": str(tmp_path / "elsewhere")}
    assert credentials("r.example", env) == ("a", "b")


def test_a_broken_config_is_an_error_not_anonymous(tmp_path: Path) -> None:
    env = _config(tmp_path, {})
    (tmp_path / ".docker/config.json").write_text("{not json")
    with pytest.raises(ToolError, match=r"config\.json"):
        credentials("known.io", env)
    (tmp_path / ".docker/config.json").write_text("[]")
    with pytest.raises(ToolError, match="not a JSON object"):
        credentials("known.io", env)


def test_references() -> None:
    ref = Ref.parse("localhost:5000/a/b:v1")
    assert (ref.host, ref.repository, ref.tag, ref.target) == ("localhost:5000", "a/b", "v1", "v1")
    pinned = Ref.parse("ghcr.io/o/r:v1@sha256:" + "a" * 64)
    assert pinned.target == "sha256:" + "a" * 64
    assert Ref.parse("ghcr.io/o/r").target == "latest"
    with pytest.raises(ToolError, match="not an image reference"):
        Ref.parse("ghcr.io/o/r@sha256:short")
    with pytest.raises(ToolError, match="not an image reference"):
        Ref.parse("justaname")


def _response(status: int, body: object) -> requests.Response:
    r = requests.Response()
    r.status_code = status
    r.reason = {404: "Not Found", 503: "Service Unavailable", 401: "Unauthorized"}[status]
    r._content = json.dumps(body).encode()
    return r


def test_errors_are_worded_for_the_retry_and_the_absent_check() -> None:
    missing = _failure(
        "GET",
        "http://r/v2/a/manifests/x",
        _response(404, {"errors": [{"code": "MANIFEST_UNKNOWN", "message": "manifest unknown"}]}),
    )
    assert ABSENT.search(str(missing))
    assert not is_transient(missing)
    bare = _failure("GET", "http://r/v2/a/tags/list", _response(404, {}))
    assert ABSENT.search(str(bare))
    down = _failure("GET", "http://r/v2/a/manifests/x", _response(503, {}))
    assert is_transient(down)
    assert not ABSENT.search(str(down))
    denied = _failure(
        "GET",
        "http://r/v2/a/manifests/x",
        _response(
            401, {"errors": [{"code": "UNAUTHORIZED", "message": "authentication required"}]}
        ),
    )
    assert not ABSENT.search(str(denied)) and not is_transient(denied)


def test_tls_trusts_what_the_go_tools_trust(tmp_path: Path) -> None:
    bundle = tmp_path / "ca.pem"
    assert ca_bundle({"SSL_CERT_FILE": str(bundle)}) == str(bundle)
    found = ca_bundle({})
    assert found is True or Path(str(found)).is_file()
