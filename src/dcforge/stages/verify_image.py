"""Verify-image stage: what someone who pulls a published image can check, with no checkout
and no settings beyond the publisher's public key or keyless identity.

For ``REF`` (a tag or a digest): the image a pull for the platform gets (``--platform``,
else this machine's) — of an index, its child for that platform; the signatures of the
index and of that image; its SLSA provenance, whose source commit names a release record
(in ``dcforge-releases`` beside the image's repository) that is signed too and lists this
image; its SBOM, made for that image (its statement's one subject); and, when the record
says the gate waived findings of it, its OpenVEX document. Each fails closed with one line
naming what is missing.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

from rich.table import Table

from dcforge.core import admission_policy, oci_archive, provenance, release
from dcforge.core.attestations import ALL_TYPES, PROVENANCE_TYPE, SBOM_TYPE, VEX_TYPE, predicates
from dcforge.core.errors import ConfigError, DcforgeError, RegistryError, ToolError, VerifyFailed
from dcforge.core.refs import split_reference
from dcforge.core.settings import GITHUB_OIDC_ISSUER, SigningConfig
from dcforge.infra import log, signing
from dcforge.infra.context import Context


@dataclass
class Verified:
    """What was verified about one image, in order (for the table and for tests)."""

    reference: str
    repository: str
    digest: str  # what the reference resolved to (an index, or the image)
    platform: str  # the platform whose image was checked ("" for a single image)
    image: str  # that image's digest
    git_sha: str = ""
    record_digest: str = ""
    source: str = ""  # the repository the provenance says it was built from
    checks: list[tuple[str, str]] = field(default_factory=list)


@dataclass(frozen=True)
class Identity:
    """Who must have signed: a public key file, or a keyless identity and its issuer; both
    empty: the signing settings' (``DCFORGE_SIGNING``, ``COSIGN_PUBLIC_KEY``, …)."""

    key: str = ""
    certificate_identity: str = ""
    issuer: str = ""

    def signing(self, configured: SigningConfig) -> SigningConfig | None:
        if self.key and self.certificate_identity:
            raise ConfigError("say --key or --certificate-identity, not both")
        if self.key:
            if not Path(self.key).is_file():
                raise ConfigError(f"--key {self.key}: no such public key file")
            return SigningConfig(mode="key", key=self.key, public_key=self.key)
        if self.certificate_identity:
            issuer = self.issuer or GITHUB_OIDC_ISSUER
            return replace(
                configured, mode="keyless", key="", public_key="",
                identity=self.certificate_identity, issuer=issuer,
            )  # fmt: skip
        if self.issuer:
            raise ConfigError("--certificate-oidc-issuer needs --certificate-identity")
        return None


def run(
    project: Context,
    reference: str,
    platform: str = "",
    identity: Identity | None = None,
    machine: str = "",
) -> Verified:
    """Verify ``reference`` (see the module); ``machine``: ``platform.machine()``."""
    try:
        repository, _tag, pinned = split_reference(reference)
    except ValueError as err:
        raise ConfigError(str(err)) from None
    signing = (identity or Identity()).signing(project.settings.signing)
    ctx = project.elsewhere(repository.rpartition("/")[0], signing)
    reg = ctx.registry
    try:
        digest = pinned or reg.resolve(reference)
        served = reg.served_platforms(f"{repository}@{digest}")
    except RegistryError as err:
        raise VerifyFailed(f"{reference}: {err}") from None
    wanted = platform or oci_archive.host_platform(machine)
    found = Verified(reference, repository, digest, "", digest)
    if served:
        picked = oci_archive.pick_platform(served, wanted)
        if picked is None:
            raise VerifyFailed(
                f"{reference} has no image for {wanted} (it has {', '.join(sorted(served))}) "
                "— pass --platform"
            )
        found.platform, found.image = picked
    with log.group(f"verify-image {reference}"):
        _signatures(ctx, found)
        _provenance_and_record(ctx, found)
        _attestation(ctx, found, SBOM_TYPE, "SBOM (SPDX)")
    return found


def _first(err: Exception) -> str:
    return next((line for line in str(err).splitlines() if line.strip()), "")


def _ref(found: Verified, digest: str) -> str:
    return f"{found.repository}@{digest}"


def _signatures(ctx: Context, found: Verified) -> None:
    for digest in dict.fromkeys([found.digest, found.image]):
        what = "index" if digest != found.image else "image"
        try:
            ctx.cosign.verify(_ref(found, digest))
        except ToolError as err:
            raise VerifyFailed(
                f"{_ref(found, digest)}: the {what}'s signature does not verify with "
                f"{ctx.signer.describe()} ({_first(err)})"
            ) from None
        found.checks.append((f"{what} signature", f"{digest[:19]} by {ctx.signer.describe()}"))


