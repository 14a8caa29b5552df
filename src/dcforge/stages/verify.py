"""Verify stage: a release in the registry is what its signed record says it is.

For the release (default: ``last-known-good``): the record's signature verifies; every
floating tag resolves to the digest the record names; each image's signature verifies with
the configured key/identity; its SBOM and SLSA provenance attestations verify and name
that digest as their subject.
"""

from __future__ import annotations

import base64
import json
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from rich.table import Table

from dcforge import log, release, signing
from dcforge.errors import DcforgeError, ManifestError, RegistryError, ToolError
from dcforge.runner import Runner
from dcforge.settings import Settings
from dcforge.stages.publish import PROVENANCE_TYPE, SBOM_TYPE
from dcforge.tools import cosign, registry

PREDICATE_TYPES = {
    SBOM_TYPE: "https://spdx.dev/Document",
    PROVENANCE_TYPE: "https://slsa.dev/provenance/v1",
}


class VerifyFailed(DcforgeError):
    exit_code = 9
    kind = "verify failed"


def fetch_release(
    settings: Settings, runner: Runner, signer: cosign.Signer, reference: str
) -> tuple[str, release.Release]:
    """Resolve, signature-check and parse the release record at ``reference``."""
    plain = settings.is_plain_http(reference)
    digest = registry.digest_or_none(runner, reference, plain_http=plain)
    if digest is None:
        raise VerifyFailed(f"no release record at {reference}")
    repo = reference.rsplit(":", 1)[0] if "@" not in reference else reference.split("@", 1)[0]
    try:
        cosign.verify(runner, signer, f"{repo}@{digest}", plain_http=plain)
    except ToolError as err:
        raise VerifyFailed(
            f"the release record {reference} ({digest[:19]}) is not signed by the configured "
            f"key/identity: {err}"
        ) from None
    with tempfile.TemporaryDirectory(prefix="dcforge-release-") as tmp:
        files = registry.fetch_artifact(runner, f"{repo}@{digest}", Path(tmp), plain_http=plain)
        path = files / release.FILE_NAME
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as err:
            raise VerifyFailed(f"{reference}: unreadable release record ({err})") from None
    try:
        return digest, release.parse(data, reference)
    except ManifestError as err:
        raise VerifyFailed(str(err)) from None


def subjects(verify_output: str, predicate_type: str) -> set[str]:
    """sha256 subjects of in-toto statements of ``predicate_type`` in cosign's JSON lines."""
    found = set()
    for line in verify_output.splitlines():
        try:
            envelope = json.loads(line)
            statement: dict[str, Any] = json.loads(base64.b64decode(envelope["payload"]))
        except (ValueError, KeyError, TypeError):
            continue
        if statement.get("predicateType") != predicate_type:
            continue
        for subject in statement.get("subject") or []:
            sha = (subject.get("digest") or {}).get("sha256")
            if isinstance(sha, str):
                found.add(f"sha256:{sha}")
    return found


def verify_image(
    settings: Settings,
    runner: Runner,
    signer: cosign.Signer,
    image: release.Image,
    check_tags: bool,
) -> list[str]:
    """Problems with one image (empty: all good)."""
    problems = []
    plain = settings.is_plain_http(image.repository)
    if check_tags:
        for tag in image.floating_tags:
            try:
                served = registry.digest_or_none(
                    runner, f"{image.repository}:{tag}", plain_http=plain
                )
            except RegistryError as err:
                problems.append(str(err))
                continue
            if served != image.digest:
                problems.append(
                    f"{image.repository}:{tag} resolves to {served}, "
                    f"the release names {image.digest}"
                )
    try:
        cosign.verify(runner, signer, image.ref(), plain_http=plain)
    except ToolError as err:
        problems.append(f"{image.ref()}: signature does not verify ({err})")
    for ptype, predicate_type in PREDICATE_TYPES.items():
        try:
            out = cosign.verify_attestation(runner, signer, image.ref(), ptype, plain_http=plain)
        except ToolError as err:
            problems.append(f"{image.name}: {ptype} attestation does not verify ({err})")
            continue
        if image.digest not in subjects(out, predicate_type):
            problems.append(f"{image.name}: no {ptype} attestation names {image.digest} as subject")
    return problems


def run(
    settings: Settings,
    runner: Runner,
    env: Mapping[str, str],
    sha: str = "",
    check_tags: bool = True,
) -> release.Release:
    signer = signing.signer(settings, env)
    repo = release.repository(settings.registry)
    reference = f"{repo}:{sha or release.LAST_KNOWN_GOOD}"
    with log.group(f"verify {reference}"):
        digest, rel = fetch_release(settings, runner, signer, reference)
        log.info(f"release record {rel.git_sha[:12]} {digest[:19]}: signature ok")
        problems: list[str] = []
        for image in rel.images:
            found = verify_image(settings, runner, signer, image, check_tags)
            problems += found
            log.step(
                image.name,
                "ok: tags, signature, SBOM + provenance"
                if not found
                else f"FAILED: {'; '.join(found)}",
            )
    if problems:
        raise VerifyFailed(
            f"{len(problems)} problem(s) in release {rel.git_sha[:12]}: {problems[0]}"
        )
    _summary(rel)
    log.info(f"verified release {rel.git_sha[:12]}: {len(rel.images)} image(s)")
    return rel


def _summary(rel: release.Release) -> None:
    sample = " (SAMPLE vulnerability data)" if rel.gate.get("sample_db") else ""
    table = Table(title=f"release {rel.git_sha[:12]}: verified{sample}")
    for col in ("permutation", "digest", "vulnerabilities", "signed", "attested", "tags"):
        table.add_column(col)
    counts = rel.gate.get("vulnerabilities") or {}
    for image in rel.images:
        found = counts.get(image.name) or {}
        vulns = ", ".join(f"{k} {v}" for k, v in sorted(found.items())) or "none found"
        tags = ", ".join(image.floating_tags) + " + " + image.immutable_tag
        table.add_row(image.name, image.digest[:19], vulns, "verified", "SBOM + SLSA v1", tags)
    log.table(table)
