"""The benchmark's report: medians of repeated runs, the table, the plot.

A ratio is the median of the runs' own ratios (each run's scenario against the baseline
measured in that same run), shown with its spread (lowest to highest); seconds are medians.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
from pathlib import Path
from typing import Any


def median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One result from repeated runs: each number the median of its runs, the rest the
    first run's; the runs themselves under ``runs`` (their ratios are taken from there)."""
    merged = _medians(runs)
    merged["runs"] = runs
    return merged


def _medians(runs: list[dict[str, Any]]) -> dict[str, Any]:
    merged: dict[str, Any] = dict(runs[0])
    for key in runs[0]:
        values = [r.get(key) for r in runs]
        if len(set(map(repr, values))) == 1:
            continue  # the same in every run (N, a count): as it was, an int stays an int
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            merged[key] = statistics.median(values)  # type: ignore[type-var]
        elif all(isinstance(v, bool) for v in values):
            merged[key] = all(values)
        elif all(isinstance(v, dict) for v in values):
            merged[key] = _medians(values)  # type: ignore[arg-type]
    return merged


def ratio(result: dict[str, Any], ours: str, base: str) -> tuple[float, float, float]:
    """(median, lowest, highest) of the runs' ratios ``ours / base``."""
    runs = result.get("runs") or [result]
    ratios = [r[ours] / r[base] if r[base] else float("nan") for r in runs]
    return statistics.median(ratios), min(ratios), max(ratios)


TIMES = "\N{MULTIPLICATION SIGN}"

SCENARIOS = [
    ("cold build", "cold_dcforge", "cold_bake", "docker buildx bake (cold)", 1.10),
    ("no-change rebuild", "nochange_dcforge", "nochange_bake_warm", "bake, warm cache", 0.10),
    ("one changed of N", "onechanged_dcforge", "onechanged_bake_warm", "bake, warm cache", None),
    ("gate N", "gate_dcforge", "gate_script", "trivy + syft script", 0.6),
    ("re-gate unchanged", "regate_dcforge", "gate_dcforge", "first gate", 0.1),
    ("publish N", "publish_dcforge", "publish_same_work_script", "push+sign+2 attest script", 0.5),
    ("publish N (old baseline)", "publish_dcforge", "publish_plain_script", "load+push+sign", 0.5),
    ("re-publish unchanged", "republish_dcforge", "publish_dcforge", "first publish", 0.10),
    ("pipeline N", "pipeline_dcforge", "pipeline_script", "bake+gate+publish scripts", 0.6),
    ("rollback N", "rollback_dcforge", "rebuild_gate_publish", "rebuild+gate+publish", 0.03),
]
# A target that differs at one size: publish of 1 need only match the script (1.0x).
SIZE_TARGETS = {("publish N", 1): 1.0}


def _row(cells: list[Any]) -> str:
    return "| " + " | ".join(map(str, cells)) + " |"


def _verdict(ratio: float, target: float | None) -> str:
    if target is None:
        return "—"
    return f"≤ {target:.2f}{TIMES} " + ("met" if ratio <= target else "**missed**")


def _ratio_cell(result: dict[str, Any], ours: str, base: str) -> tuple[float, str]:
    """The median ratio, and its cell: ``0.34x (0.30 to 0.41)`` (x: the sign) over repeated runs."""
    med, low, high = ratio(result, ours, base)
    runs = len(result.get("runs") or [result])
    spread = f" ({low:.2f} to {high:.2f})" if runs > 1 else ""
    return med, f"{med:.2f}{TIMES}{spread}"


def _scenario_rows(results: list[dict[str, Any]]) -> list[str]:
    lines = []
    for name, ours, base, label, target in SCENARIOS:
        for r in results:
            med, cell = _ratio_cell(r, ours, base)
            tgt = SIZE_TARGETS.get((name, r["n"]), target)
            cells = [name, r["n"], f"{r[ours]:.2f}", f"{r[ours] / r['n']:.2f}", label]
            lines.append(_row([*cells, f"{r[base]:.2f}", cell, _verdict(med, tgt)]))
    for r in results:
        uploaded = max(run["republish_uploaded_bytes"] for run in r.get("runs") or [r])
        lines.append(_row(["re-publish bytes uploaded", r["n"], f"{uploaded} B", "—", "—", "—",
                           "—", "0 B " + ("met" if uploaded == 0 else "**missed**")]))  # fmt: skip
    return lines


