"""Which identity signs: a key pair by default, keyless on request."""

from __future__ import annotations

from pathlib import Path

import pytest

from dcforge.core import settings
from dcforge.core.errors import ConfigError
from dcforge.infra import signing


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
