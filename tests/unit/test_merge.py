from __future__ import annotations

import copy
import hashlib
from pathlib import Path
from typing import Any

import pytest

from dcforge.core import manifest as mf
from dcforge.core import merge
from dcforge.core.errors import ManifestError
from tests.unit.test_manifest import GOOD


def part(root: Path, name: str, *, git_sha: str = "a" * 40, tags: list[str] | None = None) -> Path:
    d = root / name
    d.mkdir()
    data: dict[str, Any] = copy.deepcopy(GOOD)
    data["git_sha"] = git_sha
    e = data["permutations"][0]
    e["name"] = name
    e["tarball"] = f"{name}.tar"
    (d / e["tarball"]).write_bytes(name.encode())
    e["tarball_sha256"] = hashlib.sha256(name.encode()).hexdigest()
    e["tags"] = tags or [
        f"localhost:5000/dcforge/tiny:{name}-{git_sha}",
        f"localhost:5000/dcforge/tiny:{name}",
    ]
    mf.write(d / "manifest.json", mf.parse(data, "p"))
    return d


def test_merge_combines_parts_and_tarballs(tmp_path: Path) -> None:
    parts = [part(tmp_path, "one"), part(tmp_path, "two")]
    merged = merge.merge(parts, tmp_path / "dist")
    assert [e.name for e in merged.permutations] == ["one", "two"]
    assert (tmp_path / "dist/two.tar").read_bytes() == b"two"
    mf.verify_tarballs(mf.load(tmp_path / "dist/manifest.json"), tmp_path / "dist")


@pytest.mark.parametrize(
    ("second", "expected"),
    [
        ({"git_sha": "b" * 40}, "every part must come from the same commit"),
        ({"tags": ["localhost:5000/dcforge/tiny:one"]}, "claimed twice"),
    ],
)
def test_conflicting_parts_are_refused(
    tmp_path: Path, second: dict[str, Any], expected: str
) -> None:
    first = part(tmp_path, "one")
    other = part(tmp_path, "two", **second)
    with pytest.raises(ManifestError, match=expected):
        merge.merge([first, other], tmp_path / "dist")
    assert not (tmp_path / "dist/manifest.json").exists()


def test_duplicate_permutation_and_tampered_tarball(tmp_path: Path) -> None:
    one = part(tmp_path, "one")
    (tmp_path / "again").mkdir()
    for f in one.iterdir():
        (tmp_path / "again" / f.name).write_bytes(f.read_bytes())
    with pytest.raises(ManifestError, match="appears twice"):
        merge.merge([one, tmp_path / "again"], tmp_path / "dist")
    (one / "one.tar").write_bytes(b"tampered")
    with pytest.raises(ManifestError, match="changed after the build"):
        merge.merge([one], tmp_path / "dist")
    with pytest.raises(ManifestError, match="no partial manifests"):
        merge.merge([], tmp_path / "dist")
