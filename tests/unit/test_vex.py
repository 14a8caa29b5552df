"""OpenVEX documents from waivers: statuses, expiry, products, schema, determinism."""

from __future__ import annotations

import copy
import datetime as dt
import hashlib
import json
import re
from dataclasses import replace
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

from dcforge.core import vex
from dcforge.core.coverage import OS_UNDETECTED
from dcforge.core.policy import Finding
from dcforge.core.waivers import Waiver

TODAY = dt.date(2026, 11, 28)
NOW = dt.datetime(2026, 11, 28, 12, 30, tzinfo=dt.UTC)
REPO = "ghcr.io/acme/devcontainers/python-3.12-bookworm"
DIGEST = "sha256:" + "a" * 64
INDEX = "sha256:" + "b" * 64
ZLIB = "pkg:deb/debian/zlib1g@1.2.13.dfsg-1?arch=amd64&distro=debian-12.5&epoch=1"
ZLIB_DEV = "pkg:deb/debian/zlib1g-dev@1.2.13.dfsg-1?arch=amd64&distro=debian-12.5&epoch=1"
CURL = "pkg:deb/debian/curl@7.88.1-10?arch=amd64&distro=debian-12.5"

CVE1 = Finding("CVE-2099-0001", "zlib1g", "1:1.2.13.dfsg-1", "1:1.3.0-1", "CRITICAL", "", ZLIB)
CVE1_DEV = replace(CVE1, package="zlib1g-dev", purl=ZLIB_DEV)
GHSA = Finding("GHSA-abcd-efgh-ijkl", "curl", "7.88.1-10", "", "LOW", "", CURL)
UNWAIVED = Finding("CVE-2099-0009", "curl", "7.88.1-10", "8.0", "HIGH", "", CURL)

NOT_AFFECTED = Waiver(
    "CVE-2099-0001",
    "zlib is linked but its inflate path is never reached by the images' tools",
    dt.date(2027, 1, 31),
    permutations=("python-3.12-bookworm",),
    created=dt.date(2026, 11, 2),
    status="not_affected",
    justification="vulnerable_code_not_in_execute_path",
)
AFFECTED = Waiver(
    "GHSA-abcd-efgh-ijkl",
    "no fix in Debian yet; only reachable with a malicious proxy",
    dt.date(2026, 12, 31),
    scope_all=True,
    created=dt.date(2026, 11, 20),
)
EXPIRED = Waiver(
    "CVE-2099-0009", "expired yesterday", dt.date(2026, 11, 27), scope_all=True, created=TODAY
)
WAIVERS = (NOT_AFFECTED, AFFECTED, EXPIRED)
IMAGE = vex.Image(REPO, DIGEST, "linux/amd64")


def make(
    findings: tuple[Finding, ...] = (CVE1, CVE1_DEV, GHSA, UNWAIVED),
    image: vex.Image = IMAGE,
    waivers: tuple[Waiver, ...] = WAIVERS,
) -> dict[str, Any] | None:
    covered = vex.covered(findings, waivers, "python-3.12-bookworm", TODAY)
    return vex.document(image, covered, author="ghcr.io/acme/devcontainers", timestamp=NOW)


