"""An OCI archive unpacks to plain files and folders, on every Python 3.11 (tarfile's "data"
filter came with 3.11.4); anything that could land outside the folder is refused."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from dcforge.core.files import extract_plain


def _tar(path: Path, *members: tuple[str, bytes | None, bytes]) -> Path:
    """(name, file content or None for a folder, type) members."""
    with tarfile.open(path, "w") as tar:
        for name, data, kind in members:
            info = tarfile.TarInfo(name)
            info.type = kind
            if kind in (tarfile.SYMTYPE, tarfile.LNKTYPE):
                info.linkname = "/etc/passwd"
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def test_an_oci_layout_unpacks(tmp_path: Path) -> None:
    archive = _tar(
        tmp_path / "a.tar",
        ("oci-layout", b"{}", tarfile.REGTYPE),
        ("blobs", None, tarfile.DIRTYPE),
        ("blobs/sha256/ab", b"blob", tarfile.REGTYPE),
        ("./index.json", b"[]", tarfile.REGTYPE),
    )
    out = tmp_path / "out"
    with tarfile.open(archive) as tar:
        extract_plain(tar, out)
    assert (out / "blobs/sha256/ab").read_bytes() == b"blob"
    assert (out / "index.json").read_bytes() == b"[]"


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("../escape", tarfile.REGTYPE),
        ("/abs/escape", tarfile.REGTYPE),
        ("blobs/../../escape", tarfile.REGTYPE),
        ("link", tarfile.SYMTYPE),
        ("hard", tarfile.LNKTYPE),
        ("fifo", tarfile.FIFOTYPE),
        ("dev", tarfile.CHRTYPE),
    ],
)
def test_anything_but_plain_files_inside_is_refused(tmp_path: Path, name: str, kind: bytes) -> None:
    data = b"x" if kind == tarfile.REGTYPE else None
    archive = _tar(tmp_path / "a.tar", (name, data, kind))
    with tarfile.open(archive) as tar, pytest.raises(tarfile.TarError):
        extract_plain(tar, tmp_path / "out" / "deep")
    assert not (tmp_path / "escape").exists() and not (tmp_path / "out/escape").exists()