def _statement(ctx: Context, found: Verified, ptype: str, what: str) -> object:
    """The one verified ``ptype`` predicate about the image itself."""
    ref = _ref(found, found.image)
    try:
        out = ctx.cosign.verify_attestation(ref, ptype)
    except ToolError as err:
        raise VerifyFailed(f"{ref}: no {what} attestation verifies ({_first(err)})") from None
    mine = predicates(out, ALL_TYPES[ptype], found.image)
    if len(mine) != 1:
        raise VerifyFailed(
            f"{ref}: {len(mine)} verified {what} attestation(s) name this image as their one "
            "subject (one is made for each image: one about another image does not count)"
        )
    return mine[0]


def _attestation(ctx: Context, found: Verified, ptype: str, what: str) -> None:
    _statement(ctx, found, ptype, what)
    on = f" ({found.platform})" if found.platform else ""
    found.checks.append((what, f"attested for {found.image[:19]}{on}"))


def _provenance_and_record(ctx: Context, found: Verified) -> None:
    """The provenance names a commit; that commit's signed release record lists the image
    (and says whether it carries a VEX)."""
    body = _statement(ctx, found, PROVENANCE_TYPE, "SLSA provenance")
    sha = provenance.source_commit(body)
    if not sha:
        raise VerifyFailed(f"{_ref(found, found.image)}: its provenance names no source commit")
    found.git_sha = sha
    found.source = _source(body)
    found.checks.append(
        ("SLSA provenance", f"source {sha[:12]}, builder {provenance.builder(body)}")
    )
    try:
        found.record_digest, rel = ctx.releases.fetch(sha)
    except DcforgeError as err:
        raise VerifyFailed(
            f"{found.reference}: no signed release record of {sha[:12]} in "
            f"{ctx.releases.repository} ({err})"
        ) from None
    image = next((i for i in rel.images if _lists(i, found)), None)
    if image is None:
        raise VerifyFailed(
            f"{found.reference}: release {sha[:12]}'s signed record does not list "
            f"{found.digest[:19]} — the provenance's source is not the release it claims"
        )
    found.checks.append(
        ("release record", f"{sha[:12]} {found.record_digest[:19]} lists it as {image.name}")
    )
    if found.image in image.vex_digests():
        _attestation(ctx, found, VEX_TYPE, "OpenVEX")
    else:
        found.checks.append(("OpenVEX", "none: the gate waived no finding of it"))


def _source(body: object) -> str:
    build = body.get("buildDefinition") if isinstance(body, dict) else None
    external = build.get("externalParameters") if isinstance(build, dict) else None
    source = external.get("source") if isinstance(external, dict) else None
    repository = source.get("repository") if isinstance(source, dict) else None
    return repository if isinstance(repository, str) else ""


def policy(project: Context, found: Verified, identity: Identity, kind: str) -> str:
    """An admission policy (``kyverno`` or ``sigstore``) for the images beside the one just
    verified: signed by the same key or identity, with SBOM and provenance naming the same
    source repository. (VEX is left out: only images with waived findings carry one.)"""
    chosen = identity.signing(project.settings.signing)
    signer = signing.signer(
        replace(project.settings, signing=chosen) if chosen is not None else project.settings
    )
    if signer.keyless:
        who = admission_policy.Identity(
            issuer=signer.issuer, subject=signer.identity, tlog=signer.tlog
        )
    else:
        pem = Path(signer.public_key or signer.key).read_text()
        who = admission_policy.Identity(public_key_pem=pem, tlog=signer.tlog)
    make = admission_policy.kyverno if kind == "kyverno" else admission_policy.sigstore
    source = found.source if found.source != provenance.LOCAL_SOURCE else ""
    return admission_policy.render(
        make(found.repository.rpartition("/")[0], who, source_repo=source)
    )


def _lists(image: release.Image, found: Verified) -> bool:
    """The record's image is the one pulled: the same repository and digest, and the
    checked image is that digest or its platform's child."""
    return (
        image.repository == found.repository
        and image.digest == found.digest
        and found.image in {d for _, d in image.attested()}
    )


def summary(found: Verified) -> None:
    on = f" for {found.platform}" if found.platform else ""
    table = Table(title=f"{found.reference}{on}: verified")
    table.add_column("check")
    table.add_column("what was verified")
    for check, detail in found.checks:
        table.add_row(check, detail)
    log.table(table)
