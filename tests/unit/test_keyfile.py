"""dcforge.infra.keyfile reads keys the real cosign made, and only what cosign itself reads."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    PublicFormat,
    load_pem_public_key,
)

from dcforge.core.errors import ToolError
from dcforge.infra import keyfile

KEYS = Path(__file__).parent / "keys"
PASSWORD = "unit-test-only"


def _resealed(tmp_path: Path, change: dict[str, object]) -> Path:
    """cosign.key with fields of its sealed document replaced."""
    text = (KEYS / "cosign.key").read_text().splitlines()
    sealed = json.loads(base64.b64decode("".join(text[1:-1])))
    for dotted, value in change.items():
        *parents, last = dotted.split(".")
        node = sealed
        for part in parents:
            node = node[part]
        node[last] = value
    body = base64.b64encode(json.dumps(sealed).encode()).decode()
    path = tmp_path / "cosign.key"
    path.write_text(f"{text[0]}\n{body}\n{text[-1]}\n")
    return path


def test_a_key_cosign_made_signs_what_its_public_key_verifies() -> None:
    key = keyfile.load(KEYS / "cosign.key", PASSWORD)
    assert key is not None
    signature = key.sign(b"payload")
    public = load_pem_public_key((KEYS / "cosign.pub").read_bytes())
    assert isinstance(public, ec.EllipticCurvePublicKey)
    public.verify(signature, b"payload", ec.ECDSA(hashes.SHA256()))
    assert "PRIVATE" not in repr(key) and repr(key) == "EcKey(secp256r1)"


def _public_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)


def test_a_key_knows_its_own_public_key_and_no_other(tmp_path: Path) -> None:
    key = keyfile.load(KEYS / "cosign.key", PASSWORD)
    assert key is not None
    assert key.is_pair_of(KEYS / "cosign.pub") is True
    other = tmp_path / "other.pub"
    other.write_bytes(_public_pem(ec.generate_private_key(ec.SECP256R1())))
    assert key.is_pair_of(other) is False
    p384 = tmp_path / "p384.pub"  # another curve: not the pair either
    p384.write_bytes(_public_pem(ec.generate_private_key(ec.SECP384R1())))
    assert key.is_pair_of(p384) is False
    # What is not a PEM public key file read here is left to cosign to read (or refuse).
    (tmp_path / "garbage.pub").write_text("not a key\n")
    assert key.is_pair_of(tmp_path / "garbage.pub") is None
    assert key.is_pair_of(tmp_path / "missing.pub") is None
    assert key.is_pair_of(KEYS / "cosign.key") is None  # a private key file


def test_a_wrong_password_is_named_without_the_password() -> None:
    with pytest.raises(ToolError) as err:
        keyfile.load(KEYS / "cosign.key", "not-the-password")
    assert "COSIGN_PASSWORD does not decrypt the cosign key" in str(err.value)
    assert "not-the-password" not in str(err.value)


def test_a_key_that_is_not_ecdsa_is_left_to_cosign() -> None:
    assert keyfile.load(KEYS / "ed25519.key", PASSWORD) is None


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"kdf.params.N": 1024}, "unsupported key derivation"),  # cosign refuses it too
        ({"kdf.params.N": 2**40}, "unsupported key derivation"),  # never tried: memory
        ({"kdf.name": "pbkdf2"}, "unsupported key derivation"),
        ({"cipher.name": "aes-gcm"}, "unsupported cipher"),
        ({"ciphertext": "!!not base64"}, "not a key cosign can read"),
        ({"kdf.salt": None}, "not a key cosign can read"),
    ],
)
def test_a_key_cosign_would_not_read_is_refused(
    tmp_path: Path, change: dict[str, object], message: str
) -> None:
    with pytest.raises(ToolError, match=message):
        keyfile.load(_resealed(tmp_path, change), PASSWORD)


def test_a_flipped_ciphertext_byte_reads_as_a_wrong_password(tmp_path: Path) -> None:
    text = (KEYS / "cosign.key").read_text().splitlines()
    sealed = json.loads(base64.b64decode("".join(text[1:-1])))
    raw = bytearray(base64.b64decode(sealed["ciphertext"]))
    raw[5] ^= 1
    path = _resealed(tmp_path, {"ciphertext": base64.b64encode(bytes(raw)).decode()})
    with pytest.raises(ToolError, match="does not decrypt"):
        keyfile.load(path, PASSWORD)


@pytest.mark.parametrize(
    "text",
    [
        (KEYS / "cosign.pub").read_text(),
        "-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----\n",
        "-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\nbm90IGpzb24=\n"
        "-----END ENCRYPTED SIGSTORE PRIVATE KEY-----\n",
        "",
    ],
)
def test_what_is_not_a_cosign_private_key_is_named(tmp_path: Path, text: str) -> None:
    path = tmp_path / "key"
    path.write_text(text)
    with pytest.raises(ToolError, match=re.escape(str(path))):
        keyfile.load(path, PASSWORD)


def test_a_missing_key_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ToolError, match="cannot read the cosign key"):
        keyfile.load(tmp_path / "absent.key", PASSWORD)


def _sealed_key(tmp_path: Path, der: bytes, password: bytes, n: int = 32768) -> Path:
    """A key sealed as cosign seals one (by default the legacy scrypt N, to keep the test
    quick; r=8, p=1 in all three of go-securesystemslib's sets)."""
    import hashlib

    from nacl.secret import SecretBox
    from nacl.utils import random

    salt, nonce = random(32), random(24)
    box = hashlib.scrypt(password, salt=salt, n=n, r=8, p=1, maxmem=2**28, dklen=32)
    sealed = {
        "kdf": {
            "name": "scrypt",
            "params": {"N": n, "r": 8, "p": 1},
            "salt": base64.b64encode(salt).decode(),
        },
        "cipher": {"name": "nacl/secretbox", "nonce": base64.b64encode(nonce).decode()},
        "ciphertext": base64.b64encode(SecretBox(box).encrypt(der, nonce).ciphertext).decode(),
    }
    body = base64.b64encode(json.dumps(sealed).encode()).decode()
    path = tmp_path / "sealed.key"
    path.write_text(
        f"-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\n{body}\n"
        "-----END ENCRYPTED SIGSTORE PRIVATE KEY-----\n"
    )
    return path


def _der(key: ec.EllipticCurvePrivateKey) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


@pytest.mark.parametrize("n", [2**15, 2**16, 2**17])  # legacy, standard, OWASP
def test_every_scrypt_set_go_securesystemslib_writes_is_read(tmp_path: Path, n: int) -> None:
    """encrypted.go's legacyParams, standardParams and owaspParams (N 2^15, 2^16, 2^17;
    r=8, p=1): its CheckParams accepts exactly these, so cosign reads a key sealed with any."""
    private = ec.generate_private_key(ec.SECP256R1())
    key = keyfile.load(_sealed_key(tmp_path, _der(private), b"pw", n=n), "pw")
    assert key is not None
    private.public_key().verify(key.sign(b"payload"), b"payload", ec.ECDSA(hashes.SHA256()))


def test_only_p256_is_signed_here(tmp_path: Path) -> None:
    """P-256 is what generate-key-pair makes; cosign signs other curves itself."""
    p256 = _sealed_key(tmp_path, _der(ec.generate_private_key(ec.SECP256R1())), b"pw")
    assert keyfile.load(p256, "pw") is not None
    p384 = _sealed_key(tmp_path, _der(ec.generate_private_key(ec.SECP384R1())), b"pw")
    assert keyfile.load(p384, "pw") is None


def test_a_password_that_is_not_utf8_is_the_bytes_cosign_gets(tmp_path: Path) -> None:
    """The environment hands Python undecodable bytes as surrogates; cosign gets the
    bytes. The password is read as cosign reads it, and never appears in a message."""
    path = _sealed_key(tmp_path, _der(ec.generate_private_key(ec.SECP256R1())), b"zq\xffxj")
    assert keyfile.load(path, b"zq\xffxj".decode(errors="surrogateescape")) is not None
    with pytest.raises(ToolError) as err:
        keyfile.load(path, "zq\udcfexj")
    assert "zq" not in str(err.value).replace(str(path), "")


@pytest.mark.parametrize(
    "text",
    [
        "-----BEGIN A-----" + " " * 20000,
        "-----BEGIN A-----\n" * 8000,
        "-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\n"
        + base64.b64encode(b"[" * 3000 + b"]" * 3000).decode()
        + "\n-----END ENCRYPTED SIGSTORE PRIVATE KEY-----\n",
    ],
)
def test_a_hostile_key_file_is_refused_at_once(tmp_path: Path, text: str) -> None:
    path = tmp_path / "hostile.key"
    path.write_text(text)
    with pytest.raises(ToolError, match=r"not a cosign private key|damaged"):
        keyfile.load(path, PASSWORD)


def test_an_oversized_key_file_is_not_read(tmp_path: Path) -> None:
    path = tmp_path / "big.key"
    path.write_bytes(b"x" * (keyfile.MAX_KEY_FILE + 1))
    with pytest.raises(ToolError, match="over 65536 bytes"):
        keyfile.load(path, PASSWORD)
