"""check_publishable: a verdict binds the manifest, each tarball, the registry and the policy,
and is still valid when publish runs."""

from __future__ import annotations

import copy
import datetime as dt
import json
from pathlib import Path

import pytest

from dcforge.core import manifest as mf
from dcforge.core import settings, toolpins
from dcforge.core import verdict as gate
from dcforge.core.errors import PublishRefused
from dcforge.core.hashing import file_sha256
from tests.unit.test_manifest import GOOD


def setup(tmp_path: Path) -> tuple[settings.Settings, mf.Manifest, Path]:
    conf = settings.load(tmp_path, {})
    dist = conf.dist_dir
    dist.mkdir()
    m = mf.parse(copy.deepcopy(GOOD), "m")
    mf.write(dist / "manifest.json", m)
    e = m.permutations[0]
    pins = toolpins.pins()
    doc = {
        "schema_version": gate.GATE_SCHEMA_VERSION,
        "passed": True,
        "registry": conf.registry,
        "sample_db": False,
        "db_updated_at": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "tools": {name: {"version": pins[name]} for name in ("trivy", "syft")},
        "manifest_sha256": file_sha256(dist / "manifest.json"),
        "policy": gate.policy_json(conf),
        "permutations": [
            {
                "name": e.name,
                "passed": True,
                "tarball_sha256": e.tarball_sha256,
                "image_digest": e.image_digest,
                "platforms": [
                    {"platform": "linux/amd64", "digest": e.image_digest, "passed": True}
                ],
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
        ({"policy": {"blocking_severities": ["CRITICAL"]}}, "policy, waivers.yaml or trivy"),
        ({"registry": "localhost:5000/elsewhere"}, "made for 'localhost:5000/elsewhere'"),
        (
            {"tools": {"trivy": {"version": "0.50.0"}, "syft": {"version": "1.18.1"}}},
            "trivy 0.50.0",
        ),
        ({"tools": {}}, "trivy \\(unrecorded\\)"),
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


@pytest.mark.parametrize(
    ("platforms", "expected"),
    [
        (None, "no passing gate verdict for its linux/amd64 image"),
        ([], "no passing gate verdict for its linux/amd64 image"),
        ([{"platform": "linux/arm64", "digest": "D", "passed": True}], "does not build"),
        ([{"platform": "linux/amd64", "digest": "D", "passed": False}], "linux/amd64"),
        ([{"platform": "linux/amd64", "digest": "sha256:" + "0" * 64, "passed": True}], "amd64"),
        (
            [
                {"platform": "linux/amd64", "digest": "D", "passed": False},
                {"platform": "linux/amd64", "digest": "D", "passed": True},
            ],
            "a platform twice",
        ),
        (
            [
                {"platform": "linux/amd64", "digest": "D", "passed": True},
                {"platform": "linux/s390x", "digest": "D", "passed": True},
            ],
            "one the manifest does not build",
        ),
    ],
)
def test_every_platform_image_needs_its_own_passing_verdict(
    tmp_path: Path, platforms: list[dict[str, object]] | None, expected: str
) -> None:
    """A verdict that passed the permutation but says nothing (or no pass) for one of its
    platform images — an older gate, or an edited gate.json — never publishes it."""
    conf, m, dist = setup(tmp_path)
    doc = json.loads((dist / "gate.json").read_text())
    digest = m.permutations[0].image_digest
    for p in platforms or []:
        p["digest"] = digest if p["digest"] == "D" else p["digest"]
    if platforms is None:
        del doc["permutations"][0]["platforms"]
    else:
        doc["permutations"][0]["platforms"] = platforms
    (dist / "gate.json").write_text(json.dumps(doc))
    with pytest.raises(PublishRefused, match=expected):
        gate.check_publishable(conf, m, dist / "manifest.json")


def test_missing_verdict_and_changed_waivers(tmp_path: Path) -> None:
    conf, m, dist = setup(tmp_path)
    (tmp_path / "waivers.yaml").write_text("waivers: []\n")
    with pytest.raises(PublishRefused, match=r"policy, waivers\.yaml or trivy\.yaml changed"):
        gate.check_publishable(conf, m, dist / "manifest.json")
    (dist / "gate.json").unlink()
    with pytest.raises(PublishRefused, match="no readable gate verdict"):
        gate.check_publishable(conf, m, dist / "manifest.json")


def test_a_changed_trivy_yaml_is_refused(tmp_path: Path) -> None:
    conf, m, dist = setup(tmp_path)
    (tmp_path / "trivy.yaml").write_text("timeout: 5m\n")
    with pytest.raises(PublishRefused, match=r"trivy\.yaml changed"):
        gate.check_publishable(conf, m, dist / "manifest.json")


@pytest.mark.parametrize("sample", [True, None])
def test_a_sample_verdict_never_publishes_beyond_loopback(
    tmp_path: Path, sample: bool | None
) -> None:
    remote = "registry.example.invalid:5000/dcforge"
    conf = settings.load(tmp_path, {"DCFORGE_REGISTRY": remote})
    _, m, dist = setup(tmp_path)
    edit_gate(dist, registry=remote, sample_db=sample, policy=gate.policy_json(conf))
    with pytest.raises(PublishRefused, match="SAMPLE vulnerability data"):
        gate.check_publishable(conf, m, dist / "manifest.json")
    edit_gate(dist, sample_db=False)
    assert gate.check_publishable(conf, m, dist / "manifest.json")["passed"]


def test_a_stale_verdict_or_an_expired_waiver_is_refused(tmp_path: Path) -> None:
    conf, m, dist = setup(tmp_path)
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=30)
    with pytest.raises(PublishRefused, match="verdict is stale: the Trivy DB is"):
        gate.check_publishable(conf, m, dist / "manifest.json", now=later)
    doc = json.loads((dist / "gate.json").read_text())
    doc["permutations"][0]["waived"] = [
        {"id": "CVE-2099-0001", "waiver": {"expires": dt.date.today().isoformat()}}
    ]
    (dist / "gate.json").write_text(json.dumps(doc))
    assert gate.check_publishable(conf, m, dist / "manifest.json")["passed"]
    tomorrow = dt.datetime.now(dt.UTC) + dt.timedelta(days=1)
    with pytest.raises(PublishRefused, match="waiver for CVE-2099-0001 it passed with expired"):
        gate.check_publishable(conf, m, dist / "manifest.json", now=tomorrow)


def test_verdicts_that_are_not_a_list_are_refused(tmp_path: Path) -> None:
    conf, m, dist = setup(tmp_path)
    edit_gate(dist, permutations={"tiny-one": True})
    with pytest.raises(PublishRefused, match="no per-permutation verdicts"):
        gate.check_publishable(conf, m, dist / "manifest.json")


def _with_vex(dist: Path, m: mf.Manifest, body: bytes) -> Path:
    """The gate's VEX document of the manifest's image, recorded in gate.json."""
    e = m.permutations[0]
    doc_path = dist / "reports" / f"{e.report_stem('linux/amd64')}.vex.json"
    doc_path.parent.mkdir(exist_ok=True)
    doc_path.write_bytes(body)
    doc = json.loads((dist / "gate.json").read_text())
    doc["permutations"][0]["platforms"][0]["vex"] = {
        "file": doc_path.name,
        "sha256": file_sha256(doc_path),
    }
    (dist / "gate.json").write_text(json.dumps(doc))
    return doc_path


def test_publish_attests_the_vex_document_the_gate_recorded_and_no_other(tmp_path: Path) -> None:
    conf, m, dist = setup(tmp_path)
    doc_path = _with_vex(dist, m, b'{"statements": []}\n')
    gate_doc = json.loads((dist / "gate.json").read_text())
    assert gate.vex_files(conf, m, gate_doc) == {m.permutations[0].image_digest: doc_path}

    doc_path.write_bytes(b'{"statements": ["edited after the gate"]}\n')
    with pytest.raises(PublishRefused, match=r"not the VEX document the gate recorded"):
        gate.vex_files(conf, m, gate_doc)
    doc_path.unlink()
    with pytest.raises(PublishRefused, match=r"re-run the gate; nothing was pushed"):
        gate.vex_files(conf, m, gate_doc)


def test_a_vex_recorded_for_another_image_is_not_attested(tmp_path: Path) -> None:
    conf, m, dist = setup(tmp_path)
    _with_vex(dist, m, b"{}\n")
    gate_doc = json.loads((dist / "gate.json").read_text())
    gate_doc["permutations"][0]["platforms"][0]["digest"] = "sha256:" + "f" * 64
    assert gate.vex_files(conf, m, gate_doc) == {}
