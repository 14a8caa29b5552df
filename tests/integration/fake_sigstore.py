"""A local stand-in for Sigstore's keyless signing: a test OIDC issuer that mints GitHub
Actions-like tokens (also as the Actions token endpoint a job with ``id-token: write``
asks, for its own workflow or a reusable one it runs), and a Fulcio-compatible CA (with its
own CT log key) that turns such a token and a proof of possession into a short-lived
code-signing certificate. Both are real HTTP servers on 127.0.0.1, each in a thread of the
test process.

What the CA implements, and where it was read (sigstore/fulcio at v1.6.6, the Fulcio
cosign v2.5.0 links, go.mod ``github.com/sigstore/fulcio v1.6.6``):

* ``POST /api/v1/signingCert`` (fulcio_legacy.proto; pkg/api/client.go ``SigningCert``):
  what cosign v2.5.0 calls. JSON ``{"publicKey": {"content": base64(PEM), "algorithm"},
  "signedEmailAddress": base64(sig)}``, the token as ``Authorization: Bearer``; answers
  201 with the PEM chain (leaf first) and, for a detached SCT, an ``SCT`` header
  (pkg/server/legacy_server.go). This CA embeds the SCT, so it sends no header.
* ``POST /api/v2/signingCert`` (fulcio.proto ``CreateSigningCertificate``; JSON names
  of grpc-gateway): ``{"credentials": {"oidcIdentityToken"}, "publicKeyRequest":
  {"publicKey": {"algorithm", "content": PEM}, "proofOfPossession": base64}}`` or
  ``"certificateSigningRequest"``; answers ``{"signedCertificateEmbeddedSct": {"chain":
  {"certificates": [PEM, ...]}}}``.
* ``GET /api/v2/trustBundle`` (``{"chains": [{"certificates": [PEM]}]}``) and
  ``GET /api/v1/rootCert`` (the PEM chain).
* The proof of possession is a signature over the token's ``sub`` claim (fulcio.proto
  ``PublicKeyRequest.proof_of_possession``; cosign cmd/cosign/cli/fulcio/fulcio.go signs
  ``tok.Subject``, sigstore pkg/oauthflow: the ``email`` claim if any, else ``sub``).
* A GitHub workflow token becomes (pkg/identity/github/principal.go): SAN URI
  ``https://github.com/`` + ``job_workflow_ref``; the issuer as OID 1.3.6.1.4.1.57264.1.1
  (raw bytes) and .1.8 (DER UTF8String); the deprecated GitHub workflow extensions
  .1.2-.1.6 (raw) and .1.9-.1.22 (DER UTF8String) (pkg/certificate/extensions.go).
* The certificate carries an embedded SCT (RFC 6962 3.3, a precertificate's SCT) signed
  by this CA's own CT log key: cosign checks it against SIGSTORE_CT_LOG_PUBLIC_KEY_FILE
  when it signs (fulcioverifier) and when it verifies (pkg/cosign/verify_sct.go).
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import secrets
import struct
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

AUDIENCE = "sigstore"
CERT_LIFETIME = dt.timedelta(minutes=10)
FULCIO = "1.3.6.1.4.1.57264.1."
SCT_LIST_OID = x509.ObjectIdentifier("1.3.6.1.4.1.11129.2.4.2")


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _der_length(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(raw)]) + raw


def der_utf8(text: str) -> bytes:
    raw = text.encode()
    return b"\x0c" + _der_length(len(raw)) + raw


def der_octets(raw: bytes) -> bytes:
    return b"\x04" + _der_length(len(raw)) + raw


class Refused(Exception):
    """A request the CA refuses: HTTP ``status`` and a message, as Fulcio answers."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


# A route answers a request's headers, body and query parameters.
Route = Callable[[Mapping[str, str], bytes, Mapping[str, str]], tuple[int, dict[str, str], bytes]]


def _dispatch(
    route: Route | None, headers: Mapping[str, str], body: bytes, query: Mapping[str, str]
) -> tuple[int, dict[str, str], bytes]:
    """The route's answer; a refusal or a failure as Fulcio's JSON error."""
    if route is None:
        return 404, {}, b'{"code": 5, "message": "not found"}'
    try:
        return route(headers, body, query)
    except Refused as err:
        return err.status, {}, json.dumps({"code": err.status, "message": str(err)}).encode()
    except Exception as err:  # a bug here: cosign then says what, not "EOF"
        return 500, {}, json.dumps({"code": 13, "message": repr(err)}).encode()


