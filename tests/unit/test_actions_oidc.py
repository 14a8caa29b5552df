"""Who a GitHub Actions job signs as: its OIDC token asked for as GitHub documents it (a
local server speaking that API), the claims read, and what keyless signing then requires."""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar
from urllib.parse import parse_qs, urlsplit

import pytest

from dcforge.cli import main as cli_main
from dcforge.core import provenance
from dcforge.core.errors import ConfigError, ToolError
from dcforge.core.settings import SigningConfig
from dcforge.infra import actions_oidc
from dcforge.infra.tools.cosign import Signer

REUSABLE = "dcforge-org/dcforge/.github/workflows/images.yml@refs/tags/v1"
CLAIMS = {
    "iss": "https://token.actions.githubusercontent.com",
    "aud": "sigstore",
    "repository": "acme/images",
    "ref": "refs/heads/main",
    "workflow_ref": "acme/images/.github/workflows/images.yml@refs/heads/main",
    "job_workflow_ref": REUSABLE,
}
BEARER = "request-token-of-this-job"


def _jwt(claims: dict[str, object]) -> str:
    part = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return f"eyJhbGciOiJFUzI1NiJ9.{part}.c2ln"


class _Actions(BaseHTTPRequestHandler):
    """GitHub's token endpoint: GET URL&audience=AUD, ``Authorization: bearer TOKEN``."""

    asked: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        query = parse_qs(urlsplit(self.path).query)
        self.asked.append(self.path)
        if self.headers.get("Authorization") != f"bearer {BEARER}":
            self.send_response(401)
            self.end_headers()
            return
        body = json.dumps({"count": 1, "value": _jwt({**CLAIMS, "aud": query["audience"][0]})})
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body.encode())

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def actions() -> Iterator[dict[str, str]]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Actions)
    _Actions.asked.clear()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/_apis/token?api-version=2.0"
    yield {actions_oidc.URL_VAR: url, actions_oidc.TOKEN_VAR: BEARER}
    server.shutdown()
    server.server_close()


def test_the_identity_is_the_reusable_workflow_and_the_run_is_the_callers(
    actions: dict[str, str],
) -> None:
    found = actions_oidc.workflow_identity({**actions, "GITHUB_SERVER_URL": "https://github.com"})
    assert found.identity == f"https://github.com/{REUSABLE}"
    assert (found.repository, found.ref) == ("acme/images", "refs/heads/main")
    # asked as cosign asks: the URL's own query kept, the audience sigstore added
    assert "api-version=2.0" in _Actions.asked[0] and "audience=sigstore" in _Actions.asked[0]
    assert found.env() == {
        "DCFORGE_COSIGN_IDENTITY": f"https://github.com/{REUSABLE}",
        "DCFORGE_COSIGN_REPOSITORY": "acme/images",
        "DCFORGE_COSIGN_REF": "refs/heads/main",
    }


def test_no_token_without_id_token_write_and_a_refused_request_says_so(
    actions: dict[str, str],
) -> None:
    with pytest.raises(ConfigError, match="id-token: write"):
        actions_oidc.workflow_identity({})
    with pytest.raises(ToolError, match="HTTP 401"):
        actions_oidc.workflow_identity({**actions, actions_oidc.TOKEN_VAR: "another job's"})


@pytest.mark.parametrize(
    ("token", "match"),
    [
        ("not-a-jwt", "not a JWT"),
        ("a.!!!.c", "does not decode"),
        (_jwt({"repository": "acme/images", "ref": "refs/heads/main"}), "no job_workflow_ref"),
    ],
)
def test_a_token_that_names_no_workflow_is_refused(token: str, match: str) -> None:
    with pytest.raises(ToolError, match=match):
        actions_oidc.identity(actions_oidc.claims(token), "https://github.com")


def test_signing_identity_sets_what_publish_and_verify_require(
    actions: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    github_env = tmp_path / "github_env"
    github_env.write_text("EARLIER=1\n")
    env = {**actions, "GITHUB_ENV": str(github_env), "GITHUB_SERVER_URL": "https://github.com"}
    assert cli_main.run(["signing-identity", "--github-env"], env) == 0
    written = dict(line.split("=", 1) for line in github_env.read_text().splitlines())
    assert written["EARLIER"] == "1"
    assert written["DCFORGE_COSIGN_IDENTITY"] == f"https://github.com/{REUSABLE}"
    assert "DCFORGE_COSIGN_REPOSITORY=acme/images" in capsys.readouterr().out
    # ... which keyless settings take, and which builder.id and cosign's checks then name
    signing = SigningConfig.parse({"DCFORGE_SIGNING": "keyless", **written})
    assert (signing.repository, signing.source_ref) == ("acme/images", "refs/heads/main")
    flags = Signer(
        identity=signing.identity, repository=signing.repository, source_ref=signing.source_ref
    ).verify_flags()
    assert flags[flags.index("--certificate-github-workflow-repository") + 1] == "acme/images"
    assert flags[flags.index("--certificate-github-workflow-ref") + 1] == "refs/heads/main"
    caller = {"GITHUB_ACTIONS": "true", "GITHUB_WORKFLOW_REF": CLAIMS["workflow_ref"]}
    assert provenance.builder_id(caller) == f"https://github.com/{CLAIMS['workflow_ref']}"
    keyless = {**caller, "DCFORGE_SIGNING": "keyless", **written}
    assert provenance.builder_id(keyless) == f"https://github.com/{REUSABLE}"


def test_the_run_pins_are_keyless_only() -> None:
    with pytest.raises(ConfigError, match="DCFORGE_COSIGN_REPOSITORY is for keyless"):
        SigningConfig.parse({"DCFORGE_COSIGN_REPOSITORY": "acme/images"})
    with pytest.raises(ConfigError, match="GITHUB_ENV is not set"):
        cli_main.run(["signing-identity", "--github-env"], {})
