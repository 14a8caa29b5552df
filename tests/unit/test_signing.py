"""Which identity signs, and the key it signs with: a key pair by default, keyless on
request; in CI a key pair is never made on the spot."""

from __future__ import annotations

from pathlib import Path

import pytest

from dcforge.core import settings
from dcforge.core.errors import ConfigError, PublishRefused
from dcforge.infra import signing
from dcforge.infra.runner import Runner


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