def _once_rows(extras: dict[str, Any]) -> list[str]:
    lines = []
    planning = extras.get("planning_1000_s")
    if planning is not None:
        met = "< 1 s " + ("met" if planning < 1 else "**missed**")
        lines.append(_row(["planning 1,000 permutations", 1000, f"{planning:.3f}", "—", "—",
                           "—", "—", met]))  # fmt: skip
    two = extras.get("two_platform_cold_build")
    if two:
        med, cell = _ratio_cell(two, "dcforge", "bake")
        cells = ["cold build, linux/amd64 + linux/arm64 (emulated)", 1, f"{two['dcforge']:.2f}"]
        cells += ["—", "docker buildx bake (cold)", f"{two['bake']:.2f}", cell]
        lines.append(_row([*cells, _verdict(med, 1.10)]))
    lines += _scale_rows(extras.get("scale"))
    return lines + _reproduce_rows(extras.get("reproduce")) + _cve_rows(extras.get("cve_clock"))


ROLLBACK_LIMIT_S = 30  # a verified rollback of 1,000 tiny images


def _scale_rows(sc: dict[str, Any] | None) -> list[str]:
    if not sc:
        return []
    n = sc["n"]
    med, cell = _ratio_cell(sc, "publish_dcforge", "publish_same_work_script")
    label = f"push+sign+2 attest script ({sc.get('script_sample', n)} timed, scaled to N)"
    lines = [_row(["publish N (tiny images)", n, f"{sc['publish_dcforge']:.2f}",
                   f"{sc['publish_dcforge'] / n:.3f}", label,
                   f"{sc['publish_same_work_script']:.2f}", cell, _verdict(med, 0.5)])]  # fmt: skip
    took = sc.get("verified_rollback_dcforge", sc["rollback_dcforge"])
    ok = took < ROLLBACK_LIMIT_S and sc["rollback_verified"]
    lines.append(_row(["rollback N (tiny images) + verify", n, f"{took:.2f}", f"{took / n:.3f}",
                       "—", "—", "verified" if sc["rollback_verified"] else "**NOT verified**",
                       f"< {ROLLBACK_LIMIT_S} s " + ("met" if ok else "**missed**")]))  # fmt: skip
    return lines


PROFILED = ("trivy", "syft", "docker", "skopeo", "oras")


def _one_table(prof: dict[str, Any] | None) -> list[str]:
    """Where a pipeline of 1 spends its time (bench.profile_one)."""
    if not prof:
        return []
    start = f"`python -m dcforge --version` alone: {prof['startup_s']:.2f} s"
    lines = ["", f"Where a pipeline of 1 spends its time (one cold run; {start}):", ""]
    heads = " | ".join(f"{t} Σ (calls)" for t in PROFILED)
    lines.append(f"| step | wall (s) | {heads} | the rest: dcforge, cosign (s) |")
    lines.append("|---" * (len(PROFILED) + 3) + "|")
    for step in ("build", "gate", "publish"):
        got = prof.get(step)
        if not got:
            continue
        cells = [f"{got['tools'].get(t, 0):.2f} ({got['calls'].get(t, 0)})" for t in PROFILED]
        rest = got["wall"] - sum(got["tools"].values())
        lines.append(_row([step, f"{got['wall']:.2f}", *cells, f"{max(rest, 0):.2f}"]))
    return lines


def _stage_table(sc: dict[str, Any] | None, smaller: list[dict[str, Any]]) -> list[str]:
    """Seconds per stage at the scale, and per permutation at each N run (a stage that
    grows faster than N shows as a per-permutation figure that grows with N)."""
    if not sc or not sc.get("stages"):
        return []
    points = [*smaller, sc]
    n = sc["n"]
    lines = ["", f"Every stage at N = {n} tiny permutations (medians):", ""]
    per = " | ".join(f"ms / perm. at N = {p['n']}" for p in points)
    lines += [f"| stage | seconds | {per} |", "|---" * (len(points) + 2) + "|"]
    for stage, secs in sc["stages"].items():
        cells = [f"{1000 * p['stages'].get(stage, float('nan')) / p['n']:.1f}" for p in points]
        lines.append(_row([stage.replace("_", " "), f"{secs:.2f}", *cells]))
    return lines


