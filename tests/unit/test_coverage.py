"""Scan coverage (core/coverage): the package counts Trivy and syft report must agree, and
the vulnerability DB must hold advisories for the OS release Trivy detected."""

from __future__ import annotations

import pytest

from dcforge.core import coverage


@pytest.mark.parametrize(
    ("scanned", "listed", "agree"),
    [
        (126, 126, True),
        (126, 128, True),
        (126, 129, False),
        (500, 510, True),
        (500, 511, False),
        (0, 1, False),
        (1, 0, True),
        (0, 0, True),
    ],
)
def test_package_count_tolerance(scanned: int, listed: int, agree: bool) -> None:
    assert coverage.counts_agree(scanned, listed) is agree


@pytest.mark.parametrize(
    ("family", "release", "platforms", "covered"),
    [
        ("debian", "12.11", {"debian 12"}, True),
        ("debian", "forky/sid", {"debian 12", "debian 13"}, False),
        ("ubuntu", "24.04", {"ubuntu 24.04-esm"}, True),
        ("alpine", "3.20.3", {"alpine 3.20"}, True),
        ("alpine", "3.21.0", {"alpine 3.20"}, False),
        ("oracle", "9.4", {"Oracle Linux 9"}, True),
    ],
)
def test_the_db_covers_a_release_only_by_the_bucket_trivy_reads(
    family: str, release: str, platforms: set[str], covered: bool
) -> None:
    assert coverage.db_covers(platforms, family, release)[1] is covered
