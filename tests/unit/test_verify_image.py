"""verify-image's pure parts: the reference, the platform a pull gets, who must have
signed, and what a verified provenance says."""

from __future__ import annotations

from pathlib import Path

import pytest

from dcforge.core import oci_archive, provenance, refs
from dcforge.core.errors import ConfigError
from dcforge.core.settings import GITHUB_OIDC_ISSUER, SigningConfig
from dcforge.stages.verify_image import Identity

A, B = ("sha256:" + c * 64 for c in "ab")


def test_a_reference_names_a_repository_and_a_tag_or_digest() -> None:
    assert refs.split_reference("ghcr.io/acme/dc/base:latest") == (
        "ghcr.io/acme/dc/base",
        "latest",
        "",
    )
    assert refs.split_reference(f"localhost:5000/x/y@{A}") == ("localhost:5000/x/y", "", A)
    assert refs.split_reference(f"h:5000/y:t@{A}") == ("h:5000/y", "t", A)
    bad_refs = ["base", "ghcr.io/x@sha256:zz", "ghcr.io/x y", "/x", "h/r@", "h/r:", "h/r\t",
                "https://h/r", "-h/r", "ghcr.io/Acme/x", f"h/r@{A}\n", "h/r:-t"]  # fmt: skip
    for bad in bad_refs:
        with pytest.raises(ValueError, match="is not an image reference"):
            refs.split_reference(bad)


def test_the_platform_a_pull_gets() -> None:
    served = {"linux/amd64": A, "linux/arm64/v8": B}
    assert oci_archive.pick_platform(served, "linux/arm64") == ("linux/arm64/v8", B)
    assert oci_archive.pick_platform(served, "linux/amd64") == ("linux/amd64", A)
    assert oci_archive.pick_platform(served, "linux/s390x") is None
    assert oci_archive.host_platform("x86_64") == "linux/amd64"
    assert oci_archive.host_platform("aarch64") == "linux/arm64"


def test_who_must_have_signed(tmp_path: Path) -> None:
    configured = SigningConfig(mode="keyless", identity="x", tlog=False)
    assert Identity().signing(configured) is None  # the settings say
    pub = tmp_path / "cosign.pub"
    pub.write_text("-----BEGIN PUBLIC KEY-----\n")
    keyed = Identity(key=str(pub)).signing(configured)
    assert keyed is not None and (keyed.mode, keyed.public_key) == ("key", str(pub))
    keyless = Identity(certificate_identity="https://github.com/a/b/.github/w.yml@refs/heads/main")
    made = keyless.signing(configured)
    assert made is not None and made.mode == "keyless" and made.issuer == GITHUB_OIDC_ISSUER
    assert made.tlog is False  # the rest (a private Sigstore) stays the settings'
    for bad, match in (
        (Identity(key=str(pub), certificate_identity="x"), "not both"),
        (Identity(key=str(tmp_path / "missing.pub")), "no such public key file"),
        (Identity(issuer="https://issuer"), "need --certificate-identity"),
        (Identity(repository="acme/images"), "need --certificate-identity"),
        (Identity(source_ref="refs/heads/main"), "need --certificate-identity"),
    ):
        with pytest.raises(ConfigError, match=match):
            bad.signing(configured)


def test_a_provenance_names_one_source_commit() -> None:
    sha = "c" * 40
    body = {
        "buildDefinition": {"resolvedDependencies": [
            {"uri": "git+https://github.com/a/b@" + sha, "digest": {"gitCommit": sha}},
            {"uri": "pkg:docker/debian", "digest": {"sha256": "d" * 64}},
        ]},
        "runDetails": {"builder": {"id": "https://github.com/a/b/.github/workflows/x.yml@main"}},
    }  # fmt: skip
    assert provenance.source_commit(body) == sha
    assert provenance.builder(body).endswith("x.yml@main")
    deps = [{"uri": "git+https://github.com/a/b@" + sha, "digest": {"gitCommit": sha}}]
    two = {"buildDefinition": {"resolvedDependencies": [deps[0], deps[0]]}}
    short = {"buildDefinition": {"resolvedDependencies": [{"digest": {"gitCommit": "abc"}}]}}
    bads: list[object] = [two, short, {}, [], {"buildDefinition": {"resolvedDependencies": "x"}}]
    for bad in bads:
        assert provenance.source_commit(bad) == ""
    assert provenance.builder({}) == ""
