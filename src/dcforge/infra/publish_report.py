"""What publish did, said: each permutation's outcome, where the time went
(``dist/reports/publish-profile.json``) and the summary table."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from rich.table import Table

from dcforge.core import manifest as mf
from dcforge.core.files import atomic_write_json
from dcforge.core.settings import Settings
from dcforge.infra import log


@dataclass
class Outcome:
    """What publish did (or found already done) for one permutation."""

    name: str
    digest: str
    steps: dict[str, str] = field(default_factory=dict)  # step → "done" | "already"
    seconds: dict[str, float] = field(default_factory=dict)  # step → time spent in it
    unsigned: list[str] = field(default_factory=list)  # its images to sign (ref@digest)
    to_verify: list[str] = field(default_factory=list)  # its images with a signature already
    signed: int = 0  # its images this publish signed


def profile(
    settings: Settings,
    outcomes: list[Outcome],
    phases: dict[str, float],
    workers: int,
    signed_in: float,
) -> None:
    """Where publish time went: wall time per phase, and time per step summed over the
    permutations (phase 1 runs ``workers`` of them at once; "sign" is the signing after
    all pushes plus, signed here, each permutation's signing, which runs while it is
    attested) — dist/reports/publish-profile.json."""
    steps: dict[str, float] = {"sign": signed_in}
    for o in outcomes:
        for step, spent in o.seconds.items():
            steps[step] = steps.get(step, 0.0) + spent
    doc = {
        "permutations": len(outcomes),
        "workers": workers,
        "phases_s": {k: round(v, 3) for k, v in phases.items()},
        "steps_summed_s": {k: round(v, 3) for k, v in steps.items()},
    }
    reports = settings.dist_dir / "reports"
    reports.mkdir(parents=True, exist_ok=True)
    atomic_write_json(reports / "publish-profile.json", doc)
    log.info(
        "publish time: "
        + ", ".join(f"{k} {v:.1f} s" for k, v in phases.items())
        + "; summed over permutations: "
        + ", ".join(f"{k} {v:.1f} s" for k, v in steps.items())
    )


def summary(manifest: mf.Manifest, outcomes: list[Outcome], gate_doc: dict[str, Any]) -> None:
    counts = {v["name"]: v.get("counts", {}) for v in gate_doc.get("permutations", [])}
    table = Table(
        title=f"published {manifest.git_sha[:12]}"
        + (" (SAMPLE vulnerability data)" if gate_doc.get("sample_db") else "")
    )
    for col in ("permutation", "digest", "vulnerabilities", "signed", "attested", "tags"):
        table.add_column(col)
    for o in outcomes:
        entry = manifest.entry(o.name)
        c = counts.get(o.name, {})
        vulns = ", ".join(f"{k} {v}" for k, v in sorted(c.items())) or "none found"
        table.add_row(
            o.name,
            o.digest[:19],
            vulns,
            o.steps.get("sign", ""),
            f"sbom {o.steps.get('sbom')}, slsa {o.steps.get('provenance')}"
            + (f", vex {o.steps['vex']}" if "vex" in o.steps else ""),
            ", ".join(entry.floating_tags) + " + immutable",
        )
    log.table(table)
