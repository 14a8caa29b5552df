"""Which cosign identity signs: a key pair (local, air-gapped) or keyless (GitHub OIDC).

One setting picks the mode: ``COSIGN_KEY`` set (or a key pair under the state folder)
means key mode; ``DCFORGE_SIGNING=keyless`` means keyless. Passwords stay in the env.
"""

from __future__ import annotations

from collections.abc import Mapping

from dcforge.settings import Settings
from dcforge.tools.cosign import Signer


def key_dir(conf: Settings) -> str:
    return str(conf.state_root / "cosign")


def signer(conf: Settings, env: Mapping[str, str]) -> Signer:
    if env.get("DCFORGE_SIGNING", "key") == "keyless":
        return Signer(
            identity=env.get("DCFORGE_COSIGN_IDENTITY", ""),
            issuer=env.get("DCFORGE_COSIGN_ISSUER", "https://token.actions.githubusercontent.com"),
            tlog=True,
        )
    key = env.get("COSIGN_KEY") or f"{key_dir(conf)}/cosign.key"
    public = env.get("COSIGN_PUBLIC_KEY") or (
        key[: -len(".key")] + ".pub" if key.endswith(".key") else ""
    )
    return Signer(key=key, public_key=public)


def cosign_env(env: Mapping[str, str]) -> dict[str, str]:
    """The variables cosign needs (password only from the environment)."""
    return {"COSIGN_PASSWORD": env.get("COSIGN_PASSWORD", "")}
