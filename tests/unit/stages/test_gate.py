"""check_publishable: a verdict binds the manifest, each tarball and the policy."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from dcforge import manifest as mf
from dcforge import settings
from dcforge.errors import PublishRefused
from dcforge.hashing import file_sha256
from dcforge.stages import gate
from tests.unit.test_manifest import GOOD


def setup(tmp_path: Path) -> tuple[settings.Settings, mf.Manifest, Path]:
    conf = settings.load(tmp_path, {})
    dist = conf.dist_dir
    dist.mkdir()
    m = mf.parse(copy.deepcopy(GOOD), "m")
    mf.write(dist / "manifest.json", m)
    e = m.permutations[0]
    doc = {
        "schema_version": 1,
        "passed": True,
        "manifest_sha256": file_sha256(dist / "manifest.json"),
        "policy": gate.policy_json(conf),
        "permutations": [
            {
                "name": e.name,
                "passed": True,
                "tarball_sha256": e.tarball_sha256,
                "image_digest": e.image_digest,
            }
        ],
    }
    (dist / "gate.json").write_text(json.dumps(doc))
    return conf, m, dist


def test_a_matching_verdict_is_publishable(tmp_path: Path) -> None:
    conf, m, dist = setup(tmp_path)
    assert gate.check_publishable(conf, m, dist / "manifest.json")["passed"]


def edit_gate(dist: Path, **changes: object) -> None:
    doc = json.loads((dist / "gate.json").read_text())
    doc.update(changes)
    (dist / "gate.json").write_text(json.dumps(doc))


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"passed": False}, "the gate blocked"),
        ({"schema_version": 9}, "not a gate verdict"),
        ({"manifest_sha256": "0" * 64}, "changed after it was gated"),
        ({"policy": {"blocking_severities": ["CRITICAL"]}}, "policy or waivers changed"),
        (
            {
                "permutations": [
                    {
                        "name": "tiny-one",
                        "passed": True,
                        "tarball_sha256": "f" * 64,
                        "image_digest": "sha256:" + "c" * 64,
                    }
                ]
            },
            "for another tarball",
        ),
        ({"permutations": []}, "no passing gate verdict"),
    ],
)
def test_anything_stale_is_refused(
    tmp_path: Path, change: dict[str, object], expected: str
) -> None:
    conf, m, dist = setup(tmp_path)
    edit_gate(dist, **change)
    with pytest.raises(PublishRefused, match=expected):
        gate.check_publishable(conf, m, dist / "manifest.json")


def test_missing_verdict_and_changed_waivers(tmp_path: Path) -> None:
    conf, m, dist = setup(tmp_path)
    (tmp_path / "waivers.yaml").write_text("waivers: []\n")
    with pytest.raises(PublishRefused, match="policy or waivers changed"):
        gate.check_publishable(conf, m, dist / "manifest.json")
    (dist / "gate.json").unlink()
    with pytest.raises(PublishRefused, match="no readable gate verdict"):
        gate.check_publishable(conf, m, dist / "manifest.json")
