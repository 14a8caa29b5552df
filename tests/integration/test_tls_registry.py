"""A registry as production has them: HTTPS with a certificate from a CA made here, and
htpasswd authentication. Build → gate → publish → verify → rollback → retention against it,
with the credentials from the environment and the CA trusted the way a user trusts one
(``SSL_CERT_FILE``, read by every Go tool: oras, skopeo, cosign, Trivy, syft). No secret in
any log, report, argv or file under dist/; wrong credentials and an untrusted certificate
are one clear line each and change nothing."""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import secrets
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import bcrypt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from dcforge.infra.runner import Runner
from dcforge.infra.tools.local_registry import LocalRegistry
from tests.integration.conftest import TrivyDb, git_commit, run_dcforge
from tests.projects import write_project

pytestmark = [pytest.mark.integration, pytest.mark.slow]

USER = "ci-publisher"


@dataclass
class TlsRegistry:
    registry: LocalRegistry
    ca_bundle: Path  # the system's roots + this CA: what SSL_CERT_FILE points at
    password: str


def _cert(
    subject: str,
    issuer_key: ec.EllipticCurvePrivateKey,
    issuer: str,
    key: ec.EllipticCurvePrivateKey,
    *,
    ca: bool,
) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if not ca:
        names = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


@pytest.fixture
def tls_registry(tmp_path: Path) -> Iterator[TlsRegistry]:
    work = tmp_path / "tls"
    work.mkdir()
    ca_key, server_key = (
        ec.generate_private_key(ec.SECP256R1()),
        ec.generate_private_key(ec.SECP256R1()),
    )
    ca = _cert("dcforge test CA", ca_key, "dcforge test CA", ca_key, ca=True)
    server = _cert("127.0.0.1", ca_key, "dcforge test CA", server_key, ca=False)
    (work / "server.crt").write_bytes(server.public_bytes(serialization.Encoding.PEM))
    (work / "server.key").write_bytes(_pem_key(server_key))
    roots = Path(ssl.get_default_verify_paths().cafile or "/etc/ssl/certs/ca-certificates.crt")
    bundle = work / "ca-bundle.pem"
    bundle.write_bytes(roots.read_bytes() + ca.public_bytes(serialization.Encoding.PEM))
    password = secrets.token_urlsafe(18)
    htpasswd = work / "htpasswd"
    htpasswd.write_text(f"{USER}:{bcrypt.hashpw(password.encode(), bcrypt.gensalt()).decode()}\n")
    reg = LocalRegistry(
        work / "registry", tls=(work / "server.crt", work / "server.key"), htpasswd=htpasswd
    )
    reg.start()
    yield TlsRegistry(reg, bundle, password)
    reg.stop()


def project(root: Path, registry: str) -> Path:
    write_project(root, registry=registry)
    (root / ".gitignore").write_text(".dcforge/\ndist/\n")
    git_commit(root)
    return root


def env_for(tls: TlsRegistry, trivy_db: TrivyDb, home: Path, **extra: str) -> dict[str, str]:
    home.mkdir(exist_ok=True)
    return {
        "HOME": str(home),  # the credential store oras login writes, all tools read
        "DCFORGE_REGISTRY": f"{tls.registry.host}/dc",
        "DCFORGE_INSECURE_REGISTRIES": "localhost",  # the base images' plain registry only
        "DCFORGE_TRIVY_DB_REPOSITORY": trivy_db.repository,
        "DCFORGE_REGISTRY_USERNAME": USER,
        "DCFORGE_REGISTRY_PASSWORD": tls.password,
        "SSL_CERT_FILE": str(tls.ca_bundle),
        **extra,
    }


def catalog(runner: Runner, tls: TlsRegistry, home: Path) -> list[str]:
    out = runner.run(
        [
            "oras",
            "repo",
            "ls",
            "--username",
            USER,
            "--password",
            tls.password,
            f"{tls.registry.host}/dc",
        ],
        env={"SSL_CERT_FILE": str(tls.ca_bundle), "HOME": str(home)},
        mutates=False,
    ).stdout
    return out.split()


def no_secret_anywhere(password: str, root: Path, *outputs: str) -> None:
    for text in outputs:
        assert password not in text
    for path in (root / "dist").rglob("*"):
        if path.is_file() and path.suffix in (".json", ".md", ".sarif"):
            assert password not in path.read_text(errors="replace"), path


def test_the_whole_chain_against_an_authenticated_tls_registry(
    tmp_path: Path, tls_registry: TlsRegistry, trivy_db: TrivyDb, runner: Runner
) -> None:
    root = project(tmp_path / "p", f"{tls_registry.registry.host}/dc")
    env = env_for(tls_registry, trivy_db, tmp_path / "home")
    outputs = []

    def ok(*args: str) -> str:
        result = run_dcforge(*args, cwd=root, env=env, timeout=1200)
        assert result.returncode == 0, result.stderr
        outputs.append(result.stdout + result.stderr)
        return result.stderr

    ok("build", "--no-prune")
    ok("gate")
    ok("--verbose", "publish")  # --verbose: every tool's argv and stderr is in the log
    first = json.loads((root / "dist/manifest.json").read_text())["git_sha"]
    ok("verify")
    (root / "images/tiny/greeting.txt").write_text("second\n")
    git_commit(root, "second")
    for step in (("build", "--no-prune", "--since", "last-known-good"), ("gate",), ("publish",)):
        ok(*step)
    ok("rollback", "--sha", first)
    ok("verify", "--sha", first)
    future = (dt.datetime.now(dt.UTC) + dt.timedelta(days=400)).isoformat()
    keep = {"DCFORGE_KEEP_RELEASES": "1"}
    result = run_dcforge(
        "prune", "--registry", "--yes", "--now", future, cwd=root, env={**env, **keep}
    )
    assert result.returncode == 0, result.stderr
    assert "delete " in result.stderr
    outputs.append(result.stderr)
    ok("verify", "--sha", first)  # the pinned release survived its own retention
    no_secret_anywhere(tls_registry.password, root, *outputs)
    assert "tiny" in catalog(runner, tls_registry, tmp_path / "home")


@pytest.mark.parametrize("fault", ["wrong password", "untrusted certificate"])
def test_wrong_credentials_or_an_untrusted_certificate_are_one_line_and_change_nothing(
    tmp_path: Path, tls_registry: TlsRegistry, trivy_db: TrivyDb, runner: Runner, fault: str
) -> None:
    root = project(tmp_path / "p", f"{tls_registry.registry.host}/dc")
    good = env_for(tls_registry, trivy_db, tmp_path / "home")
    for step in (("build", "--no-prune"), ("gate",)):
        result = run_dcforge(*step, cwd=root, env=good, timeout=1200)
        assert result.returncode == 0, result.stderr
    bad = dict(good)
    if fault == "wrong password":
        bad["DCFORGE_REGISTRY_PASSWORD"] = "not-" + tls_registry.password
    else:
        del bad["SSL_CERT_FILE"]
    result = run_dcforge("publish", cwd=root, env=bad, timeout=600)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = [ln for ln in result.stderr.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1, result.stderr
    expected = "unauthorized" if fault == "wrong password" else "certificate"
    assert expected in lines[0].lower(), lines[0]
    assert tls_registry.password not in result.stderr
    assert catalog(runner, tls_registry, tmp_path / "home2") == []