def statements(doc: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
    assert doc is not None
    return {s["vulnerability"]["name"]: s for s in doc["statements"]}


def test_a_document_says_what_each_live_waiver_says() -> None:
    doc = make()
    assert doc is not None
    assert doc["@context"] == "https://openvex.dev/ns/v0.2.0"
    assert (doc["author"], doc["timestamp"], doc["version"]) == (
        "ghcr.io/acme/devcontainers",
        "2026-11-28T12:30:00Z",
        1,
    )
    by_vuln = statements(doc)
    assert set(by_vuln) == {"CVE-2099-0001", "GHSA-abcd-efgh-ijkl"}  # the expired one is not
    not_affected = by_vuln["CVE-2099-0001"]
    assert not_affected["status"] == "not_affected"
    assert not_affected["justification"] == "vulnerable_code_not_in_execute_path"
    assert not_affected["impact_statement"] == NOT_AFFECTED.reason
    assert "action_statement" not in not_affected
    assert not_affected["timestamp"] == "2026-11-02T00:00:00Z"  # the waiver's created date
    affected = by_vuln["GHSA-abcd-efgh-ijkl"]
    assert affected["status"] == "affected"
    assert "justification" not in affected
    assert affected["action_statement"] == (
        "Accepted until 2026-12-31, then reviewed: "
        "no fix in Debian yet; only reachable with a malicious proxy"
    )
    assert "expires 2026-12-31" in affected["status_notes"]


def test_products_are_the_image_with_the_packages_trivy_named() -> None:
    (product,) = statements(make())["CVE-2099-0001"]["products"]
    assert product == {
        "@id": f"pkg:oci/python-3.12-bookworm@{DIGEST}"
        "?repository_url=ghcr.io%2Facme%2Fdevcontainers%2Fpython-3.12-bookworm",
        "subcomponents": [{"@id": ZLIB_DEV}, {"@id": ZLIB}],  # sorted
    }


def test_a_platform_of_a_multi_platform_image_is_also_named_by_its_index() -> None:
    """A consumer pulling the tag scans a purl with the index digest (Trivy's RepoDigests)."""
    arm = vex.Image(REPO, DIGEST, "linux/arm64/v8", index_digest=INDEX)
    own, index = statements(make(image=arm))["CVE-2099-0001"]["products"]
    assert own["@id"].startswith(f"pkg:oci/python-3.12-bookworm@{DIGEST}?repository_url=")
    assert index["@id"] == (
        f"pkg:oci/python-3.12-bookworm@{INDEX}"
        "?arch=arm64&repository_url=ghcr.io%2Facme%2Fdevcontainers%2Fpython-3.12-bookworm"
    )
    assert index["subcomponents"] == own["subcomponents"]


@pytest.mark.parametrize(
    ("repository", "expected"),
    [
        (
            "localhost:5000/dcforge/base",
            "pkg:oci/base@{d}?repository_url=localhost:5000%2Fdcforge%2Fbase",
        ),
        (
            "docker.io/acme/Base",
            "pkg:oci/base@{d}?repository_url=index.docker.io%2Facme%2FBase",
        ),
        (
            "docker.io/library/debian",
            "pkg:oci/debian@{d}?repository_url=index.docker.io%2Flibrary%2Fdebian",
        ),
        (
            "index.docker.io/debian",
            "pkg:oci/debian@{d}?repository_url=index.docker.io%2Flibrary%2Fdebian",
        ),
    ],
)
def test_image_purls_are_written_as_trivy_writes_them(repository: str, expected: str) -> None:
    assert vex.oci_purl(repository, DIGEST) == expected.format(d=DIGEST)


def test_nothing_waived_is_no_document() -> None:
    assert make(findings=(UNWAIVED,)) is None
    assert make(waivers=()) is None


def test_what_cannot_be_a_statement_is_left_out() -> None:
    """Coverage problems are no vulnerabilities; a finding without a purl cannot be named;
    another permutation's waiver does not apply."""
    coverage = Finding(OS_UNDETECTED, "(image)", "", "", "")
    waiver = Waiver(OS_UNDETECTED, "vendor image", dt.date(2027, 1, 1), permutations=("p",))
    assert vex.covered([coverage], [waiver], "p", TODAY) == []
    assert (
        vex.covered([replace(CVE1, purl="")], [NOT_AFFECTED], "python-3.12-bookworm", TODAY) == []
    )
    assert vex.covered([CVE1], [NOT_AFFECTED], "node-22-bookworm", TODAY) == []


def test_the_first_matching_waiver_decides_as_in_the_gate() -> None:
    """An expired waiver listed first is what the gate sees (and blocks on): no statement."""
    dead = replace(NOT_AFFECTED, expires=dt.date(2026, 11, 1), created=dt.date(2026, 10, 1))
    assert vex.covered([CVE1], [dead, NOT_AFFECTED], "python-3.12-bookworm", TODAY) == []
    assert vex.covered([CVE1], [NOT_AFFECTED, dead], "python-3.12-bookworm", TODAY) == [
        (CVE1, NOT_AFFECTED)
    ]


def test_the_same_inputs_give_the_same_bytes_and_id() -> None:
    one, two = make(), make(findings=(UNWAIVED, GHSA, CVE1_DEV, CVE1, CVE1))
    assert one is not None and two is not None
    assert vex.dumps(one) == vex.dumps(two)
    assert re.fullmatch(r"urn:dcforge:vex:[0-9a-f]{64}", one["@id"])
    later = vex.document(
        IMAGE,
        vex.covered([CVE1], WAIVERS, "python-3.12-bookworm", TODAY),
        author="x",
        timestamp=NOW + dt.timedelta(seconds=1),
    )
    assert later is not None and later["@id"] != one["@id"]


def test_every_document_is_valid_openvex_and_an_invalid_one_raises() -> None:
    doc = make()
    vex.validate(doc)
    vex.validate(vex.by_package(doc or {}))
    broken = copy.deepcopy(doc)
    assert broken is not None
    for statement in broken["statements"]:  # not_affected needs a justification or impact
        statement.pop("justification", None)
        statement.pop("impact_statement", None)
    with pytest.raises(vex.VexError, match="OpenVEX document invalid"):
        vex.validate(broken)
    for field, value in (("timestamp", "yesterday"), ("@id", "not an iri"), ("statements", [])):
        with pytest.raises(vex.VexError):
            vex.validate({**(doc or {}), field: value})


def test_the_archive_scan_document_keys_the_same_statements_by_package() -> None:
    """Trivy knows no image purl for an archive: the gate's own scan matches packages."""
    doc = make(image=vex.Image(REPO, DIGEST, "linux/amd64", index_digest=INDEX))
    assert doc is not None
    scan = vex.by_package(doc)
    by_vuln = statements(scan)
    # Each package its own only subcomponent: a bare product would, in Trivy's dependency
    # walk, also hide the CVE in whatever only that package depends on.
    assert by_vuln["CVE-2099-0001"]["products"] == [
        {"@id": ZLIB_DEV, "subcomponents": [{"@id": ZLIB_DEV}]},
        {"@id": ZLIB, "subcomponents": [{"@id": ZLIB}]},
    ]
    assert by_vuln["GHSA-abcd-efgh-ijkl"]["products"] == [
        {"@id": CURL, "subcomponents": [{"@id": CURL}]}
    ]
    for name, s in statements(doc).items():
        assert {k: v for k, v in s.items() if k != "products"} == {
            k: v for k, v in by_vuln[name].items() if k != "products"
        }
    assert scan["@id"] != doc["@id"]


def test_the_vendored_schema_is_the_file_vendored_md_names() -> None:
    files = resources.files("dcforge.resources")
    listed = re.findall(
        r"\| `([^`]+)` \|.*\| `([0-9a-f]{64})` \|", files.joinpath("VENDORED.md").read_text()
    )
    assert (
        "openvex-0.2.0.schema.json",
        hashlib.sha256(files.joinpath("openvex-0.2.0.schema.json").read_bytes()).hexdigest(),
    ) in listed
    schema = json.loads(files.joinpath("openvex-0.2.0.schema.json").read_text())
    justifications = schema["properties"]["statements"]["items"]["properties"]["justification"]
    waivers = json.loads(files.joinpath("waivers.schema.json").read_text())
    ours = waivers["properties"]["waivers"]["items"]["properties"]["justification"]["enum"]
    assert ours == justifications["enum"]


def test_dumps_writes_one_layout(tmp_path: Path) -> None:
    doc = make()
    assert doc is not None
    (tmp_path / "x.vex.json").write_bytes(vex.dumps(doc))
    assert json.loads((tmp_path / "x.vex.json").read_text()) == doc
    assert vex.dumps(doc).endswith(b"}\n")


def test_an_invalid_document_is_one_gate_line_not_a_traceback() -> None:
    """A schema failure is dcforge's bug, but it reaches the user as a blocked gate (exit 6,
    one line), never as a traceback."""
    from dcforge.core.errors import GateBlocked

    with pytest.raises(GateBlocked) as err:
        vex.validate({"@context": "x"})
    assert err.value.exit_code == 6
