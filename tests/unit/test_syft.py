"""Counting OS packages in an SPDX SBOM as syft writes it."""

from __future__ import annotations

from dcforge.infra.tools import syft


def pkg(name: str, purl: str = "", source: str = "") -> dict[str, object]:
    refs = [{"referenceType": "purl", "referenceLocator": purl}] if purl else []
    return {"name": name, "externalRefs": refs, "sourceInfo": source}


def test_os_packages_by_purl_or_by_the_package_db_they_came_from() -> None:
    doc = {
        "packages": [
            pkg("zlib1g", "pkg:deb/debian/zlib1g@1.2?distro=debian-12"),
            pkg("openssl", "pkg:rpm/fedora/openssl@3"),
            # syft writes no purl when it cannot name the distro (no os-release):
            pkg("bash", source="acquired package info from DPKG DB: /var/lib/dpkg/status"),
            pkg("musl", source="acquired package info from APK DB: /lib/apk/db/installed"),
            pkg("requests", "pkg:pypi/requests@2", "installed python package manifest"),
            pkg("busybox", "pkg:generic/busybox@1.35"),
        ]
    }
    assert syft.os_package_names(doc) == ["zlib1g", "openssl", "bash", "musl"]
    assert len(syft.package_names(doc)) == 6
