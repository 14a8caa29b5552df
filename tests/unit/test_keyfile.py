"""dcforge.keyfile reads keys the real cosign made, and only what cosign itself reads."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from dcforge import keyfile
from dcforge.errors import ToolError

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
