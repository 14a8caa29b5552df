"""Which cosign identity signs: a key pair (local, air-gapped) or keyless (GitHub OIDC).

The mode and identity are parsed once with the settings (``Settings.signing``:
``DCFORGE_SIGNING``, ``COSIGN_KEY``, ``COSIGN_PUBLIC_KEY``, ``DCFORGE_COSIGN_IDENTITY``,
``_ISSUER``, ``_REPOSITORY`` and ``_REF``; for a Sigstore other than the public one
``DCFORGE_COSIGN_FULCIO_URL``, ``DCFORGE_COSIGN_TOKEN_FILE``, ``DCFORGE_COSIGN_TLOG``,
``SIGSTORE_ROOT_FILE`` and ``SIGSTORE_CT_LOG_PUBLIC_KEY_FILE``); the key's password stays in
the environment, for cosign alone.

Before publish signs anything: the pinned cosign, a key pair to sign with (made on first
use in local key mode, never in CI) and the key decrypted while the other checks run.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from dcforge.core.errors import PublishRefused, ToolError
from dcforge.core.settings import Settings
from dcforge.infra import keyfile, log, toolchain
from dcforge.infra.runner import Runner
from dcforge.infra.tools import cosign
from dcforge.infra.tools.cosign import Signer


def key_dir(conf: Settings) -> str:
    return str(conf.state_root / "cosign")


def signer(conf: Settings) -> Signer:
    how = conf.signing
    if how.mode == "keyless":
        return Signer(
            identity=how.identity,
            repository=how.repository,
            source_ref=how.source_ref,
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


def ensure_signer(settings: Settings, runner: Runner, env: Mapping[str, str]) -> Signer:
    """The configured signer; in local key mode, make a key pair on first use."""
    found = signer(settings)
    if found.key and not settings.signing.key:
        key = Path(found.key)
        if settings.signing.ci:
            raise PublishRefused(
                "CI is set and signing uses a key pair, but COSIGN_KEY is not set — in CI a "
                "freshly made key would sign this release with a key nobody can verify "
                "against; set COSIGN_KEY (and COSIGN_PASSWORD) from a secret, or sign keyless "
                "(DCFORGE_SIGNING=keyless)"
            )
        if not key.is_file():
            log.warn(
                f"no cosign key yet: making a LOCAL key pair in {key.parent} (git-ignored) — "
                "fine for this machine; CI must bring its own (COSIGN_KEY) or sign keyless"
            )
            cosign.generate_key_pair(runner, key.parent, cosign_env(env))
    elif found.key and "://" not in found.key and not Path(found.key).is_file():
        raise PublishRefused(f"COSIGN_KEY={found.key}: no such key file")
    return found


def decrypt_early(
    settings: Settings, env: Mapping[str, str]
) -> tuple[str, keyfile.EcKey | None] | None:
    """(key file, its key) decrypted while publish's checks run (a scrypt, ~0.2 s), when
    there is one to sign with in-process; None otherwise or when it does not decrypt
    (``Cosign.check_key`` then says why)."""
    found = signer(settings)
    if not (found.signs_in_process() and Path(found.key).is_file()):
        return None
    try:
        password = cosign_env(env)["COSIGN_PASSWORD"]
        return found.key, keyfile.load(Path(found.key), password)
    except ToolError:
        return None


def require_pinned_cosign(runner: Runner, seen: Path | None = None) -> None:
    """Publish signs only with the pinned cosign (``resources/toolchain.toml``; ``seen``:
    :func:`toolchain.check`)."""
    try:
        toolchain.check(runner, "cosign", hashed=False, seen=seen)
    except ToolError as err:
        raise PublishRefused(f"publish signs only with the pinned cosign: {err}") from None