CVE_STEPS = ("rescan", "refresh_build", "gate", "publish", "rescan_clean")


def _cve_rows(clock: dict[str, Any] | None) -> list[str]:
    """The CVE clock: from the fix in the mirror to the new release rescanned clean."""
    if not clock:
        return []
    med, cell = _ratio_cell(clock, "clock", "cold_bake_one")
    split = ", ".join(f"{s.replace('_', ' ')} {clock[s]:.1f}" for s in CVE_STEPS)
    lines = [_row([f"CVE clock, 1 affected of N ({split})", clock["n"], f"{clock['clock']:.2f}",
                   "—", "docker buildx bake of that one (cold)",
                   f"{clock['cold_bake_one']:.2f}", cell, _verdict(med, 1.5)])]  # fmt: skip
    script = clock.get("script")
    if script and "clock_script" in clock:
        med, cell = _ratio_cell(clock, "clock", "clock_script")
        theirs = ", ".join(f"{s.replace('_', ' ')} {script[s]:.1f}" for s in CVE_STEPS)
        lines.append(_row(["CVE clock against the same work as a script", clock["n"],
                           f"{clock['clock']:.2f}", "—", f"sequential script ({theirs})",
                           f"{clock['clock_script']:.2f}", cell, _verdict(med, 1.0)]))  # fmt: skip
    return lines


def _reproduce_rows(rep: dict[str, Any] | None) -> list[str]:
    if not rep:
        return []
    med, cell = _ratio_cell(rep, "dcforge", "two_cold_bakes")
    lines = [_row([f"reproduce N: {rep['share_identical']:.0%} of {rep['images']} "
                   "images identical", rep["n"], f"{rep['dcforge']:.2f}",
                   f"{rep['dcforge'] / rep['n']:.2f}", "2 cold docker buildx bake",
                   f"{rep['two_cold_bakes']:.2f}", cell, _verdict(med, 1.25)])]  # fmt: skip
    own = rep.get("shipped")
    if own:
        lines.append(_row([f"reproduce the shipped permutations: {own['share_identical']:.0%}"
                           f" of {own['images']} images identical", own["images"],
                           f"{own['seconds']:.2f}", "—", "—", "—", "—",
                           "100% " + ("met" if own["share_identical"] == 1 else
                                      "**missed**")]))  # fmt: skip
    return lines


def machine() -> str:
    """The machine a run measured, for the report."""
    return (
        f"{platform.node()}: {os.cpu_count()} cores, {platform.platform()}, "
        f"Python {platform.python_version()}"
    )


def report(
    results: list[dict[str, Any]],
    extras: dict[str, Any],
    out: Path,
    elapsed: float,
    layer_mb: int,
    machine: str,
) -> None:
    out.mkdir(parents=True, exist_ok=True)
    data = {"machine": machine, "layer_mb": layer_mb, "elapsed_s": elapsed, "sizes": results}
    data.update(extras)
    (out / "results.json").write_text(json.dumps(data, indent=2))
    (out / "results.md").write_text("\n".join(tables(data)) + "\n")
    _plot(results, machine, out, layer_mb)
    _plot_stages(extras.get("scale"), machine, out)
    print((out / "results.md").read_text())


