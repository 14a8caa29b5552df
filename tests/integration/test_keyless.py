"""Keyless signing, as the GitHub workflows sign, run here: the real cosign gets a
certificate for a GitHub Actions-like OIDC token from a local Fulcio-compatible CA
(tests/integration/fake_sigstore.py), with a real embedded SCT and no transparency log,
and dcforge publishes, verifies, rolls back and rescans with it (DCFORGE_SIGNING=keyless).
A release signed by another workflow's identity (same CA, same issuer) is refused."""

from __future__ import annotations

import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from dcforge.infra.runner import Runner
from tests.integration import oras_oracle as registry
from tests.integration.conftest import (
    PrivateRegistry,
    TrivyDb,
    base_env,
    build_and_gate,
    env_for,
    git_commit,
    run_dcforge,
    tags_point_at,
)
from tests.integration.fake_sigstore import OidcIssuer, Sigstore, Workflow, fake_sigstore

pytestmark = pytest.mark.integration

PUBLISHER = Workflow()  # octo-org/devcontainers/.github/workflows/build-publish.yml@refs/heads/main
INTRUDER = Workflow(
    workflow_file="pr-preview.yml", ref="refs/pull/9/merge", event_name="pull_request"
)


@pytest.fixture
def sigstore(tmp_path: Path) -> Iterator[Sigstore]:
    with fake_sigstore(tmp_path / "sigstore") as s:
        yield s


def keyless_env(
    s: Sigstore, signs_as: Workflow, tmp_path: Path, verifies: Workflow = PUBLISHER
) -> dict[str, str]:
    """dcforge's keyless settings: tokens of ``signs_as``, verification pinned to
    ``verifies`` and the test issuer; the test-only differences named (Fulcio URL, token
    file, no Rekor, the fake CA's root and CT log key)."""
    token = tmp_path / f"{signs_as.workflow_file}.jwt"
    token.write_text(s.issuer.token(signs_as))
    return {
        "DCFORGE_SIGNING": "keyless",
        "DCFORGE_COSIGN_IDENTITY": verifies.identity,
        "DCFORGE_COSIGN_ISSUER": s.issuer.url,
        "DCFORGE_COSIGN_FULCIO_URL": s.fulcio.url,
        "DCFORGE_COSIGN_TOKEN_FILE": str(token),
        "DCFORGE_COSIGN_TLOG": "false",
        **s.trust_env,
    }


