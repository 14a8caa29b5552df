"""Keyless signing's settings and the cosign flags they become: the public Sigstore by
default, every difference of a private or test one named."""

from __future__ import annotations

from pathlib import Path

import pytest

from dcforge.core import settings
from dcforge.core.errors import ConfigError, ToolError
from dcforge.infra import signing
from dcforge.infra.tools.cosign import Signer

IDENTITY = "https://github.com/o/r/.github/workflows/build-publish.yml@refs/heads/main"
KEYLESS = {"DCFORGE_SIGNING": "keyless", "DCFORGE_COSIGN_IDENTITY": IDENTITY}


def keyless_signer(tmp_path: Path, **env: str) -> Signer:
    return signing.signer(settings.load(tmp_path, {**KEYLESS, **env}))


def test_keyless_defaults_are_the_public_sigstore_and_github(tmp_path: Path) -> None:
    signer = keyless_signer(tmp_path)
    assert signer.keyless and not signer.signs_in_process()
    # cosign's defaults: the public Fulcio, the ambient token, a Rekor upload.
    assert signer.sign_flags() == ["--tlog-upload=true"]
    assert signer.verify_flags() == [
        "--certificate-identity",
        IDENTITY,
        "--certificate-oidc-issuer",
        "https://token.actions.githubusercontent.com",
    ]
    assert signer.env() == {}


def test_a_private_sigstore_is_named_and_reaches_every_cosign_run(tmp_path: Path) -> None:
    for name in ("token", "root.pem", "ctlog.pub"):
        (tmp_path / name).write_text("x")
    signer = keyless_signer(
        tmp_path,
        DCFORGE_COSIGN_ISSUER="http://127.0.0.1:9/issuer",
        DCFORGE_COSIGN_FULCIO_URL="http://127.0.0.1:8",
        DCFORGE_COSIGN_TOKEN_FILE=str(tmp_path / "token"),
        DCFORGE_COSIGN_TLOG="false",
        SIGSTORE_ROOT_FILE=str(tmp_path / "root.pem"),
        SIGSTORE_CT_LOG_PUBLIC_KEY_FILE=str(tmp_path / "ctlog.pub"),
    )
    assert signer.sign_flags() == [
        "--fulcio-url",
        "http://127.0.0.1:8",
        "--identity-token",
        str(tmp_path / "token"),
        "--tlog-upload=false",
    ]
    assert signer.verify_flags() == [
        "--certificate-identity",
        IDENTITY,
        "--certificate-oidc-issuer",
        "http://127.0.0.1:9/issuer",
        "--insecure-ignore-tlog",
    ]
    assert signer.env() == {
        "SIGSTORE_ROOT_FILE": str(tmp_path / "root.pem"),
        "SIGSTORE_CT_LOG_PUBLIC_KEY_FILE": str(tmp_path / "ctlog.pub"),
    }
    assert IDENTITY in signer.describe() and "127.0.0.1:9/issuer" in signer.describe()


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"DCFORGE_COSIGN_ISSUER": " "}, "DCFORGE_COSIGN_ISSUER is empty"),
        ({"DCFORGE_COSIGN_FULCIO_URL": "fulcio.local"}, "is not an http"),
        ({"DCFORGE_COSIGN_TOKEN_FILE": "/nonexistent/t"}, "TOKEN_FILE=/nonexistent/t: no such"),
        ({"SIGSTORE_ROOT_FILE": "/nonexistent/r"}, "SIGSTORE_ROOT_FILE=/nonexistent/r: no such"),
        ({"DCFORGE_COSIGN_TLOG": "maybe"}, "must be true or false"),
    ],
)
def test_keyless_settings_are_refused_in_one_line(
    tmp_path: Path, env: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError, match=message) as err:
        settings.load(tmp_path, {**KEYLESS, **env})
    assert "\n" not in str(err.value)


def test_keyless_only_settings_are_refused_in_key_mode(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="DCFORGE_COSIGN_TLOG is for keyless signing"):
        settings.load(tmp_path, {"DCFORGE_COSIGN_TLOG": "false"})
    key = signing.signer(settings.load(tmp_path, {"COSIGN_KEY": "/k/cosign.key"}))
    assert key.sign_flags() == ["--key", "/k/cosign.key", "--tlog-upload=false"]
    assert key.verify_flags() == ["--key", "/k/cosign.pub", "--insecure-ignore-tlog"]


def test_keyless_verification_pins_identity_and_issuer() -> None:
    with pytest.raises(ToolError, match="identity and issuer"):
        Signer(identity="").verify_flags()
    with pytest.raises(ToolError, match="identity and issuer"):
        Signer(identity=IDENTITY, issuer="").verify_flags()


def test_no_transparency_log_is_for_a_loopback_registry_only(tmp_path: Path) -> None:
    env = {
        "DCFORGE_SIGNING": "keyless",
        "DCFORGE_COSIGN_IDENTITY": "https://github.com/o/r/.github/workflows/w.yml@refs/heads/main",
        "DCFORGE_COSIGN_TLOG": "false",
    }
    assert not settings.load(tmp_path, {**env, "DCFORGE_REGISTRY": "127.0.0.1:5000/x"}).signing.tlog
    with pytest.raises(ConfigError, match="DCFORGE_COSIGN_TLOG=false is for tests"):
        settings.load(tmp_path, {**env, "DCFORGE_REGISTRY": "ghcr.io/o/r"})
