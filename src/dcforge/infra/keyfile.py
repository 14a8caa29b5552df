"""A cosign key file, decrypted once in-process to sign attestations (``dcforge.core.dsse``).

cosign's ``generate-key-pair`` writes a PKCS#8 private key sealed with NaCl secretbox
under a key derived by scrypt from COSIGN_PASSWORD, as JSON in a PEM block
(go-securesystemslib's ``encrypted`` format). Reading it takes one scrypt (~0.2 s here);
``cosign attest`` pays that for every attestation. Only what cosign itself accepts is read:
its two PEM types, the three scrypt parameter sets go-securesystemslib's
``encrypted/encrypted.go`` defines and its ``CheckParams`` accepts (legacy N=2^15,
standard N=2^16 — what cosign writes —, OWASP N=2^17; r=8, p=1; any other is refused, as
there: tampered parameters must not make the reader spend memory), secretbox.
The password comes from the environment only and the key never leaves memory.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import stat
from pathlib import Path
from typing import Any

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    PublicFormat,
    load_der_private_key,
    load_pem_public_key,
)
from nacl.exceptions import CryptoError
from nacl.secret import SecretBox

from dcforge.core.errors import ToolError

PEM_TYPES = ("ENCRYPTED SIGSTORE PRIVATE KEY", "ENCRYPTED COSIGN PRIVATE KEY")
# (N, r, p): go-securesystemslib's legacyParams, standardParams (cosign's default) and
# owaspParams (encrypted/encrypted.go, since v0.10.0), the only ones its CheckParams accepts.
SCRYPT_PARAMETERS = {(32768, 8, 1), (65536, 8, 1), (131072, 8, 1)}
MAX_KEY_FILE = 64 * 1024  # a cosign key file is under 1 KiB


class EcKey:
    """An ECDSA private key signing as cosign does (SHA-256, ASN.1 DER signature)."""

    def __init__(self, key: ec.EllipticCurvePrivateKey) -> None:
        self._key = key

    def sign(self, data: bytes) -> bytes:
        return self._key.sign(data, ec.ECDSA(hashes.SHA256()))

    def is_pair_of(self, public_key: Path) -> bool | None:
        """Whether ``public_key`` (a PEM file, what ``cosign public-key`` and
        ``generate-key-pair`` write) is this key's public half; None when it is not a
        PEM public key file read here (cosign reads it, or says why)."""
        theirs = _public_spki(public_key)
        return None if theirs is None else theirs == _spki(self._key.public_key())

    def __repr__(self) -> str:  # never the key
        return f"EcKey({self._key.curve.name})"


def public_key_digest(path: Path) -> str | None:
    """sha256 of the DER SubjectPublicKeyInfo of the PEM public key file at ``path`` (the
    key itself, whatever file holds it); None when it is not one read here."""
    spki = _public_spki(path)
    return None if spki is None else hashlib.sha256(spki).hexdigest()


def _public_spki(path: Path) -> bytes | None:
    """The DER SubjectPublicKeyInfo of the PEM public key file at ``path`` (a regular file
    of a key file's size); None when it is not one."""
    try:
        found = path.stat()
        if not stat.S_ISREG(found.st_mode) or found.st_size > MAX_KEY_FILE:
            return None
        return _spki(load_pem_public_key(path.read_bytes()))
    except (OSError, ValueError, TypeError, UnsupportedAlgorithm):
        return None


def _spki(key: Any) -> bytes:
    return bytes(key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo))


def _pem_body(text: str) -> str | None:
    """The base64 body of the file's first PEM block of a cosign private key type."""
    lines = [line.strip() for line in text.splitlines()]
    for kind in PEM_TYPES:
        if f"-----BEGIN {kind}-----" in lines:
            start = lines.index(f"-----BEGIN {kind}-----") + 1
            if f"-----END {kind}-----" in lines[start:]:
                return "".join(lines[start : lines.index(f"-----END {kind}-----", start)])
    return None


def _sealed(path: Path) -> dict[str, Any]:
    """The JSON document inside the key file's PEM block."""
    try:
        if path.stat().st_size > MAX_KEY_FILE:
            raise ToolError(f"{path} is not a cosign private key (over {MAX_KEY_FILE} bytes)")
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as err:
        raise ToolError(f"cannot read the cosign key {path}: {err}") from None
    body = _pem_body(text)
    if body is None:
        raise ToolError(f"{path} is not a cosign private key (no {PEM_TYPES[0]} block)")
    try:
        sealed = json.loads(base64.b64decode(body, validate=True))
        if not isinstance(sealed, dict):
            raise ValueError("not a JSON object")
        return sealed
    except (ValueError, binascii.Error, RecursionError) as err:
        detail = "nested too deeply" if isinstance(err, RecursionError) else err
        raise ToolError(f"{path}: the cosign private key is damaged ({detail})") from None


def _secret(path: Path, sealed: dict[str, Any], password: bytes) -> bytes:
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
            password,
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
    P-256 (what ``generate-key-pair`` makes; cosign signs the others itself). ToolError
    naming the file when it cannot be read."""
    try:
        secret = os.fsencode(password)  # the bytes cosign gets from the environment
    except UnicodeError:
        raise ToolError("COSIGN_PASSWORD is not a string of bytes the key can use") from None
    der = _secret(path, _sealed(path), secret)
    try:
        key = load_der_private_key(der, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as err:
        raise ToolError(f"{path}: the decrypted cosign key is not a private key ({err})") from None
    if isinstance(key, ec.EllipticCurvePrivateKey) and isinstance(key.curve, ec.SECP256R1):
        return EcKey(key)
    return None