def cosign(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["cosign", *args],
        env={**base_env(), **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_cosign_signs_keyless_with_the_fake_ca_and_verifies_identity_and_issuer(
    sigstore: Sigstore, tmp_path: Path
) -> None:
    """The stand-in is right by the real cosign's judgement: a token becomes a certificate
    whose SCT cosign checks when signing and verifying; identity and issuer are pinned."""
    s, blob = sigstore, tmp_path / "blob.txt"
    blob.write_text("dcforge\n")
    token = tmp_path / "token"
    token.write_text(s.issuer.token(PUBLISHER))
    signed = cosign(
        "sign-blob", "--yes", "--fulcio-url", s.fulcio.url, "--identity-token", str(token),
        "--tlog-upload=false", "--output-signature", str(tmp_path / "sig"),
        "--output-certificate", str(tmp_path / "cert"), str(blob), env=s.trust_env,
    )  # fmt: skip
    assert signed.returncode == 0, signed.stderr
    assert "Successfully verified SCT" in signed.stderr
    [cert] = s.fulcio.issued
    assert (cert.not_valid_after_utc - cert.not_valid_before_utc).total_seconds() == 600

    def verify(identity: str, issuer: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
        return cosign(
            "verify-blob", "--certificate", str(tmp_path / "cert"), "--signature",
            str(tmp_path / "sig"), "--certificate-identity", identity,
            "--certificate-oidc-issuer", issuer, "--insecure-ignore-tlog", str(blob), env=env,
        )  # fmt: skip

    ok = verify(PUBLISHER.identity, s.issuer.url, s.trust_env)
    assert ok.returncode == 0, ok.stderr
    other = verify(INTRUDER.identity, s.issuer.url, s.trust_env)
    assert other.returncode != 0
    assert "none of the expected identities matched" in other.stderr
    github = verify(PUBLISHER.identity, "https://token.actions.githubusercontent.com", s.trust_env)
    assert github.returncode != 0
    # The SCT is checked: with another CT log's key the same signature does not verify.
    other_log = tmp_path / "other-ct.pub"
    other_log.write_bytes(
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    )
    wrong_log = verify(
        PUBLISHER.identity,
        s.issuer.url,
        {**s.trust_env, "SIGSTORE_CT_LOG_PUBLIC_KEY_FILE": str(other_log)},
    )
    assert wrong_log.returncode != 0
    assert "ctfe public key not found" in wrong_log.stderr


def forged(stranger: OidcIssuer, s: Sigstore) -> str:
    """A token claiming the trusted issuer and its key id, signed by another key."""
    stranger.kid = s.issuer.kid
    return stranger.token(PUBLISHER, iss=s.issuer.url)


@pytest.mark.parametrize(
    ("token", "refusal"),
    [
        ("audience", "audience is 'not-sigstore'"),
        ("expired", "has expired"),
        ("untrusted", "is not trusted"),
        ("forged", "signature does not verify"),
        ("no_workflow", "missing job_workflow_ref claim"),
    ],
)
def test_the_fake_ca_refuses_what_fulcio_refuses(
    sigstore: Sigstore, tmp_path: Path, token: str, refusal: str
) -> None:
    s = sigstore
    stranger = OidcIssuer()
    try:
        tokens = {
            "audience": s.issuer.token(PUBLISHER, audience="not-sigstore"),
            "expired": s.issuer.token(PUBLISHER, lifetime=-60),
            "untrusted": stranger.token(PUBLISHER),
            "forged": forged(stranger, s),
            "no_workflow": s.issuer.token(PUBLISHER, job_workflow_ref=""),
        }
        (tmp_path / "blob").write_text("x")
        result = cosign(
            "sign-blob", "--yes", "--fulcio-url", s.fulcio.url, "--identity-token",
            tokens[token], "--tlog-upload=false", str(tmp_path / "blob"), env=s.trust_env,
        )  # fmt: skip
    finally:
        stranger.close()
    assert result.returncode != 0
    assert refusal in result.stderr
    assert not s.fulcio.issued


def publish(root: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return run_dcforge("publish", cwd=root, env=env)


def test_keyless_publish_verify_rollback_and_rescan(
    project: Path,
    private_registry: PrivateRegistry,
    trivy_db: TrivyDb,
    sigstore: Sigstore,
    runner: Runner,
    tmp_path: Path,
) -> None:
    """The production signing path end to end: every image, attestation, record and pin
    signed by cosign with certificates for the release workflow's token; verification
    pins that workflow's identity and the issuer."""
    env = {**env_for(private_registry, trivy_db), **keyless_env(sigstore, PUBLISHER, tmp_path)}
    a = build_and_gate(project, env)
    first = publish(project, env)
    assert first.returncode == 0, first.stderr
    issued = len(sigstore.fulcio.issued)
    assert issued >= 2  # images, then the record and the pin: nothing signed in-process
    assert not (project / ".dcforge/cosign").exists()  # no key pair made
    (project / "images/tiny/greeting.txt").write_text("release B\n")
    git_commit(project, "B")
    b = build_and_gate(project, env)
    second = publish(project, env)
    assert second.returncode == 0, second.stderr
    assert tags_point_at(runner, b)
    verified = run_dcforge("verify", cwd=project, env=env)  # last-known-good: B
    assert verified.returncode == 0, verified.stderr
    back = run_dcforge("rollback", "--sha", a.git_sha, cwd=project, env=env)
    assert back.returncode == 0, back.stderr
    assert tags_point_at(runner, a)
    verified = run_dcforge("verify", "--sha", a.git_sha, cwd=project, env=env)
    assert verified.returncode == 0, verified.stderr
    pinned = run_dcforge("pin", "--sha", b.git_sha, cwd=project, env=env)
    assert pinned.returncode == 0, pinned.stderr
    lkg = run_dcforge("rollback", "--last-known-good", cwd=project, env=env)
    assert lkg.returncode == 0, lkg.stderr
    assert tags_point_at(runner, b)
    rescan = run_dcforge("rescan", cwd=project, env=env)
    assert rescan.returncode == 0, rescan.stderr
    # Someone who pulls an image, with no checkout: the workflow's identity and the issuer
    # (and, for this test Sigstore, its root and no Rekor: cosign's own variables).
    consumer = tmp_path / "consumer"
    consumer.mkdir()
    trust = {"DCFORGE_SIGNING": "keyless", "DCFORGE_COSIGN_IDENTITY": INTRUDER.identity,
             "DCFORGE_COSIGN_TLOG": "false", **sigstore.trust_env}  # fmt: skip
    image = b.permutations[0]
    pulled = ["verify-image", f"{image.repository}:{image.floating_tags[0]}"]
    for who, code in ((PUBLISHER, 0), (INTRUDER, 9)):
        args = [*pulled, "--certificate-identity", who.identity]
        checked = run_dcforge(*args, "--certificate-oidc-issuer", sigstore.issuer.url,
                              cwd=consumer, env=trust)  # fmt: skip
        assert checked.returncode == code, checked.stderr
    assert "signature does not verify" in checked.stderr
    # The same releases, verified with the public Sigstore's trust (no custom root): refused.
    public = {k: v for k, v in env.items() if not k.startswith("SIGSTORE_")}
    assert run_dcforge("verify", cwd=project, env=public).returncode == 9


def _refused(result: subprocess.CompletedProcess[str], code: int, *words: str) -> str:
    assert result.returncode == code, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert "Traceback" not in result.stderr
    for word in words:
        assert word in last, last
    return last


@pytest.mark.reliability(
    scenario="a release signed keyless by another workflow of the same repository and CA",
    checks="publish as the release workflow refused; verify and rollback refuse in one line",
)
def test_a_release_signed_by_another_workflow_is_refused(
    project: Path,
    private_registry: PrivateRegistry,
    trivy_db: TrivyDb,
    sigstore: Sigstore,
    runner: Runner,
    tmp_path: Path,
) -> None:
    base = env_for(private_registry, trivy_db)
    good = {**base, **keyless_env(sigstore, PUBLISHER, tmp_path)}
    a = build_and_gate(project, good)
    assert publish(project, good).returncode == 0
    (project / "images/tiny/greeting.txt").write_text("release B\n")
    git_commit(project, "B")
    b = build_and_gate(project, good)
    # The pull-request workflow cannot publish as the release workflow: its signatures do
    # not verify as the identity verification requires, and nothing moves.
    as_publisher = {**base, **keyless_env(sigstore, INTRUDER, tmp_path)}
    _refused(publish(project, as_publisher), 7, "does not verify")
    assert tags_point_at(runner, a)
    # Signing as itself it can write a release (registry write access is all it takes)...
    own = {**base, **keyless_env(sigstore, INTRUDER, tmp_path, verifies=INTRUDER)}
    assert publish(project, own).returncode == 0
    assert tags_point_at(runner, b)
    # ...which the release workflow's identity refuses: its pin, its record, its images.
    for args, code in ((["verify"], 9), (["verify", "--sha", b.git_sha], 9),
                       (["rollback", "--sha", b.git_sha], 10), (["rollback", "--last-known-good"], 10)):  # fmt: skip
        line = _refused(run_dcforge(*args, cwd=project, env=good), code, "is not signed by")
        assert INTRUDER.identity in line
    back = run_dcforge("rollback", "--sha", a.git_sha, cwd=project, env=good)
    assert back.returncode == 0, back.stderr
    assert tags_point_at(runner, a)

    # One image of A's, its signature replaced by one the other workflow made: refused.
    image = a.permutations[0]
    sig = registry.resolve(
        runner, f"{image.repository}:sha256-{image.image_digest[7:]}.sig", plain_http=True
    )
    name = image.repository.split("/", 1)[1]
    urllib.request.urlopen(urllib.request.Request(
        f"http://127.0.0.1:{private_registry.port}/v2/{name}/manifests/{sig}", method="DELETE"
    ), timeout=10).close()  # fmt: skip
    resigned = cosign(
        "sign", "--yes", "--fulcio-url", sigstore.fulcio.url, "--identity-token",
        own["DCFORGE_COSIGN_TOKEN_FILE"], "--tlog-upload=false", "--allow-http-registry",
        f"{image.repository}@{image.image_digest}", env=sigstore.trust_env,
    )  # fmt: skip
    assert resigned.returncode == 0, resigned.stderr
    line = _refused(run_dcforge("verify", "--sha", a.git_sha, cwd=project, env=good), 9)
    assert f"{image.repository}@{image.image_digest}: signature does not verify" in line
    assert INTRUDER.identity in line