class _Server:
    """A threaded HTTP server on 127.0.0.1 serving ``routes`` ((method, path) → handler)."""

    def __init__(self, routes: Mapping[tuple[str, str], Route]) -> None:
        table = dict(routes)

        class Handler(BaseHTTPRequestHandler):
            def _answer(self, method: str) -> None:
                size = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(size) if size else b""
                path, _, query = self.path.partition("?")
                got = dict(self.headers.items())
                params = dict(urllib.parse.parse_qsl(query))
                status, headers, out = _dispatch(table.get((method, path)), got, body, params)
                self.send_response(status)
                for name, value in {"Content-Type": "application/json", **headers}.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            def do_GET(self) -> None:
                self._answer("GET")

            def do_POST(self) -> None:
                self._answer("POST")

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join()


def _json(doc: object, status: int = 200) -> tuple[int, dict[str, str], bytes]:
    return status, {}, json.dumps(doc).encode()


@dataclass(frozen=True)
class Workflow:
    """A GitHub Actions run a token is minted for (the claims GitHub's tokens carry)."""

    repository: str = "octo-org/devcontainers"
    workflow_file: str = "build-publish.yml"
    ref: str = "refs/heads/main"
    sha: str = "a" * 40
    event_name: str = "push"
    # The reusable workflow the job runs, ``owner/repo/.github/workflows/<file>@<ref>``
    # (its ``uses:``), when it runs one: then the token's job_workflow_ref, and so the
    # certificate's identity, is that one's, while workflow_ref stays the caller's.
    job_workflow: str = ""

    @property
    def workflow_ref(self) -> str:
        """The workflow the run was started for (the caller, for a reusable workflow)."""
        return f"{self.repository}/.github/workflows/{self.workflow_file}@{self.ref}"

    @property
    def job_workflow_ref(self) -> str:
        return self.job_workflow or self.workflow_ref

    @property
    def job_workflow_sha(self) -> str:
        """The commit of the job's workflow: the caller's, or the reusable workflow's
        (its ``@ref`` if that is a commit, else a stand-in commit of that ref)."""
        if not self.job_workflow:
            return self.sha
        ref = self.job_workflow.rsplit("@", 1)[-1]
        if len(ref) == 40 and all(c in "0123456789abcdef" for c in ref):
            return ref
        return hashlib.sha1(self.job_workflow.encode(), usedforsecurity=False).hexdigest()

    @property
    def identity(self) -> str:
        """The certificate identity Fulcio gives this workflow's tokens."""
        return f"https://github.com/{self.job_workflow_ref}"

    def claims(self) -> dict[str, str]:
        owner = self.repository.split("/", 1)[0]
        return {
            "sub": f"repo:{self.repository}:ref:{self.ref}",
            "ref": self.ref,
            "ref_type": "branch",
            "sha": self.sha,
            "repository": self.repository,
            "repository_id": "123456",
            "repository_owner": owner,
            "repository_owner_id": "654321",
            "repository_visibility": "private",
            "run_id": "42",
            "run_number": "7",
            "run_attempt": "1",
            "runner_environment": "github-hosted",
            "actor": "octocat",
            "event_name": self.event_name,
            "workflow": self.workflow_file.rsplit(".", 1)[0],
            "workflow_ref": self.workflow_ref,
            "workflow_sha": self.sha,
            "job_workflow_ref": self.job_workflow_ref,
            "job_workflow_sha": self.job_workflow_sha,
        }


@dataclass(frozen=True)
class ActionsTokenEndpoint:
    """What a job with ``id-token: write`` is given (the rehearsal's IdTokenService):
    ``ACTIONS_ID_TOKEN_REQUEST_URL`` (with its query, as the runner's has one) and
    ``ACTIONS_ID_TOKEN_REQUEST_TOKEN``."""

    url: str
    request_token: str


