"""Which keys publish signs attestations with in-process (the rest go to cosign attest)."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from hypothesis import given
from hypothesis import strategies as st

from dcforge.core.errors import ToolError
from dcforge.infra import keyfile
from dcforge.infra.runner import Runner
from dcforge.infra.tools.cosign import Cosign, Signer, _spread
from dcforge.infra.tools.registry import Registry


@pytest.mark.parametrize(
    ("signer", "in_process"),
    [
        (Signer(key="/keys/cosign.key"), True),
        (Signer(key="/keys/cosign.key", tlog=True), False),  # Rekor: cosign uploads
        (Signer(key="awskms:///alias/release"), False),
        (Signer(key="hashivault://release"), False),
        (Signer(key="env://COSIGN_PRIVATE_KEY"), False),
        (Signer(key="pkcs11:token=release;slot-id=0"), False),
        (Signer(identity="https://github.com/o/r/.github/workflows/w.yml@refs/heads/main"), False),
    ],
)
def test_only_a_key_file_without_rekor_is_signed_in_process(
    signer: Signer, in_process: bool
) -> None:
    runner = Runner(dry_run=True)
    ours = Cosign(runner, signer, Registry(runner, frozenset()), {})
    assert ours.signs_in_process() is in_process
    if not in_process:
        ours.check_key()  # nothing to decrypt, nothing read


@given(
    items=st.integers(min_value=0, max_value=300),
    runs=st.integers(min_value=-1, max_value=9),
    most=st.integers(min_value=0, max_value=130),
    least=st.integers(min_value=0, max_value=10),
)
def test_spread_keeps_every_item_once_in_order_within_the_bounds(
    items: int, runs: int, most: int, least: int
) -> None:
    refs = [f"r/i@sha256:{i:064x}" for i in range(items)]
    chunks = _spread(refs, runs, most, least)
    assert [r for chunk in chunks for r in chunk] == refs
    assert all(0 < len(chunk) <= max(1, most) for chunk in chunks)
    if items and max(1, most) * max(1, runs) >= items:
        assert len(chunks) <= max(1, runs)


def test_a_key_decrypted_early_is_taken_only_for_the_signers_own_key_file() -> None:
    """publish hands over the key it decrypted while its checks ran; a key read from
    another file never signs for this signer."""
    runner = Runner(dry_run=True)
    keys = Path(__file__).parent / "keys"
    other = keyfile.load(keys / "cosign.key", "unit-test-only")
    ed = Signer(key=str(keys / "ed25519.key"))
    ours = Cosign(runner, ed, Registry(runner, frozenset()), {"COSIGN_PASSWORD": "unit-test-only"})
    ours.check_key((str(keys / "cosign.key"), other))
    assert ours._ec_key() is None  # its own file: Ed25519, left to cosign
    mine = Cosign(
        runner,
        Signer(key=str(keys / "cosign.key")),
        Registry(runner, frozenset()),
        {"COSIGN_PASSWORD": "wrong"},
    )
    mine.check_key((str(keys / "cosign.key"), other))  # adopted: no decrypt with "wrong"
    assert mine._ec_key() is other


def test_a_key_that_is_not_the_public_keys_pair_is_refused_before_it_signs(
    tmp_path: Path,
) -> None:
    """publish checks the pair once, in its checks: a signature that would not verify is
    never made, and what it signs with the checked pair needs no cosign run to trust."""
    runner = Runner(dry_run=True)
    keys = Path(__file__).parent / "keys"
    env = {"COSIGN_PASSWORD": "unit-test-only"}
    other = tmp_path / "other.pub"
    other.write_bytes(
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    )
    wrong = Cosign(
        runner,
        Signer(key=str(keys / "cosign.key"), public_key=str(other)),
        Registry(runner, frozenset()),
        env,
    )
    with pytest.raises(ToolError, match="is not the private key of the public key"):
        wrong.check_key()
    paired = Cosign(
        runner,
        Signer(key=str(keys / "cosign.key"), public_key=str(keys / "cosign.pub")),
        Registry(runner, frozenset()),
        env,
    )
    assert paired._paired == []  # unchecked: a signature would be verified by cosign
    paired.check_key()
    assert paired._paired == [True]
    assert paired.signs_here()  # sign_checked() then reads the .sig back: no cosign run
    # A public key the check cannot read leaves the verdict to cosign.
    (tmp_path / "unread.pub").write_text("awskms-style reference, not PEM\n")
    unread = Cosign(
        runner,
        Signer(key=str(keys / "cosign.key"), public_key=str(tmp_path / "unread.pub")),
        Registry(runner, frozenset()),
        env,
    )
    unread.check_key()
    assert unread._paired == [False]


def test_a_policy_names_the_key_by_content_and_the_identity_by_every_field(
    tmp_path: Path,
) -> None:
    """What a record's bindings were verified under: the same key in another file is the
    same policy; another key, a tighter identity or another trust root is not."""
    keys = Path(__file__).parent / "keys"
    moved = tmp_path / "release.pub"
    # The same key, written another way (DER re-encoded as PEM, no trailing newline).
    pem = (keys / "cosign.pub").read_text().strip()
    moved.write_text(pem)
    other = tmp_path / "other.pub"
    other.write_bytes(
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    )
    mine = Signer(key=str(keys / "cosign.key"), public_key=str(keys / "cosign.pub")).policy()
    assert Signer(public_key=str(moved)).policy() == mine
    assert Signer(public_key=str(other)).policy() != mine
    assert Signer(public_key=str(keys / "cosign.pub"), tlog=True).policy() != mine
    # A key by reference can change under its name: no policy, no bindings stand.
    for reference in ("awskms:///alias/a", "env://COSIGN_PUB", "https://example.com/k.pub",
                      "pkcs11:token=t", "k8s://ns/secret"):  # fmt: skip
        assert Signer(public_key=reference).policy() is None
    identity = "https://github.com/o/r/.github/workflows/w.yml@refs/heads/main"
    loose = Signer(identity=identity).policy()
    assert Signer(identity=identity).policy() == loose
    assert Signer(identity=identity, repository="o/r").policy() != loose
    assert Signer(identity=identity, source_ref="refs/heads/main").policy() != loose
    assert Signer(identity=identity, issuer="https://other.example").policy() != loose
    root = tmp_path / "root.json"
    root.write_text("{}")
    assert Signer(identity=identity, root_file=str(root)).policy() != loose


def test_cosigns_environment_is_part_of_the_policy_and_the_password_is_not(
    tmp_path: Path,
) -> None:
    """COSIGN_REPOSITORY, SIGSTORE_* and TUF_* change what cosign accepts: each is part
    of the policy (a file it names, by content); the password never is."""
    keys = Path(__file__).parent / "keys"
    signer = Signer(public_key=str(keys / "cosign.pub"))

    def policy(env: dict[str, str]) -> object:
        return Cosign(
            Runner(env=env, dry_run=True), signer, Registry(Runner(), frozenset()), {}
        ).policy()

    plain = policy({"PATH": "/usr/bin"})
    for unrelated in ("COSIGN_PASSWORD", "COSIGN_YES", "SIGSTORE_ID_TOKEN", "SIGSTORE_OIDC_ISSUER"):
        assert policy({"PATH": "/bin", unrelated: "secret"}) == plain
    assert policy({"COSIGN_REPOSITORY": "other.example/sigs"}) != plain
    assert policy({"TUF_MIRROR": "https://tuf.example"}) != plain
    rekor = tmp_path / "rekor.pub"
    rekor.write_text("one")
    first = policy({"SIGSTORE_REKOR_PUBLIC_KEY": str(rekor)})
    assert first != plain and "secret" not in repr(first)
    rekor.write_text("two")
    assert policy({"SIGSTORE_REKOR_PUBLIC_KEY": str(rekor)}) != first
