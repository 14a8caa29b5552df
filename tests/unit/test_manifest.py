from __future__ import annotations

import contextlib
import copy
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dcforge.core import manifest as mf
from dcforge.core.errors import ManifestError

SHA = "a" * 40
GOOD: dict[str, Any] = {
    "schema_version": 1,
    "git_sha": SHA,
    "created_at": "2026-11-28T00:00:00Z",
    "registry": "localhost:5000/dcforge",
    "permutations": [
        {
            "name": "tiny-one",
            "tarball": "tiny-one.tar",
            "tarball_sha256": "b" * 64,
            "image_digest": "sha256:" + "c" * 64,
            "tags": [
                f"localhost:5000/dcforge/tiny:tiny-one-{SHA}",
                "localhost:5000/dcforge/tiny:one",
            ],
            "base_image": {
                "ref": "localhost:5000/library/busybox:latest",
                "digest": "sha256:" + "d" * 64,
            },
            "input_hash": "sha256:" + "e" * 64,
            "platforms": ["linux/amd64"],
        }
    ],
}


def test_round_trip(tmp_path: Path) -> None:
    m = mf.parse(GOOD, "m")
    mf.write(tmp_path / "manifest.json", m)
    again = mf.load(tmp_path / "manifest.json")
    assert again.entry("tiny-one").image_digest == "sha256:" + "c" * 64
    assert (
        json.loads((tmp_path / "manifest.json").read_text())["permutations"][0]["name"]
        == "tiny-one"
    )


def test_the_source_date_epoch_round_trips_and_older_manifests_still_load(tmp_path: Path) -> None:
    """A manifest written before dcforge recorded the epoch (GOOD has none) still loads;
    a new one keeps it through write and load; a negative or non-integer one is refused."""
    assert mf.parse(GOOD, "old").source_date_epoch is None
    dated = mf.parse({**GOOD, "source_date_epoch": 1714564800}, "new")
    mf.write(tmp_path / "manifest.json", dated)
    assert json.loads((tmp_path / "manifest.json").read_text())["source_date_epoch"] == 1714564800
    assert mf.load(tmp_path / "manifest.json") == dated
    for bad in (-1, "1714564800", 1.5, True):
        with pytest.raises(ManifestError, match="source_date_epoch"):
            mf.parse({**GOOD, "source_date_epoch": bad}, "m")


@pytest.mark.reliability(
    scenario="manifest with malformed digests / traversal / absolute paths",
    checks="ManifestError naming the field",
)
@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        (("schema_version",), 2, "schema_version 2 is not supported"),
        (("git_sha",), "abc", "field 'git_sha'"),
        (("permutations", 0, "image_digest"), "sha256:xyz", "field 'permutations.0.image_digest'"),
        (("permutations", 0, "tarball"), "../etc/passwd.tar", "field 'permutations.0.tarball'"),
        (("permutations", 0, "tarball"), "/abs.tar", "field 'permutations.0.tarball'"),
        (("permutations", 0, "name"), "../x", "field 'permutations.0.name'"),
        (("permutations", 0, "tags"), ["not a tag"], "field 'permutations.0.tags.0'"),
    ],
)
def test_bad_fields_are_named(path: tuple[Any, ...], value: Any, expected: str) -> None:
    data = copy.deepcopy(GOOD)
    target = data
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    with pytest.raises(ManifestError, match=expected.replace(".", r"\.")):
        mf.parse(data, "m")


def test_duplicate_names_and_tags() -> None:
    data = copy.deepcopy(GOOD)
    data["permutations"].append(copy.deepcopy(data["permutations"][0]))
    with pytest.raises(ManifestError, match="appears twice"):
        mf.parse(data, "m")
    data["permutations"][1]["name"] = "tiny-two"
    data["permutations"][1]["tarball"] = "tiny-two.tar"
    with pytest.raises(ManifestError, match="claimed twice"):
        mf.parse(data, "m")


def test_load_reports_missing_and_malformed(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="not found"):
        mf.load(tmp_path / "manifest.json")
    (tmp_path / "manifest.json").write_text("{nope")
    with pytest.raises(ManifestError, match="not valid JSON"):
        mf.load(tmp_path / "manifest.json")


def test_verify_tarballs(tmp_path: Path) -> None:
    data = copy.deepcopy(GOOD)
    (tmp_path / "tiny-one.tar").write_bytes(b"payload")
    import hashlib

    data["permutations"][0]["tarball_sha256"] = hashlib.sha256(b"payload").hexdigest()
    m = mf.parse(data, "m")
    mf.verify_tarballs(m, tmp_path)
    (tmp_path / "tiny-one.tar").write_bytes(b"payloaX")
    with pytest.raises(ManifestError, match="changed after the build"):
        mf.verify_tarballs(m, tmp_path)
    (tmp_path / "tiny-one.tar").unlink()
    with pytest.raises(ManifestError, match="missing"):
        mf.verify_tarballs(m, tmp_path)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=20,
)


@pytest.mark.reliability(
    scenario="any JSON as a manifest (property-based)", checks="valid or ManifestError"
)
@settings(max_examples=200, deadline=None)
@given(json_values)
def test_any_json_is_a_manifest_or_a_clear_error(value: Any) -> None:
    try:
        mf.parse(value, "m")
    except ManifestError as err:
        assert str(err).startswith("m:")


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(sorted(GOOD["permutations"][0])), json_values)
def test_mutated_entries_never_crash(key: str, value: Any) -> None:
    data = copy.deepcopy(GOOD)
    data["permutations"][0][key] = value
    with contextlib.suppress(ManifestError):
        mf.parse(data, "m")