class OidcIssuer:
    """A test OIDC issuer: discovery document, JWKS, and ES256 tokens it mints; and the
    Actions token endpoint a job asks with ``ACTIONS_ID_TOKEN_REQUEST_URL`` and
    ``_TOKEN`` (actions/toolkit ``core.getIDToken``, cosign's GitHub provider): ``GET
    <url>&audience=<aud>`` with ``Authorization: bearer <request token>`` answers
    ``{"count", "value": <token for actions_workflow>}``."""

    def __init__(self) -> None:
        self._key = ec.generate_private_key(ec.SECP256R1())
        self.kid = secrets.token_hex(8)
        self.actions_workflow: Workflow | None = None  # whose tokens the endpoint mints
        self.request_token = secrets.token_urlsafe(24)
        self.actions_served = 0
        self._server = _Server(
            {
                ("GET", "/.well-known/openid-configuration"): lambda h, b, q: _json(
                    self.discovery()
                ),
                ("GET", "/.well-known/jwks"): lambda h, b, q: _json(self.jwks()),
                ("GET", "/actions/token"): self._actions_token,
            }
        )
        self.url = self._server.url

    def serve_actions(self, workflow: Workflow) -> ActionsTokenEndpoint:
        """The endpoint, minting tokens for ``workflow`` from now on."""
        self.actions_workflow = workflow
        return ActionsTokenEndpoint(f"{self.url}/actions/token?api-version=2.0", self.request_token)

    def _actions_token(
        self, headers: Mapping[str, str], body: bytes, query: Mapping[str, str]
    ) -> tuple[int, dict[str, str], bytes]:
        auth = {k.lower(): v for k, v in headers.items()}.get("authorization", "")
        scheme, _, token = auth.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            token.strip().encode(), self.request_token.encode()
        ):
            raise Refused(401, "the request token is not this run's")
        workflow = self.actions_workflow
        if workflow is None:
            raise Refused(404, "no workflow run is served (serve_actions)")
        # Without an audience GitHub's token is for the repository owner's URL.
        owner = workflow.repository.split("/", 1)[0]
        audience = query.get("audience") or f"https://github.com/{owner}"
        self.actions_served += 1
        return _json(
            {"count": self.actions_served, "value": self.token(workflow, audience=audience)}
        )

    def discovery(self) -> dict[str, object]:
        return {
            "issuer": self.url,
            "jwks_uri": f"{self.url}/.well-known/jwks",
            "subject_types_supported": ["public", "pairwise"],
            "response_types_supported": ["id_token"],
            "claims_supported": ["sub", "aud", "exp", "iat", "iss", "job_workflow_ref"],
            "id_token_signing_alg_values_supported": ["ES256"],
            "scopes_supported": ["openid"],
        }

    def jwks(self) -> dict[str, object]:
        numbers = self._key.public_key().public_numbers()
        return {
            "keys": [
                {
                    "kty": "EC",
                    "crv": "P-256",
                    "alg": "ES256",
                    "use": "sig",
                    "kid": self.kid,
                    "x": _b64url(numbers.x.to_bytes(32, "big")),
                    "y": _b64url(numbers.y.to_bytes(32, "big")),
                }
            ]
        }

    def token(
        self,
        workflow: Workflow,
        *,
        audience: str = AUDIENCE,
        lifetime: int = 600,
        **overrides: object,
    ) -> str:
        """A signed JWT like GitHub Actions' for ``workflow``."""
        now = int(time.time())
        claims: dict[str, object] = {
            "jti": secrets.token_hex(16),
            "iss": self.url,
            "aud": audience,
            "iat": now,
            "nbf": now - 5,
            "exp": now + lifetime,
            **workflow.claims(),
            **overrides,
        }
        header = {"alg": "ES256", "typ": "JWT", "kid": self.kid}
        signing_input = (
            f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}"
        )
        r, s = decode_dss_signature(
            self._key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256()))
        )
        return f"{signing_input}.{_b64url(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"

    def close(self) -> None:
        self._server.close()


def _fetch_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.load(response)


