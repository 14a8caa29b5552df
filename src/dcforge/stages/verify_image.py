"""Verify-image stage: what someone who pulls a published image can check, with no checkout
and no settings beyond the publisher's public key or keyless identity.

For ``REF`` (a tag, an index digest or a platform image's digest): the image a pull for
the platform gets (``--platform``, else this machine's) — of an index, its child for that
platform; the signatures of the index and of that image; its SLSA provenance, whose source
commit names a release record (in ``NAMESPACE/dcforge-releases``, by default beside the
image's repository) that is signed, was published there and lists this image; the tag,
which that release (or the pinned one, when it reused the image) must give the image; the
index's own SBOM and provenance; the image's SBOM (its statement's one subject); and the
OpenVEX document the release names, by sha256. Each fails closed with one line naming what
is missing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from pathlib import Path

from rich.table import Table

from dcforge.core import admission_policy, oci_archive, provenance, release, vex
from dcforge.core.attestations import ALL_TYPES, PROVENANCE_TYPE, SBOM_TYPE, VEX_TYPE, predicates
from dcforge.core.errors import ConfigError, DcforgeError, RegistryError, ToolError, VerifyFailed
from dcforge.core.files import atomic_write_bytes
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
    tag: str = ""  # the tag REF names ("" for a digest)
    wanted: str = ""  # the platform asked for with --platform ("" for none)
    namespace: str = ""  # where its records are: NAMESPACE/dcforge-releases
    checks: list[tuple[str, str]] = field(default_factory=list)


@dataclass(frozen=True)
class Identity:
    """Who must have signed: a public key file, or a keyless identity and its issuer; both
    empty: the signing settings' (``DCFORGE_SIGNING``, ``COSIGN_PUBLIC_KEY``, …)."""

    key: str = ""
    certificate_identity: str = ""
    issuer: str = ""
    repository: str = ""  # the run's repository, for a reusable workflow's identity
    source_ref: str = ""  # the run's git ref

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
                repository=self.repository, source_ref=self.source_ref,
            )  # fmt: skip
        if self.issuer or self.repository or self.source_ref:
            raise ConfigError(
                "--certificate-oidc-issuer and --certificate-github-workflow-* need "
                "--certificate-identity"
            )
        return None


@dataclass(frozen=True)
class Options:
    platform: str = ""  # the platform whose image to check ("": this machine's)
    identity: Identity = field(default_factory=Identity)
    namespace: str = ""  # where the records are: NAMESPACE/dcforge-releases ("": REF's)
    vex_out: str = ""  # write the release's VEX document of the image here
    machine: str = ""  # platform.machine(), for the default platform


def run(project: Context, reference: str, options: Options | None = None) -> Verified:
    """Verify ``reference`` (see the module)."""
    options = options or Options()
    try:
        repository, tag, pinned = split_reference(reference)
    except ValueError as err:
        raise ConfigError(str(err)) from None
    signing_ = options.identity.signing(project.settings.signing)
    namespace = options.namespace.rstrip("/") or repository.rpartition("/")[0]
    ctx = project.elsewhere(namespace, signing_)
    _check_signer(ctx)
    reg = ctx.registry
    try:
        digest = pinned or reg.resolve(reference)
        served = reg.served_platforms(f"{repository}@{digest}")
    except RegistryError as err:
        raise VerifyFailed(f"{reference}: {err}") from None
    wanted = options.platform or oci_archive.host_platform(options.machine)
    found = Verified(reference, repository, digest, "", digest, tag=tag, wanted=options.platform)
    found.namespace = namespace
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
        image = _provenance_and_record(ctx, found)
        _attestation(ctx, found, SBOM_TYPE, "SBOM (SPDX)")
        _vex(ctx, found, image, options.vex_out)
    return found


def _check_signer(ctx: Context) -> None:
    """A key that is there, or a keyless identity: else say how to name one."""
    signer = ctx.signer
    if signer.keyless:
        if not signer.identity:
            raise ConfigError("say who must have signed: --key PUB or --certificate-identity ID")
        return
    key = signer.public_key or signer.key
    if "://" not in key and not Path(key).is_file():
        raise ConfigError(
            f"no public key at {key}: say who must have signed, --key PUB (the publisher's "
            "cosign.pub) or --certificate-identity ID"
        )


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


