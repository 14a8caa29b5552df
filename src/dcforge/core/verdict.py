"""The gate's verdict as publish reads it: ``dist/gate.json`` and what it is bound to.

The gate writes the verdict; publish refuses it unless it passed this exact manifest and
tarballs, for this registry, under this policy (settings, waivers.yaml, trivy.yaml), with
the pinned scanners, a DB still young enough, and waivers still live today.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from dcforge.core import manifest as mf
from dcforge.core import policy, release, toolpins
from dcforge.core.errors import PublishRefused
from dcforge.core.hashing import file_sha256
from dcforge.core.settings import Settings, is_loopback

GATE_SCHEMA_VERSION = 3
SCANNED_TOOLS = ("trivy", "syft")


def waivers_path(settings: Settings) -> Path:
    return settings.root / settings.waivers


def trivy_config_path(settings: Settings) -> Path:
    return settings.root / "trivy.yaml"


def _sha256_or_empty(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else ""


def policy_json(settings: Settings) -> dict[str, Any]:
    """The policy a verdict is bound to: the settings, and the hashes of waivers.yaml and
    trivy.yaml (a verdict made under another file of either is refused by publish)."""
    return {
        **settings.gate_policy.to_json(),
        "waivers_sha256": _sha256_or_empty(waivers_path(settings)),
        "trivy_config_sha256": _sha256_or_empty(trivy_config_path(settings)),
    }


def check_publishable(
    settings: Settings,
    manifest: mf.Manifest,
    manifest_path: Path,
    now: dt.datetime | None = None,
) -> dict[str, Any]:
    """Refuse unless dist/gate.json passed this exact manifest, tarballs and policy."""
    gate_path = settings.dist_dir / "gate.json"
    try:
        doc = json.loads(gate_path.read_text())
    except (OSError, ValueError):
        raise PublishRefused(f"{gate_path}: no readable gate verdict — run 'nox -s gate'") from None
    if not isinstance(doc, dict) or doc.get("schema_version") != GATE_SCHEMA_VERSION:
        raise PublishRefused(
            f"{gate_path}: not a gate verdict this dcforge reads — re-run the gate"
        )
    if not doc.get("passed"):
        raise PublishRefused(f"{gate_path}: the gate blocked this manifest")
    if doc.get("manifest_sha256") != file_sha256(manifest_path):
        raise PublishRefused("manifest.json changed after it was gated — re-run the gate")
    _check_bound(settings, doc)
    _check_still_valid(settings, doc, now or dt.datetime.now(dt.UTC))
    raw = doc.get("permutations")
    if not isinstance(raw, list):
        raise PublishRefused(f"{gate_path}: no per-permutation verdicts — re-run the gate")
    verdicts = {v.get("name"): v for v in doc.get("permutations", []) if isinstance(v, dict)}
    for entry in manifest.permutations:
        v = verdicts.get(entry.name)
        if v is None or not v.get("passed"):
            raise PublishRefused(f"{entry.name}: no passing gate verdict — re-run the gate")
        if (
            v.get("tarball_sha256") != entry.tarball_sha256
            or v.get("image_digest") != entry.image_digest
        ):
            raise PublishRefused(
                f"{entry.name}: the gate verdict is for another tarball — re-run the gate"
            )
        _check_platforms(entry, v)
    return doc


def _check_platforms(entry: mf.Entry, v: Mapping[str, Any]) -> None:
    """Every image that will be signed (each platform's) was scanned and passed."""
    raw = v.get("platforms")
    listed = [p for p in (raw if isinstance(raw, list) else []) if isinstance(p, dict)]
    scanned = {p.get("platform"): p for p in listed}
    if len(scanned) != len(listed) or set(scanned) - set(entry.platform_images()):
        raise PublishRefused(
            f"{entry.name}: the gate verdict lists a platform twice, or one the manifest does "
            "not build — re-run the gate"
        )
    for platform, digest in entry.platform_images().items():
        found = scanned.get(platform)
        if found is None or not found.get("passed") or found.get("digest") != digest:
            raise PublishRefused(
                f"{entry.name}: no passing gate verdict for its {platform} image "
                f"{digest[:19]} — re-run the gate"
            )


def _check_bound(settings: Settings, doc: Mapping[str, Any]) -> None:
    """The verdict was made for this registry, under this policy, with the pinned scanners."""
    if doc.get("policy") != policy_json(settings):
        raise PublishRefused(
            "the gate policy, waivers.yaml or trivy.yaml changed since the gate ran — re-run "
            "the gate"
        )
    if doc.get("registry") != settings.registry:
        raise PublishRefused(
            f"the gate verdict was made for {doc.get('registry')!r}, the target is "
            f"{settings.registry!r} — re-run the gate for this registry"
        )
    if doc.get("sample_db") is not False and not is_loopback(settings.registry):
        raise PublishRefused(
            f"the gate verdict was made with dcforge's SAMPLE vulnerability data (or does not "
            f"say which DB): it never publishes to {settings.registry} — gate with a real DB "
            "(trivy_db_repository)"
        )
    pinned = toolpins.pins()
    tools = doc.get("tools")
    for name in SCANNED_TOOLS:
        tool = tools.get(name) if isinstance(tools, dict) else None
        found = str(tool.get("version", "")) if isinstance(tool, dict) else ""
        if not toolpins.matches(found, pinned[name]):
            raise PublishRefused(
                f"the gate ran {name} {found or '(unrecorded)'}, dcforge pins {pinned[name]} — "
                "re-run the gate with the pinned tools"
            )


def _check_still_valid(settings: Settings, doc: Mapping[str, Any], now: dt.datetime) -> None:
    """What was true when the gate ran must still be true: the DB young enough, and every
    waiver the verdict relied on still live."""
    problem = policy.db_age_problem(
        {"UpdatedAt": str(doc.get("db_updated_at", ""))}, now, settings.gate_policy
    )
    if problem:
        raise PublishRefused(f"the gate verdict is stale: {problem} — re-run the gate")
    for v in doc.get("permutations") or []:
        for waived in (v.get("waived") or []) if isinstance(v, dict) else []:
            expires = str((waived.get("waiver") or {}).get("expires", ""))
            try:
                dead = dt.date.fromisoformat(expires) < now.date()
            except ValueError:
                dead = True
            if dead:
                raise PublishRefused(
                    f"{v.get('name')}: the waiver for {waived.get('id')} it passed with expired "
                    f"on {expires or '?'} — re-run the gate"
                )


def vex_files(
    settings: Settings, manifest: mf.Manifest, gate_doc: dict[str, Any]
) -> dict[str, Path]:
    """Image digest → the OpenVEX document the gate wrote for it, each still the bytes the
    verdict recorded (the VEX attested is the one the gate decided with)."""
    out = {}
    for entry in manifest.permutations:
        recorded = release.vex_documents(gate_doc, entry)
        for platform, digest in entry.platform_images().items():
            if digest not in recorded:
                continue
            sha256 = recorded[digest]
            path = settings.dist_dir / "reports" / f"{entry.report_stem(platform)}.vex.json"
            if not path.is_file() or file_sha256(path) != sha256:
                raise PublishRefused(
                    f"{entry.name}: {path} is not the VEX document the gate recorded "
                    f"(sha256 {sha256[:12]}…) — re-run the gate; nothing was pushed"
                )
            out[digest] = path
    return out