def verify_token(token: str, issuers: frozenset[str], now: float | None = None) -> dict[str, Any]:
    """The claims of ``token`` once its signature (against its issuer's JWKS, found by
    OIDC discovery), issuer (one of ``issuers``), audience and lifetime all check out."""
    try:
        head_b64, body_b64, sig_b64 = token.split(".")
        header, claims = json.loads(_unb64url(head_b64)), json.loads(_unb64url(body_b64))
        signature = _unb64url(sig_b64)
    except ValueError:
        raise Refused(401, "the identity token is not a JWT") from None
    issuer = claims.get("iss")
    if issuer not in issuers:
        raise Refused(401, f"the identity token's issuer {issuer!r} is not trusted")
    if header.get("alg") != "ES256" or len(signature) != 64:
        raise Refused(401, f"unsupported token algorithm {header.get('alg')!r}")
    jwks = _fetch_json(_fetch_json(f"{issuer}/.well-known/openid-configuration")["jwks_uri"])
    keys = [k for k in jwks["keys"] if k.get("kid") == header.get("kid")]
    if not keys:
        raise Refused(401, "no key of the issuer's JWKS signed the identity token")
    public = ec.EllipticCurvePublicNumbers(
        int.from_bytes(_unb64url(keys[0]["x"]), "big"),
        int.from_bytes(_unb64url(keys[0]["y"]), "big"),
        ec.SECP256R1(),
    ).public_key()
    der = encode_dss_signature(
        int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
    )
    try:
        public.verify(der, f"{head_b64}.{body_b64}".encode(), ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        raise Refused(401, "the identity token's signature does not verify") from None
    audience = claims.get("aud")
    if AUDIENCE not in (audience if isinstance(audience, list) else [audience]):
        raise Refused(401, f"the identity token's audience is {audience!r}, not {AUDIENCE!r}")
    if float(claims.get("exp", 0)) <= (time.time() if now is None else now):
        raise Refused(401, "the identity token has expired")
    return dict(claims)


def verify_possession(public: Any, proof: bytes, subject: str) -> None:
    """``proof`` is ``public``'s signature over ``subject`` (the token's ``sub``)."""
    try:
        if isinstance(public, ec.EllipticCurvePublicKey):
            public.verify(proof, subject.encode(), ec.ECDSA(hashes.SHA256()))
        elif isinstance(public, ed25519.Ed25519PublicKey):
            public.verify(proof, subject.encode())
        elif isinstance(public, rsa.RSAPublicKey):
            public.verify(proof, subject.encode(), padding.PKCS1v15(), hashes.SHA256())
        else:
            raise Refused(400, "unsupported public key type")
    except InvalidSignature:
        raise Refused(400, "the proof of possession does not verify") from None


GITHUB_V1 = {"2": "event_name", "3": "sha", "4": "workflow", "5": "repository", "6": "ref"}


def github_extensions(claims: Mapping[str, Any]) -> list[x509.UnrecognizedExtension]:
    """Fulcio's extensions for a GitHub workflow token (pkg/identity/github/principal.go)."""
    base = "https://github.com/"
    repo, run = claims["repository"], f"{claims['run_id']}/attempts/{claims['run_attempt']}"
    v2 = {
        "8": claims["iss"],
        "9": base + claims["job_workflow_ref"],
        "10": claims["job_workflow_sha"],
        "11": claims["runner_environment"],
        "12": base + repo,
        "13": claims["sha"],
        "14": claims["ref"],
        "15": claims["repository_id"],
        "16": base + claims["repository_owner"],
        "17": claims["repository_owner_id"],
        "18": base + claims["workflow_ref"],
        "19": claims["workflow_sha"],
        "20": claims["event_name"],
        "21": f"{base}{repo}/actions/runs/{run}",
        "22": claims["repository_visibility"],
    }
    raw = {"1": claims["iss"], **{n: claims[c] for n, c in GITHUB_V1.items()}}
    return [
        *(
            x509.UnrecognizedExtension(x509.ObjectIdentifier(FULCIO + n), str(v).encode())
            for n, v in raw.items()
        ),
        *(
            x509.UnrecognizedExtension(x509.ObjectIdentifier(FULCIO + n), der_utf8(str(v)))
            for n, v in v2.items()
        ),
    ]


REQUIRED_GITHUB_CLAIMS = (
    "job_workflow_ref", "sha", "event_name", "repository", "workflow", "ref",
    "job_workflow_sha", "runner_environment", "repository_id", "repository_owner",
    "repository_owner_id", "repository_visibility", "workflow_ref", "workflow_sha",
    "run_id", "run_attempt",
)  # fmt: skip


@dataclass
class FakeFulcio:
    """A Fulcio-compatible CA trusting the OIDC issuers ``issuers`` (their URLs)."""

    issuers: frozenset[str]
    lifetime: dt.timedelta = CERT_LIFETIME
    issued: list[x509.Certificate] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._root_key = ec.generate_private_key(ec.SECP384R1())
        self.log_key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "dcforge-test"),
                x509.NameAttribute(NameOID.COMMON_NAME, "fake-fulcio"),
            ]
        )
        now = dt.datetime.now(dt.UTC)
        self.root = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self._root_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(hours=1))
            .not_valid_after(now + dt.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=1), critical=True)
            .add_extension(
                x509.KeyUsage(False, False, False, False, False, True, True, False, False),
                critical=True,
            )
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(self._root_key.public_key()), False
            )
            .sign(self._root_key, hashes.SHA384())
        )
        self._server = _Server(
            {
                ("POST", "/api/v1/signingCert"): self._v1_signing_cert,
                ("POST", "/api/v2/signingCert"): self._v2_signing_cert,
                ("GET", "/api/v1/rootCert"): lambda h, b, q: (200, {}, self.root_pem().encode()),
                ("GET", "/api/v2/trustBundle"): lambda h, b, q: _json(
                    {"chains": [{"certificates": [self.root_pem()]}]}
                ),
            }
        )
        self.url = self._server.url

    def root_pem(self) -> str:
        return self.root.public_bytes(serialization.Encoding.PEM).decode()

    def log_public_pem(self) -> bytes:
        return self.log_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def write_trust(self, directory: Path) -> dict[str, str]:
        """The root and CT log key as files; cosign's variables naming them."""
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "fulcio-root.pem").write_text(self.root_pem())
        (directory / "ctlog.pub").write_bytes(self.log_public_pem())
        return {
            "SIGSTORE_ROOT_FILE": str(directory / "fulcio-root.pem"),
            "SIGSTORE_CT_LOG_PUBLIC_KEY_FILE": str(directory / "ctlog.pub"),
        }

    def close(self) -> None:
        self._server.close()

    # -- the API --------------------------------------------------------------------------

    def _v1_signing_cert(
        self, headers: Mapping[str, str], body: bytes, query: Mapping[str, str]
    ) -> tuple[int, dict[str, str], bytes]:
        auth = {k.lower(): v for k, v in headers.items()}.get("authorization", "")
        if not auth.startswith("Bearer "):
            raise Refused(401, "no bearer token")
        try:
            request = json.loads(body)
            if request.get("certificateSigningRequest"):
                key, proof = None, base64.b64decode(request["certificateSigningRequest"])
            else:
                key = base64.b64decode(request["publicKey"]["content"])
                proof = base64.b64decode(request["signedEmailAddress"])
        except (ValueError, KeyError, TypeError):
            raise Refused(400, "malformed signing certificate request") from None
        chain = self.issue(auth[len("Bearer ") :], key, proof, csr=key is None)
        return 201, {"Content-Type": "application/pem-certificate-chain"}, "".join(chain).encode()

    def _v2_signing_cert(
        self, headers: Mapping[str, str], body: bytes, query: Mapping[str, str]
    ) -> tuple[int, dict[str, str], bytes]:
        try:
            request = json.loads(body)
            token = request["credentials"]["oidcIdentityToken"]
            if "certificateSigningRequest" in request:
                key, proof = None, base64.b64decode(request["certificateSigningRequest"])
            else:
                pkr = request["publicKeyRequest"]
                key = pkr["publicKey"]["content"].encode()
                proof = base64.b64decode(pkr["proofOfPossession"])
        except (ValueError, KeyError, TypeError):
            raise Refused(400, "malformed CreateSigningCertificateRequest") from None
        chain = self.issue(token, key, proof, csr=key is None)
        return _json({"signedCertificateEmbeddedSct": {"chain": {"certificates": chain}}})

    def issue(self, token: str, key: bytes | None, proof: bytes, *, csr: bool) -> list[str]:
        """The PEM chain (leaf, root) for a verified token and proof of possession."""
        claims = verify_token(token, self.issuers)
        missing = [c for c in REQUIRED_GITHUB_CLAIMS if not claims.get(c)]
        if missing:
            raise Refused(400, f"missing {missing[0]} claim in ID token")
        if csr:
            request = x509.load_pem_x509_csr(proof)
            if not request.is_signature_valid:
                raise Refused(400, "the certificate signing request's signature is invalid")
            public: Any = request.public_key()
        else:
            try:
                public = serialization.load_pem_public_key(key or b"")
            except ValueError:
                try:
                    public = serialization.load_der_public_key(key or b"")
                except ValueError:
                    raise Refused(400, "the public key is neither PEM nor DER") from None
            verify_possession(public, proof, str(claims["sub"]))
        leaf = self._certificate(public, claims)
        self.issued.append(leaf)
        return [leaf.public_bytes(serialization.Encoding.PEM).decode(), self.root_pem()]

    # -- certificates ---------------------------------------------------------------------

    def _builder(self, public: Any, claims: Mapping[str, Any]) -> x509.CertificateBuilder:
        now = dt.datetime.now(dt.UTC).replace(microsecond=0)
        san = x509.UniformResourceIdentifier(f"https://github.com/{claims['job_workflow_ref']}")
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([]))
            .issuer_name(self.root.subject)
            .public_key(public)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now)
            .not_valid_after(now + self.lifetime)
            .add_extension(
                x509.KeyUsage(True, False, False, False, False, False, False, False, False),
                critical=True,
            )
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]), False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self._root_key.public_key()),
                False,
            )
            .add_extension(x509.SubjectAlternativeName([san]), critical=True)
        )
        for extension in github_extensions(claims):
            builder = builder.add_extension(extension, critical=False)
        return builder

    def _certificate(self, public: Any, claims: Mapping[str, Any]) -> x509.Certificate:
        """The certificate with an SCT of this CA's CT key embedded (RFC 6962 3.3). The SCT
        signs the precertificate's TBS without its poison extension (RFC 6962 3.2), which is
        the TBS of the certificate without its SCT list: the same certificate signed with
        neither (no log here to submit the precertificate to)."""
        builder = self._builder(public, claims)
        tbs = builder.sign(self._root_key, hashes.SHA384()).tbs_certificate_bytes
        sct = self.sct(tbs, int(time.time() * 1000))
        sct_list = struct.pack(">H", len(sct) + 2) + struct.pack(">H", len(sct)) + sct
        ext = x509.UnrecognizedExtension(SCT_LIST_OID, der_octets(sct_list))
        cert = builder.add_extension(ext, critical=False).sign(self._root_key, hashes.SHA384())
        if cert.tbs_precertificate_bytes != tbs:
            raise RuntimeError("fake Fulcio: the certificate's TBS is not its precertificate's")
        return cert

    def sct(self, tbs: bytes, timestamp_ms: int) -> bytes:
        """An RFC 6962 SignedCertificateTimestamp (v1, precert_entry) over ``tbs``."""
        issuer_key_hash = hashlib.sha256(
            self.root.public_key().public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        ).digest()
        signed = (
            struct.pack(">BBQH", 0, 0, timestamp_ms, 1)
            + issuer_key_hash
            + len(tbs).to_bytes(3, "big")
            + tbs
            + struct.pack(">H", 0)
        )
        signature = self.log_key.sign(signed, ec.ECDSA(hashes.SHA256()))
        log_id = hashlib.sha256(
            self.log_key.public_key().public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        ).digest()
        return (
            struct.pack(">B", 0)
            + log_id
            + struct.pack(">QH", timestamp_ms, 0)
            + struct.pack(">BBH", 4, 3, len(signature))
            + signature
        )


@dataclass
class Sigstore:
    """The issuer and the CA together, with the files cosign is pointed at."""

    issuer: OidcIssuer
    fulcio: FakeFulcio
    trust_env: dict[str, str]


@contextmanager
def fake_sigstore(directory: Path) -> Iterator[Sigstore]:
    issuer = OidcIssuer()
    fulcio = FakeFulcio(frozenset({issuer.url}))
    try:
        yield Sigstore(issuer, fulcio, fulcio.write_trust(directory))
    finally:
        fulcio.close()
        issuer.close()
