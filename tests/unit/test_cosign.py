"""Which keys publish signs attestations with in-process (the rest go to cosign attest)."""

from __future__ import annotations

import pytest

from dcforge.runner import Runner
from dcforge.tools.cosign import Cosign, Signer
from dcforge.tools.registry import Registry


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
