"""A cosign key file, decrypted once in-process to sign attestations (``dcforge.dsse``).

cosign's ``generate-key-pair`` writes a PKCS#8 private key sealed with NaCl secretbox
under a key derived by scrypt from COSIGN_PASSWORD, as JSON in a PEM block
(go-securesystemslib's ``encrypted`` format). Reading it takes one scrypt (~0.2 s here);
``cosign attest`` pays that for every attestation. Only what cosign itself accepts is read:
its two PEM types, its two scrypt parameter sets (cosign refuses any other), secretbox.
The password comes from the environment only and the key never leaves memory.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from pathlib import Path
from typing import Any

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_der_private_key
from nacl.exceptions import CryptoError
from nacl.secret import SecretBox

from dcforge.errors import ToolError

PEM_TYPES = ("ENCRYPTED SIGSTORE PRIVATE KEY", "ENCRYPTED COSIGN PRIVATE KEY")
# (N, r, p): cosign's current and legacy scrypt parameters, the only ones it decrypts.
SCRYPT_PARAMETERS = {(65536, 8, 1), (32768, 8, 1)}
_PEM = re.compile(r"-----BEGIN ([A-Z ]+)-----\s*(.*?)\s*-----END \1-----", re.DOTALL)


class EcKey:
    """An ECDSA private key signing as cosign does (SHA-256, ASN.1 DER signature)."""

    def __init__(self, key: ec.EllipticCurvePrivateKey) -> None:
        self._key = key

    def sign(self, data: bytes) -> bytes:
        return self._key.sign(data, ec.ECDSA(hashes.SHA256()))

    def __repr__(self) -> str:  # never the key
        return f"EcKey({self._key.curve.name})"


def _sealed(path: Path) -> dict[str, Any]:
    """The JSON document inside the key file's PEM block."""
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as err:
        raise ToolError(f"cannot read the cosign key {path}: {err}") from None
    found = _PEM.search(text)
    if not found or found.group(1) not in PEM_TYPES:
        raise ToolError(f"{path} is not a cosign private key (no {PEM_TYPES[0]} block)")
    try:
        sealed = json.loads(base64.b64decode("".join(found.group(2).split()), validate=True))
        if not isinstance(sealed, dict):
            raise ValueError("not a JSON object")
        return sealed
    except (ValueError, binascii.Error) as err:
        raise ToolError(f"{path}: the cosign private key is damaged ({err})") from None


def _secret(path: Path, sealed: dict[str, Any], password: str) -> bytes:
    """The PKCS#8 DER private key sealed in the document."""
    try:
        kdf, cipher = sealed["kdf"], sealed["cipher"]
        params = (kdf["params"]["N"], kdf["params"]["r"], kdf["params"]["p"])
        if kdf["name"] != "scrypt" or params not in SCRYPT_PARAMETERS:
            raise ValueError(f"unsupported key derivation {kdf['name']} {params}")
        if cipher["name"] != "nacl/secretbox":
            raise ValueError(f"unsupported cipher {cipher['name']}")
        n, r, p = params
        box = hashlib.scrypt(
            password.encode(),
            salt=base64.b64decode(kdf["salt"], validate=True),
            n=n, r=r, p=p, maxmem=256 * 1024 * 1024, dklen=32,
        )  # fmt: skip
        ciphertext = base64.b64decode(sealed["ciphertext"], validate=True)
        nonce = base64.b64decode(cipher["nonce"], validate=True)
    except (KeyError, TypeError, ValueError, binascii.Error) as err:
        raise ToolError(f"{path}: not a key cosign can read ({err})") from None
    try:
        return SecretBox(box).decrypt(ciphertext, nonce)
    except (CryptoError, ValueError, TypeError):
        raise ToolError(
            f"COSIGN_PASSWORD does not decrypt the cosign key {path} — set the password it "
            "was made with"
        ) from None


def load(path: Path, password: str) -> EcKey | None:
    """The key of ``path`` decrypted with ``password``; None for a key that is not ECDSA
    (cosign signs those itself). ToolError naming the file when it cannot be read."""
    der = _secret(path, _sealed(path), password)
    try:
        key = load_der_private_key(der, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as err:
        raise ToolError(f"{path}: the decrypted cosign key is not a private key ({err})") from None
    return EcKey(key) if isinstance(key, ec.EllipticCurvePrivateKey) else None
