"""The gate with a DB it cannot use: no permutation is scanned, every verdict records the
DB's problem, and the error says it once — not once per permutation."""

from __future__ import annotations

import copy
import datetime as dt
import json
from pathlib import Path

import pytest

from dcforge.core import manifest as mf
from dcforge.core import settings
from dcforge.core.errors import GateBlocked
from dcforge.infra.context import Context
from dcforge.infra.runner import Runner
from dcforge.infra.scan_setup import GateContext
from dcforge.infra.toolchain import Tool
from dcforge.infra.tools import trivy
from dcforge.infra.vulndb import TrivyDb
from dcforge.stages import gate
from tests.unit.test_manifest import GOOD

PROBLEM = (
    "the Trivy DB could not be downloaded from mirror.example.invalid/x/trivy-db:2 (oras "
    "exited 1: … no such host) — the host name mirror.example.invalid does not resolve"
)
NOW = dt.datetime(2026, 11, 28, tzinfo=dt.UTC)


def two_permutations(dist: Path) -> mf.Manifest:
    doc = copy.deepcopy(GOOD)
    second = copy.deepcopy(doc["permutations"][0])
    second.update(name="tiny-two", tarball="tiny-two.tar")
    second["tags"] = [t.replace("one", "two") for t in second["tags"]]
    doc["permutations"].append(second)
    manifest = mf.parse(doc, "m")
    mf.write(dist / "manifest.json", manifest)
    return manifest


def test_an_unusable_db_is_reported_once_and_blocks_every_permutation(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    conf = settings.load(tmp_path, {})
    conf.dist_dir.mkdir()
    manifest = two_permutations(conf.dist_dir)
    db = TrivyDb(
        trivy.ScanOptions(tmp_path / "cache"),
        "mirror.example.invalid/x/trivy-db:2",
        "",
        "",
        False,
        PROBLEM,
    )
    gctx = GateContext(db, conf.gate_policy, (), conf.dist_dir / "reports", NOW.date())
    gctx.reports_dir.mkdir()
    tools = {name: Tool(name, "1.0", "1.0", f"/bin/{name}", "") for name in ("trivy", "syft")}
    ctx = Context(conf, Runner(), {})
    with pytest.raises(GateBlocked) as blocked:
        gate._judge(ctx, manifest, conf.dist_dir / "manifest.json", gctx, tools, NOW)
    assert str(blocked.value).count("could not be downloaded") == 1
    assert str(blocked.value).startswith(PROBLEM)
    assert "; no permutation was scanned (all 2 blocked" in str(blocked.value)
    assert "could not be downloaded" not in capsys.readouterr().err  # no line per permutation
    doc = json.loads((conf.dist_dir / "gate.json").read_text())
    assert doc["passed"] is False
    assert [v["name"] for v in doc["permutations"]] == ["tiny-one", "tiny-two"]
    assert all(not v["passed"] and PROBLEM in v["reasons"] for v in doc["permutations"])
