"""Collects `reliability`-marked results into dist/reports/reliability.md when asked
(DCFORGE_RELIABILITY_REPORT=path, as `nox -s reliability` does)."""

from __future__ import annotations

import os
from collections.abc import Generator
from pathlib import Path

import pytest

_RESULTS: dict[str, tuple[str, str, str]] = {}


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None]:
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    marker = item.get_closest_marker("reliability")
    if marker is None:
        return
    if report.when == "call" or (report.when == "setup" and report.outcome != "passed"):
        scenario = marker.kwargs.get("scenario", item.name)
        checks = marker.kwargs.get("checks", "")
        result = {"passed": "pass", "failed": "FAIL", "skipped": "skipped"}[report.outcome]
        previous = _RESULTS.get(item.nodeid)
        if previous is None or previous[2] == "pass":
            _RESULTS[item.nodeid] = (scenario, checks, result)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    target = os.environ.get("DCFORGE_RELIABILITY_REPORT")
    if not target or not _RESULTS:
        return
    by_scenario: dict[str, list[tuple[str, str, str]]] = {}
    for nodeid, (scenario, checks, result) in _RESULTS.items():
        by_scenario.setdefault(scenario, []).append((nodeid, checks, result))
    lines = [
        "# dcforge reliability report",
        "",
        "| scenario | result | what was checked | tests |",
        "|---|---|---|---|",
    ]
    for scenario, rows in sorted(by_scenario.items()):
        failed = [n for n, _, r in rows if r != "pass"]
        result = "pass" if not failed else f"FAIL ({len(failed)} of {len(rows)})"
        tests = sorted({n.split("::", 1)[-1].split("[", 1)[0] for n, _, _ in rows})
        cases = f" ({len(rows)} cases)" if len(rows) > 1 else ""
        names = ", ".join(f"`{name}`" for name in tests)
        lines.append(f"| {scenario} | {result} | {rows[0][1]}{cases} | {names} |")
    passed = sum(1 for rows in by_scenario.values() if all(r == "pass" for _, _, r in rows))
    lines += ["", f"{passed} of {len(by_scenario)} scenarios passed ({len(_RESULTS)} test cases)."]
    path = Path(target)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
