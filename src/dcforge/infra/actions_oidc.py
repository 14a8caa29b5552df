"""Who a GitHub Actions job signs as, from the job's own OIDC token.

A job holding ``id-token: write`` gets ``ACTIONS_ID_TOKEN_REQUEST_URL`` and
``ACTIONS_ID_TOKEN_REQUEST_TOKEN``: ``GET URL&audience=AUD`` with ``Authorization: bearer
TOKEN`` answers ``{"value": JWT}`` (GitHub's "OpenID Connect" docs; actions/toolkit
``core.getIDToken``; cosign's ``pkg/providers/github`` asks the same, with audience
``sigstore``). Fulcio names the certificate after the token's ``job_workflow_ref`` — the
reusable workflow at its ref, for a job of one — and records the run's ``repository`` and
``ref``. A reusable workflow cannot read its own ref from any context (``github.*`` is the
caller's; actions/runner#2417), so ``dcforge signing-identity`` reads the token.

The claims are read, not verified: the token is the runner's, for this very job, and what
it names is only what dcforge then requires of its own signatures — a wrong claim makes
verify fail, never pass.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import requests

from dcforge.core.errors import ConfigError, ToolError
from dcforge.infra import retry

AUDIENCE = "sigstore"
URL_VAR, TOKEN_VAR = "ACTIONS_ID_TOKEN_REQUEST_URL", "ACTIONS_ID_TOKEN_REQUEST_TOKEN"


@dataclass(frozen=True)
class WorkflowIdentity:
    """The certificate identity (``server/job_workflow_ref``) and the run it signs for."""

    identity: str
    repository: str
    ref: str

    def env(self) -> dict[str, str]:
        """What keyless publish and verify then require (``DCFORGE_COSIGN_*``)."""
        return {
            "DCFORGE_COSIGN_IDENTITY": self.identity,
            "DCFORGE_COSIGN_REPOSITORY": self.repository,
            "DCFORGE_COSIGN_REF": self.ref,
        }


def claims(jwt: str) -> dict[str, Any]:
    """A JWT's payload, unverified (see the module)."""
    parts = jwt.split(".")
    if len(parts) != 3:
        raise ToolError("the OIDC token is not a JWT (want header.payload.signature)")
    try:
        payload = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (binascii.Error, ValueError) as err:
        raise ToolError(f"the OIDC token's payload does not decode: {err}") from None
    if not isinstance(payload, dict):
        raise ToolError("the OIDC token's payload is not a JSON object")
    return payload


def identity(found: Mapping[str, Any], server: str) -> WorkflowIdentity:
    """The identity Fulcio gives a token with ``found`` claims, on GitHub at ``server``."""
    missing = [c for c in ("job_workflow_ref", "repository", "ref") if not found.get(c)]
    if missing:
        raise ToolError(
            f"the OIDC token has no {', '.join(missing)} claim: is this a GitHub Actions "
            "job's token?"
        )
    return WorkflowIdentity(
        f"{server.rstrip('/')}/{found['job_workflow_ref']}",
        str(found["repository"]),
        str(found["ref"]),
    )


def fetch(env: Mapping[str, str], audience: str = AUDIENCE) -> str:
    """This job's OIDC token for ``audience``."""
    url, bearer = env.get(URL_VAR, ""), env.get(TOKEN_VAR, "")
    if not (url and bearer):
        raise ConfigError(
            f"environment: {URL_VAR} is not set — this job has no OIDC token; grant it "
            "`permissions: id-token: write` (in GitHub Actions), or sign with a key"
        )

    def ask() -> str:
        try:
            answer = requests.get(
                url,
                params={"audience": audience},
                headers={"Authorization": f"bearer {bearer}", "Accept": "application/json"},
                timeout=30,
            )
        except requests.RequestException as err:
            raise ToolError(f"OIDC token request failed: {type(err).__name__}") from None
        if answer.status_code != 200:
            raise ToolError(f"OIDC token request answered HTTP {answer.status_code}")
        try:
            value = answer.json()["value"]
        except (ValueError, KeyError, TypeError):
            raise ToolError("OIDC token request: the answer has no `value`") from None
        return str(value)

    return retry.transient(ask)


def workflow_identity(env: Mapping[str, str]) -> WorkflowIdentity:
    """Who this job signs as, keyless."""
    return identity(claims(fetch(env)), env.get("GITHUB_SERVER_URL", "https://github.com"))
