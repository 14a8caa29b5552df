from __future__ import annotations

import struct
from pathlib import Path

from dcforge import trivydb


def test_meta_checksums_are_fnv1a_of_the_meta(tmp_path: Path) -> None:
    trivydb.write_db(tmp_path, [trivydb.Advisory("CVE-2099-0001", "zlib", "1:1.3.0-1")])
    data = (tmp_path / "trivy.db").read_bytes()
    for page in (0, 1):
        start = page * trivydb.PAGE_SIZE + trivydb.META_OFFSET
        meta = data[start : start + trivydb.META_CHECKSUM_OFFSET]
        (checksum,) = struct.unpack("<Q", data[start + 56 : start + 64])
        assert checksum == trivydb._fnv1a64(meta)
        assert meta[:4] == bytes.fromhex("edda0ced")  # bbolt magic, little-endian
    assert '"Version": 2' in (tmp_path / "metadata.json").read_text()


def test_known_fnv_vector() -> None:
    assert trivydb._fnv1a64(b"") == 0xCBF29CE484222325
    assert trivydb._fnv1a64(b"a") == 0xAF63DC4C8601EC8C
