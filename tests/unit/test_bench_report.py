"""The benchmark's arithmetic: repeated runs become medians, and a ratio is the median of
each run's own ratio (scenario and baseline from the same run), shown with its spread."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

from bench_report import BEGIN, END, docs_with_table, median_run, ratio, report, tables


def _run(ours: float, base: float, **extra: object) -> dict[str, object]:
    return {"n": 4, "publish_dcforge": ours, "publish_same_work_script": base, **extra}


def test_a_ratio_is_the_median_of_the_runs_ratios_with_its_spread() -> None:
    # Ratios 0.5, 0.2, 0.4: median 0.4. The ratio of the medians (3/10 = 0.3) is not it:
    # a run's scenario is compared with the baseline measured beside it.
    runs = [_run(5, 10), _run(2, 10), _run(3, 7.5)]
    merged = median_run(runs)
    assert merged["publish_dcforge"] == 3 and merged["publish_same_work_script"] == 10
    assert merged["n"] == 4 and isinstance(merged["n"], int) and merged["runs"] == runs
    assert ratio(merged, "publish_dcforge", "publish_same_work_script") == (0.4, 0.2, 0.5)


def test_what_every_run_shares_stays_as_it_was() -> None:
    merged = median_run([_run(1, 2), _run(3, 2)])  # two runs: a median of two is a mean
    assert merged["n"] == 4 and isinstance(merged["n"], int)  # "| publish N | 4 |", not 4.0
    assert merged["publish_dcforge"] == 2.0


def test_flags_hold_only_if_every_run_held_and_a_single_run_has_no_spread() -> None:
    merged = median_run([_run(1, 2, verified=True), _run(1, 2, verified=False)])
    assert merged["verified"] is False
    assert ratio(_run(1, 4), "publish_dcforge", "publish_same_work_script") == (0.25, 0.25, 0.25)


def test_the_table_shows_the_median_and_the_spread(tmp_path: Path) -> None:
    keys = {
        "cold_dcforge": 1, "cold_bake": 1, "nochange_dcforge": 1, "nochange_bake_warm": 1,
        "onechanged_dcforge": 1, "onechanged_bake_warm": 1, "gate_dcforge": 1,
        "gate_script": 1, "regate_dcforge": 1, "publish_plain_script": 1,
        "republish_dcforge": 1, "pipeline_dcforge": 1, "pipeline_script": 1,
        "rollback_dcforge": 1, "rebuild_gate_publish": 1, "republish_uploaded_bytes": 0,
    }  # fmt: skip
    runs = [_run(5, 10, **keys), _run(2, 10, **keys), _run(3, 7.5, **keys)]
    extras = {"planning_1000_s": 0.5, "two_platform_cold_build": {"dcforge": 2, "bake": 2}}
    report([median_run(runs)], extras, tmp_path, 60.0, 50, "a machine")
    table = (tmp_path / "results.md").read_text()
    row = next(line for line in table.splitlines() if line.startswith("| publish N | 4"))
    assert "0.40\N{MULTIPLICATION SIGN} (0.20 to 0.50)" in row and "met" in row
    assert "medians of 3 run(s)" in table


def _scale(**stages: float) -> dict[str, object]:
    return {
        "n": 1000,
        "publish_dcforge": 100.0,
        "publish_same_work_script": 800.0,
        "script_sample": 64,
        "rollback_dcforge": stages.get("rollback", 10.0),
        "verified_rollback_dcforge": stages.get("rollback", 10.0) + stages.get("verify", 5.0),
        "rollback_verified": True,
        "stages": {"plan": 1.0, "build": 300.0, **stages},
    }


def test_the_scale_rows_give_every_stage_per_permutation(tmp_path: Path) -> None:
    data = {"machine": "m", "layer_mb": 50, "elapsed_s": 60.0, "sizes": []}
    data["scale"] = median_run([_scale(rollback=12.0, verify=9.0)])
    table = "\n".join(tables(data))
    assert "| publish N (tiny images) | 1000 | 100.00 | 0.100 |" in table
    assert "(64 timed, scaled to N)" in table and "0.12\N{MULTIPLICATION SIGN}" in table
    assert "| rollback N (tiny images) + verify | 1000 | 21.00 |" in table
    assert "< 30 s met" in table
    assert "| build | 300.00 | 300.0 |" in table  # ms per permutation
    slow = median_run([_scale(rollback=25.0, verify=9.0)])
    assert "< 30 s **missed**" in "\n".join(tables({**data, "scale": slow}))


def test_the_docs_table_is_rewritten_between_its_markers_only() -> None:
    data = {"machine": "m", "layer_mb": 50, "elapsed_s": 60.0, "sizes": [], "scale": _scale()}
    doc = f"intro\n{BEGIN}\nold table\n{END}\nafter\n"
    new = docs_with_table(doc, data)
    assert new.startswith(f"intro\n{BEGIN}\nMachine: m.") and new.endswith(f"{END}\nafter\n")
    assert "old table" not in new
    assert docs_with_table(new, data) == new
    with pytest.raises(ValueError, match="bench-table"):
        docs_with_table("no markers", data)


def test_the_docs_table_is_the_kept_results() -> None:
    """docs/benchmarks.md's table is what docs/bench-results.json generates: figures in
    the docs come from a run's output, never from a hand-kept table."""
    root = Path(__file__).resolve().parents[2]
    doc = (root / "docs/benchmarks.md").read_text()
    data = json.loads((root / "docs/bench-results.json").read_text())
    assert docs_with_table(doc, data) == doc


def _clock(clock: float, script: float) -> dict[str, object]:
    steps = ("rescan", "refresh_build", "gate", "publish", "rescan_clean")
    return {
        "n": 16, "clock": clock, "cold_bake_one": 5.0, "clock_script": script,
        **{s: clock / 5 for s in steps}, "script": {s: script / 5 for s in steps},
    }  # fmt: skip


def test_the_cve_clock_is_set_against_one_cold_bake_and_the_same_work_script() -> None:
    data = {"machine": "m", "layer_mb": 50, "elapsed_s": 60.0, "sizes": []}
    data["cve_clock"] = median_run([_clock(10.0, 20.0), _clock(12.0, 15.0), _clock(9.0, 18.0)])
    table = "\n".join(tables(data))
    cold = next(line for line in table.splitlines() if line.startswith("| CVE clock, 1"))
    assert "2.00\N{MULTIPLICATION SIGN} (1.80 to 2.40)" in cold and "**missed**" in cold
    same = next(line for line in table.splitlines() if "same work as a script" in line)
    # ratios 0.50, 0.80, 0.50: the median 0.50, not 10 / 18 (the ratio of the medians)
    assert "0.50\N{MULTIPLICATION SIGN} (0.50 to 0.80)" in same and "≤ 1.00" in same
    assert "met" in same and "rescan 3.6" in same  # the script's own split, medians
