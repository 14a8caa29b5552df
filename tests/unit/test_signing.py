"""Which identity signs, and the key it signs with: a key pair by default, keyless on
request (the public Sigstore by default, every difference of a private or test one named);
in CI a key pair is never made on the spot."""

from __future__ import annotations

from pathlib import Path

import pytest

from dcforge.core import settings
from dcforge.core.errors import ConfigError, PublishRefused, ToolError
from dcforge.infra import signing
from dcforge.infra.runner import Runner
from dcforge.infra.tools.cosign import Signer


def test_signer_is_a_key_pair_by_default_and_keyless_on_request(tmp_path: Path) -> None:
    local = signing.signer(settings.load(tmp_path, {}))
    assert local.key == f"{tmp_path}/.dcforge/cosign/cosign.key"
    assert local.public_key.endswith("cosign.pub")
    env = {"DCFORGE_SIGNING": "keyless", "DCFORGE_COSIGN_IDENTITY": "id"}
    keyless = signing.signer(settings.load(tmp_path, env))
    assert (keyless.key, keyless.identity, keyless.tlog) == ("", "id", True)


def test_an_unknown_signing_mode_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"DCFORGE_SIGNING='keyles' .* did you mean keyless"):
        settings.load(tmp_path, {"DCFORGE_SIGNING": "keyles"})


def test_ci_never_signs_with_a_key_made_on_the_spot(tmp_path: Path) -> None:
    conf = settings.load(tmp_path, {"CI": "true"})
    with pytest.raises(PublishRefused, match="COSIGN_KEY is not set"):
        signing.ensure_signer(conf, Runner(), {})


def test_a_named_key_file_must_exist(tmp_path: Path) -> None:
    conf = settings.load(tmp_path, {"COSIGN_KEY": str(tmp_path / "gone.key")})
    with pytest.raises(PublishRefused, match=r"COSIGN_KEY=.*gone\.key: no such key file"):
        signing.ensure_signer(conf, Runner(), {})
    assert signing.decrypt_early(conf, {}) is None  # nothing to decrypt


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
