"""The bundled sample DB is exactly what scripts/make-sample-db writes from the advisories."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path

import pytest

from dcforge.core import trivydb


def test_the_packaged_sample_db_is_the_sample_advisories(tmp_path: Path) -> None:
    written = trivydb.write_db(tmp_path / "w", trivydb.SAMPLE_ADVISORIES, sample=True)
    packaged = resources.files("dcforge.resources").joinpath(trivydb.SAMPLE_DB_RESOURCE)
    assert packaged.read_bytes() == (written / "trivy.db").read_bytes(), (
        "re-run scripts/make-sample-db after changing SAMPLE_ADVISORIES"
    )


def test_the_sample_db_is_dated_now_and_marked(tmp_path: Path) -> None:
    now = datetime(2026, 11, 28, 12, tzinfo=UTC)
    db = trivydb.sample_db(tmp_path / "db", updated_at=now)
    meta = json.loads((db / "metadata.json").read_text())
    assert meta["UpdatedAt"].startswith("2026-11-28T12:00:00")
    assert meta["DcforgeSample"] is True
    assert (db / trivydb.SAMPLE_MARKER_FILE).is_file()


def test_a_real_looking_db_carries_no_marker(tmp_path: Path) -> None:
    db = trivydb.write_db(tmp_path / "db", [trivydb.Advisory("CVE-2099-1", "zlib", "1")])
    assert not (db / trivydb.SAMPLE_MARKER_FILE).exists()
    assert "DcforgeSample" not in json.loads((db / "metadata.json").read_text())


def test_platforms_are_the_top_level_buckets_of_a_bbolt_file(tmp_path: Path) -> None:
    many = [
        trivydb.Advisory(f"CVE-2099-{i:04d}", "zlib", "1.0", platform=f"ubuntu {i}.04")
        for i in range(300)  # enough keys for the root bucket to span branch pages
    ]
    trivydb.write_db(tmp_path / "db", many)
    found = trivydb.platforms(tmp_path / "db" / "trivy.db")
    assert found == {f"ubuntu {i}.04" for i in range(300)} | {
        "debian 12",
        "data-source",
        "vulnerability",
    }


def test_a_file_that_is_not_bbolt_is_refused(tmp_path: Path) -> None:
    junk = tmp_path / "trivy.db"
    junk.write_bytes(b"\0" * 16 + b"not a bolt file" * 1000)
    with pytest.raises(trivydb.DbFormatError):
        trivydb.platforms(junk)


def test_a_truncated_or_corrupt_db_is_one_clear_error(tmp_path: Path) -> None:
    trivydb.write_db(tmp_path / "db", [])
    db = tmp_path / "db" / "trivy.db"
    data = bytearray(db.read_bytes())
    cut = tmp_path / "cut.db"
    cut.write_bytes(bytes(data[: trivydb.PAGE_SIZE * 2]))  # the meta pages, no tree
    with pytest.raises(trivydb.DbFormatError):
        trivydb.platforms(cut)
    # A root page claiming more elements than it holds.
    root = int.from_bytes(data[16 + 16 : 16 + 24], "little")  # the meta's root bucket page
    at = root * trivydb.PAGE_SIZE + 10
    data[at : at + 2] = (0xFFFF).to_bytes(2, "little")
    db.write_bytes(bytes(data))
    with pytest.raises(trivydb.DbFormatError):
        trivydb.platforms(db)