def _statement(ctx: Context, found: Verified, ptype: str, what: str, digest: str = "") -> object:
    """The one verified ``ptype`` predicate about the image itself (or ``digest``)."""
    digest = digest or found.image
    ref = _ref(found, digest)
    try:
        out = ctx.cosign.verify_attestation(ref, ptype)
    except ToolError as err:
        raise VerifyFailed(f"{ref}: no {what} attestation verifies ({_first(err)})") from None
    mine = predicates(out, ALL_TYPES[ptype], digest)
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


_WORKFLOW = re.compile(r"https://[^/]+/(?P<repo>[^/]+/[^/]+)/\.github/workflows/[^@]+@.+")
_GITHUB_REPO = re.compile(r"https://[^/]+/(?P<repo>[^/]+/[^/]+?)(?:\.git)?/?")


def _run_pinned(ctx: Context, found: Verified) -> None:
    """A keyless identity that is a workflow of another repository than the one the
    provenance names is a reusable workflow: every repository calling it signs as it, so
    the repository must be pinned (``--certificate-github-workflow-repository``)."""
    signer = ctx.signer
    if not signer.keyless or signer.repository:
        return
    workflow, source = _WORKFLOW.fullmatch(signer.identity), _GITHUB_REPO.fullmatch(found.source)
    if workflow and source and workflow["repo"].lower() != source["repo"].lower():
        raise VerifyFailed(
            f"{_ref(found, found.image)}: signed by {signer.identity}, a workflow of "
            f"{workflow['repo']}, for {source['repo']}: a reusable workflow signs for every "
            "repository that calls it — pass --certificate-github-workflow-repository "
            f"{source['repo']} (and --certificate-github-workflow-ref) to require this one"
        )


def _provenance_and_record(ctx: Context, found: Verified) -> release.Image:
    """The provenance names a commit; that commit's signed record lists the image. The
    release the image is checked against (its tags, its VEX) is the pinned one when that
    lists the image too (the image was reused), else that commit's."""
    body = _statement(ctx, found, PROVENANCE_TYPE, "SLSA provenance")
    sha = provenance.source_commit(body)
    if not sha:
        raise VerifyFailed(f"{_ref(found, found.image)}: its provenance names no source commit")
    found.git_sha, found.source = sha, _source(body)
    _run_pinned(ctx, found)
    found.checks.append(
        ("SLSA provenance", f"source {sha[:12]}, builder {provenance.builder(body)}")
    )
    found.record_digest, rel = _record(ctx, found, sha)
    image = _listed(rel, found)
    if image is None:
        raise VerifyFailed(
            f"{found.reference}: release {sha[:12]}'s signed record does not list "
            f"{found.digest[:19]} — the provenance's source is not the release it claims"
        )
    _check_platform(found, image)
    found.checks.append(
        ("release record", f"{sha[:12]} {found.record_digest[:19]} lists it as {image.name}")
    )
    if image.index_attested and found.digest != found.image:
        _index(ctx, found, sha)
    current = _pinned(ctx, found)
    if current is not None and current[1].git_sha != sha:
        image = current[0]
        found.checks.append(("release", f"{current[1].git_sha[:12]} (last-known-good) reuses it"))
    _check_tag(found, image)
    return image


def _record(ctx: Context, found: Verified, sha: str) -> tuple[str, release.Release]:
    try:
        digest, rel = ctx.releases.fetch(sha)
    except DcforgeError as err:
        raise VerifyFailed(
            f"{found.reference}: no signed release record of {sha[:12]} in "
            f"{ctx.releases.repository} ({_first(err)}) — if the publisher's records are "
            "elsewhere, pass --registry NAMESPACE"
        ) from None
    if rel.manifest.registry.rstrip("/") != ctx.settings.registry:
        raise VerifyFailed(
            f"{ctx.releases.repository}: release {sha[:12]} was published to "
            f"{rel.manifest.registry}, not {ctx.settings.registry}"
        )
    return digest, rel


def _pinned(ctx: Context, found: Verified) -> tuple[release.Image, release.Release] | None:
    """The pinned release's image for what was pulled, when it lists it."""
    try:
        _, pinned = ctx.releases.fetch(release.LAST_KNOWN_GOOD)
    except DcforgeError:
        return None
    image = _listed(pinned, found)
    return (image, pinned) if image is not None else None


