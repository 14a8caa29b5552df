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
    lines = [
        "# dcforge reliability report",
        "",
        "| scenario | result | what was checked | test |",
        "|---|---|---|---|",
    ]
    for nodeid, (scenario, checks, result) in sorted(_RESULTS.items(), key=lambda kv: kv[1][0]):
        lines.append(f"| {scenario} | {result} | {checks} | `{nodeid.split('::', 1)[-1]}` |")
    passed = sum(1 for r in _RESULTS.values() if r[2] == "pass")
    lines += ["", f"{passed} of {len(_RESULTS)} scenarios passed."]
    path = Path(target)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
