"""What the gate and the rescan both scan with, set up once per command.

The scanners are checked first — the pinned versions, no ``TRIVY_*``/``SYFT_*`` variable
that changes what they see, no trivy.yaml option that hides findings — then a
:class:`GateContext` holds the DB, the policy, the waivers and the scan cache every
verdict is made with.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from dcforge.core import policy, scan_cache, toolpins
from dcforge.core.errors import ConfigError, DcforgeError, GateBlocked, ToolError
from dcforge.core.hashing import file_sha256
from dcforge.core.permfile import read_yaml
from dcforge.core.scan_cache import ScanCache
from dcforge.core.settings import Settings
from dcforge.core.verdict import trivy_config_path, waivers_path
from dcforge.core.waivers import Waiver, load_waivers
from dcforge.infra import log, toolchain
from dcforge.infra.runner import Runner
from dcforge.infra.tools import syft, trivy
from dcforge.infra.tools.registry import Registry
from dcforge.infra.vulndb import TrivyDb, prepare_db


@dataclass(frozen=True)
class GateContext:
    """What every permutation's verdict is made with."""

    db: TrivyDb
    rules: policy.Policy
    waivers: tuple[Waiver, ...]
    reports_dir: Path
    today: dt.date
    cache: ScanCache | None = None  # Trivy reports reused by image digest, DB, policy, Trivy
    now: dt.datetime | None = None  # when the verdict is made: the VEX documents' timestamp
    publisher: str = ""  # the registry the images go to: the VEX documents' author
    sboms: ScanCache | None = None  # SBOMs reused by image digest and syft alone, across DBs


def check_trivy_config(settings: Settings, pol: policy.Policy) -> Path | None:
    """trivy.yaml, refused when it holds an option that could hide findings."""
    path = trivy_config_path(settings)
    if not path.is_file():
        return None
    problems = policy.trivy_config_problems(read_yaml(path), pol.blocking)
    if problems:
        raise ConfigError(f"{path}: {'; '.join(problems)}")
    return path


def check_scanner_env(env: Mapping[str, str]) -> None:
    """TRIVY_*/SYFT_* variables can change what is scanned; only credentials may be set."""
    allowed = trivy.ALLOWED_ENV | syft.ALLOWED_ENV
    bad = sorted(k for k in env if k.startswith(("TRIVY_", "SYFT_")) and k not in allowed)
    if bad:
        raise ConfigError(
            f"environment: {', '.join(bad)} would change what Trivy/syft scan or report — unset "
            "it; scanner options that matter are dcforge policy settings ([tool.dcforge]), "
            "recorded in the verdict"
        )


def check_tools(
    runner: Runner, names: Sequence[str], seen: Path | None = None
) -> dict[str, toolchain.Tool]:
    """The pinned tools (checked side by side; ``seen``: what earlier runs found, see
    :func:`toolchain.check`), or GateBlocked naming what was found and what is pinned."""
    pinned = toolpins.pins()
    try:
        with ThreadPoolExecutor(len(names) or 1) as pool:
            found = pool.map(lambda n: toolchain.check(runner, n, pinned, seen=seen), names)
            return dict(zip(names, found, strict=True))
    except ToolError as err:
        raise GateBlocked(f"the gate cannot vouch for its tools: {err}") from None


def gate_context(
    settings: Settings,
    reg: Registry,
    tmp: Path,
    now: dt.datetime,
    tools: Mapping[str, toolchain.Tool] | None = None,
) -> GateContext:
    """The policy, today's waivers and the DB (its ``problem`` for the caller to report:
    once, before anything is scanned); with ``tools``, the report cache for this DB, policy,
    trivy.yaml and Trivy, and (with syft among them) the SBOM cache."""
    pol = settings.gate_policy
    waivers = load_waivers(waivers_path(settings), max_days=pol.max_waiver_days, today=now.date())
    check_trivy_config(settings, pol)
    reports_dir = settings.dist_dir / "reports"
    reports_dir.mkdir(parents=True, exist_ok=True)
    with log.group("vulnerability DB"):
        db = prepare_db(settings, reg, tmp, now)
    if not db.problem:
        sample = " (SAMPLE DATA)" * db.sample
        log.info(f"Trivy DB {db.repository} {db.digest[:19]}, updated {db.updated_at}{sample}")
    cache = None
    if tools is not None and "trivy" in tools and not db.problem:
        config, trivy_tool = trivy_config_path(settings), tools["trivy"]
        cache = ScanCache(
            settings.state_root / "scan-cache",
            scan_cache.salt(
                {
                    "db": db.digest,
                    "policy": pol.to_json(),
                    "trivy_config": file_sha256(config) if config.is_file() else "",
                    "trivy": [trivy_tool.version, trivy_tool.sha256],
                }
            ),
        )
    sboms = None
    if tools is not None and "syft" in tools:
        syft_tool = tools["syft"]
        sboms = ScanCache(
            settings.state_root / "sbom-cache",
            scan_cache.salt({"sbom": [syft_tool.version, syft_tool.sha256], "how": syft.RECIPE}),
            scan_cache.SBOM_SUFFIXES,
        )
    return GateContext(
        db, pol, tuple(waivers), reports_dir, now.date(), cache, now, settings.registry,
        sboms=sboms,
    )  # fmt: skip


def sbom(
    stem: str,
    problems: list[str],
    make: Callable[[Path, Path], dict[str, Any]],
    gctx: GateContext,
    digest: str,
    platform: str,
) -> dict[str, Any] | None:
    """The SBOMs of the image ``digest`` (``platform``: what its config says, "" when not
    read): reused when syft made them for this digest before (the SBOM cache: the DB,
    policy and Trivy do not change an SBOM), else made and kept."""
    sboms = gctx.sboms
    if sboms is not None:
        doc = sboms.sbom(digest, stem, gctx.reports_dir)
        if doc is not None:
            found = len(syft.package_names(doc))
            log.step(stem, f"SBOM reused ({digest[:19]}, same image and syft): {found} packages")
            return doc
    try:
        doc = make(gctx.reports_dir / f"{stem}.spdx.json", gctx.reports_dir / f"{stem}.cdx.json")
    except DcforgeError as err:
        problems.append(f"SBOM generation failed: {err}")
        return None
    log.step(stem, f"SBOM: {len(syft.package_names(doc))} packages")
    if sboms is not None:
        sboms.put(digest, stem, gctx.reports_dir, platform)
    return doc


def reused(gctx: GateContext, digest: str, stem: str) -> scan_cache.Hit | None:
    """Trivy's report (this DB, policy, config and Trivy) and syft's SBOMs (this syft) of
    the image ``digest``, made before — by a gate or a rescan — and copied to
    ``reports_dir/<stem>.*``; None when either is missing or altered."""
    if gctx.cache is None or gctx.sboms is None:
        return None
    hit = gctx.cache.report(digest, stem, gctx.reports_dir)
    if hit is None:
        return None
    doc = gctx.sboms.sbom(digest, stem, gctx.reports_dir)
    return None if doc is None else replace(hit, sbom=doc)