def _check_platform(found: Verified, image: release.Image) -> None:
    """A platform image pulled by its own digest, or a single-platform image: what was
    asked for (--platform) must be what it is."""
    platforms = {d: p for p, d in image.platforms}
    found.platform = found.platform or (
        platforms.get(found.image, "") if len(platforms) > 1 else ""
    )
    mine = platforms.get(found.image, "")
    if found.wanted and mine and not oci_archive.same_platform(mine, found.wanted):
        raise VerifyFailed(f"{found.reference} is a {mine} image, not {found.wanted}")


def _check_tag(found: Verified, image: release.Image) -> None:
    """A tag names the image only if the release gave it that tag: anyone who can push can
    point ``python:3.12`` at the signed 3.11 image."""
    if found.tag and found.tag not in {image.immutable_tag, *image.floating_tags}:
        raise VerifyFailed(
            f"{found.reference}: the release gives {image.name} the tags "
            f"{', '.join([*image.floating_tags, image.immutable_tag])}, not {found.tag!r} — "
            "the tag was pointed at an image it does not name"
        )


def _vex(ctx: Context, found: Verified, image: release.Image, out: str) -> None:
    """The release's VEX for the image, by the sha256 its record names (an image reused
    by several releases can carry one from each): written to ``out`` when asked."""
    want = dict(image.vex).get(found.image, "")
    ref = _ref(found, found.image)
    try:
        text = ctx.cosign.verify_attestation(ref, VEX_TYPE)
    except ToolError as err:
        if want:
            raise VerifyFailed(f"{ref}: no OpenVEX attestation verifies ({_first(err)})") from None
        text = ""
    docs = predicates(text, VEX_TYPE, found.image)
    mine = [d for d in docs if want and vex.document_sha256(d) == want]
    if want and not mine:
        raise VerifyFailed(
            f"{ref}: none of its {len(docs)} verified OpenVEX document(s) is the one its "
            f"release names (sha256 {want[:12]}…)"
        )
    if out and mine:
        atomic_write_bytes(Path(out), vex.dumps(mine[0]))
    elif out:
        raise VerifyFailed(f"{ref}: its release names no OpenVEX document to write to {out}")
    if mine:
        found.checks.append(("OpenVEX", f"the release's, sha256 {want[:12]}…"))
        return
    other = f"; it carries {len(docs)} of other releases: do not apply them" if docs else ""
    found.checks.append(("OpenVEX", f"none in this release{other}"))


def _index(ctx: Context, found: Verified, sha: str) -> None:
    """The index's own attestations (what a policy on the tag checks): its provenance names
    the same commit, and it has an SBOM."""
    body = _statement(ctx, found, PROVENANCE_TYPE, "index provenance", found.digest)
    if provenance.source_commit(body) != sha:
        raise VerifyFailed(
            f"{_ref(found, found.digest)}: the index's provenance names another commit "
            f"({provenance.source_commit(body)[:12] or 'none'}) than its image's ({sha[:12]})"
        )
    _statement(ctx, found, SBOM_TYPE, "index SBOM", found.digest)
    found.checks.append(("index attestations", f"SBOM + provenance for {found.digest[:19]}"))


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
            issuer=signer.issuer, subject=signer.identity, tlog=signer.tlog,
            repository=signer.repository, ref=signer.source_ref,
        )  # fmt: skip
    else:
        key = signer.public_key or signer.key
        try:
            pem = Path(key).read_text()
        except (OSError, UnicodeDecodeError) as err:
            raise ConfigError(
                f"--policy writes the public key into the policy: cannot read {key} ({err}) "
                "— pass --key PUB"
            ) from None
        who = admission_policy.Identity(public_key_pem=pem, tlog=signer.tlog)
    make = admission_policy.kyverno if kind == "kyverno" else admission_policy.sigstore
    source = found.source if found.source != provenance.LOCAL_SOURCE else ""
    return admission_policy.render(make(found.namespace, who, source_repo=source))


def _listed(rel: release.Release, found: Verified) -> release.Image | None:
    """The record's image that is the one pulled: the same repository, and its digest (an
    index or an image) or, pulled by its own digest, one of its platform images."""
    for image in rel.images:
        children = {d for _, d in image.attested()}
        if (
            image.repository == found.repository
            and found.image in children
            and (found.digest in (image.digest, found.image))
        ):
            return image
    return None


def summary(found: Verified) -> None:
    on = f" for {found.platform}" if found.platform else ""
    table = Table(title=f"{found.reference}{on}: verified")
    table.add_column("check")
    table.add_column("what was verified")
    for check, detail in found.checks:
        table.add_row(check, detail)
    log.table(table)
