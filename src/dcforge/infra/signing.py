"""Which cosign identity signs: a key pair (local, air-gapped) or keyless (GitHub OIDC).

The mode and identity are parsed once with the settings (``Settings.signing``:
``DCFORGE_SIGNING``, ``COSIGN_KEY``, ``COSIGN_PUBLIC_KEY``, ``DCFORGE_COSIGN_IDENTITY`` and
``_ISSUER``; for a Sigstore other than the public one ``DCFORGE_COSIGN_FULCIO_URL``,
``DCFORGE_COSIGN_TOKEN_FILE``, ``DCFORGE_COSIGN_TLOG``, ``SIGSTORE_ROOT_FILE`` and
``SIGSTORE_CT_LOG_PUBLIC_KEY_FILE``); the key's password stays in the environment, for
cosign alone.
"""

from __future__ import annotations

from collections.abc import Mapping

from dcforge.core.settings import Settings
from dcforge.infra.tools.cosign import Signer


def key_dir(conf: Settings) -> str:
    return str(conf.state_root / "cosign")


def signer(conf: Settings) -> Signer:
    how = conf.signing
    if how.mode == "keyless":
        return Signer(
            identity=how.identity,
            issuer=how.issuer,
            tlog=how.tlog,
            fulcio_url=how.fulcio_url,
            token_file=how.token_file,
            root_file=how.root_file,
            ct_log_key_file=how.ct_log_key_file,
        )
    key = how.key or f"{key_dir(conf)}/cosign.key"
    public = how.public_key or (key[: -len(".key")] + ".pub" if key.endswith(".key") else "")
    return Signer(key=key, public_key=public)


def cosign_env(env: Mapping[str, str]) -> dict[str, str]:
    """The variables cosign needs (password only from the environment)."""
    return {"COSIGN_PASSWORD": env.get("COSIGN_PASSWORD", "")}