def tables(data: dict[str, Any]) -> list[str]:
    """results.md, and the docs' benchmark table, from what results.json holds."""
    results = data["sizes"]
    runs = len(results[0].get("runs") or [1]) if results else 1
    sc = data.get("scale")
    if sc and not results:
        runs = len(sc.get("runs") or [1])
    lines = [
        f"Machine: {data['machine']}. Each permutation carries a {data['layer_mb']} MB "
        f"incompressible layer (the scale's: a few KB). Seconds are medians of {runs} run(s); "
        "a ratio is the median of the runs' ratios, with their spread (lowest to highest).",
        "",
        "| scenario | N | dcforge (s) | s / perm. | baseline | baseline (s) | ratio | target |",
        "|---|---|---|---|---|---|---|---|",
        *_scenario_rows(results),
        *_once_rows(data),
    ]
    lines += _stage_table(sc, data.get("scale_smaller") or [])
    lines += _one_table(data.get("profile_one"))
    lines += _profile_table([*results, *([sc] if sc else [])])
    lines.append("")
    lines.append(
        "Σ: time in that step summed over the permutations (phase 1 runs several at once). "
        f"Total benchmark time: {data['elapsed_s'] / 60:.1f} min."
    )
    return lines


BEGIN, END = "<!-- bench-table:begin -->", "<!-- bench-table:end -->"


def docs_with_table(doc: str, data: dict[str, Any]) -> str:
    """``doc`` with the text between the table markers generated from ``data``."""
    head, found, rest = doc.partition(BEGIN)
    _, found_end, tail = rest.partition(END)
    if not found or not found_end:
        raise ValueError(f"no {BEGIN} … {END} block to fill")
    return f"{head}{BEGIN}\n" + "\n".join(tables(data)) + f"\n{END}{tail}"


def _profile_table(runs: list[dict[str, Any]]) -> list[str]:
    lines = ["", "Where publish time goes (dist/reports/publish-profile.json of each run):", ""]
    lines.append(
        "| N | checks (s) | phase 1 wall (s) | record (s) | phase 2 wall (s) "
        "| push Σ | sign (all images) | predicates Σ | attest (SBOM + provenance) Σ |"
    )
    lines.append("|---|---|---|---|---|---|---|---|---|")
    for r in runs:
        prof = r.get("publish_profile") or {}
        ph, st_ = prof.get("phases_s", {}), prof.get("steps_summed_s", {})
        cells = [r["n"], *(f"{v:.2f}" for v in ph.values())]
        cells += [f"{st_.get(k, 0):.2f}" for k in ("push", "sign", "provenance", "attest")]
        lines.append(_row(cells))
    return lines


def _plot(results: list[dict[str, Any]], machine: str, out: Path, layer_mb: int) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib missing: no plot", file=sys.stderr)
        return
    if not results:
        return
    fig, axes = plt.subplots(2, 5, figsize=(22, 8))
    for ax, (name, ours, base, label, _) in zip(axes.flat, SCENARIOS, strict=True):
        ns = [r["n"] for r in results]
        ax.plot(ns, [r[ours] / r["n"] for r in results], "o-", label="dcforge")
        ax.plot(ns, [r[base] / r["n"] for r in results], "s--", label=label)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("N permutations")
        ax.set_ylabel("seconds per permutation")
        ax.set_xscale("log", base=2)
        ax.legend(fontsize=7)
    fig.suptitle(f"dcforge benchmarks ({layer_mb} MB layer each) — {machine}", fontsize=9)
    fig.tight_layout()
    fig.savefig(out / "bench.png", dpi=100)


def _plot_stages(sc: dict[str, Any] | None, machine: str, out: Path) -> None:
    """Milliseconds per permutation of every stage at the scale (scale.png)."""
    if not sc or not sc.get("stages"):
        return
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    names = list(sc["stages"])
    fig, ax = plt.subplots(figsize=(10, 4))
    ax.bar(names, [1000 * sc["stages"][k] / sc["n"] for k in names])
    ax.set_ylabel("ms per permutation")
    ax.set_title(f"every stage at N = {sc['n']} tiny permutations — {machine}", fontsize=9)
    ax.tick_params(axis="x", labelrotation=30, labelsize=8)
    fig.tight_layout()
    fig.savefig(out / "scale.png", dpi=100)


def main() -> int:
    """``bench_report.py RESULTS DOC``: regenerate DOC's benchmark table from RESULTS."""
    results, doc = Path(sys.argv[1]), Path(sys.argv[2])
    doc.write_text(docs_with_table(doc.read_text(), json.loads(results.read_text())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
