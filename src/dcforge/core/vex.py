"""OpenVEX v0.2.0 documents from waivers (pure): what the gate waived, in a form scanners read.

Per image, every finding a live waiver covers becomes a statement: the vulnerability, the
products it is about, and the waiver's status — ``not_affected`` with its justification
(the reason as the impact statement), or ``affected`` with the reason and the expiry as
the action statement. Expired waivers never appear. Each document is validated against
the vendored OpenVEX schema (``resources/openvex-0.2.0.schema.json``, see
``resources/VENDORED.md``); one that does not validate is a bug and raises
:class:`VexError`. The same inputs give the same bytes: statements and purls are sorted,
the timestamp is passed in and the ``@id`` is a hash of the content.

How Trivy matches products (verified with the pinned Trivy 0.76.0 on an offline DB, and in
its source: ``pkg/vex``, ``pkg/purl``, ``pkg/fanal/image``; go-vex ``PurlMatches``): it
walks from each vulnerable package up to the scanned image and applies a statement when
(a) its product is the package's own purl (``PkgIdentifier.PURL`` in the JSON report,
epoch and distro as qualifiers, e.g.
``pkg:deb/debian/zlib1g@1.2.13.dfsg-1?arch=amd64&distro=debian-12.5&epoch=1``), or (b)
its product is the image's purl and a subcomponent matches the package's. The image's purl
exists only for an image Trivy read from a registry (or an engine): ``pkg:oci/<last path
segment>@<digest>?arch=<config arch>&repository_url=<registry/repository>``, where the
digest is the one the reference resolved to — the *index* digest for a multi-platform
image pulled by tag or by index digest, the platform image's for a pull by its digest.
Purls match from general to specific: every qualifier the statement gives must be in the
scanned purl, so a product without ``arch`` matches every platform, and a mismatched
``repository_url`` or digest never matches. Of an OCI archive or layout scanned with
``--input`` (what the gate does) Trivy knows no repository digest: the image has no purl
and statements about the image match nothing there, only (a) does.

So the image's document (:func:`document`, what publish attests and consumers pass to
``trivy image --vex``) names as products the platform image and, for a multi-platform
image, its index qualified with the platform's ``arch``, each with the affected packages'
purls as subcomponents: it applies to that image and nothing else. The gate's own scan
gets the same statements keyed by the package purls (:func:`by_package`), used for that
one image's scan only: an archive has no image purl, and a staged image is read from a
staging repository the document does not name.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any
from urllib.parse import quote

import jsonschema

from dcforge.core.coverage import COVERAGE_IDS
from dcforge.core.errors import GateBlocked
from dcforge.core.policy import Finding, live_waiver
from dcforge.core.waivers import NOT_AFFECTED, Waiver

CONTEXT = "https://openvex.dev/ns/v0.2.0"
SCHEMA_RESOURCE = "openvex-0.2.0.schema.json"
TOOLING = "dcforge gate, from waivers.yaml"
ID_PREFIX = "urn:dcforge:vex:"


class VexError(GateBlocked):
    """A VEX document dcforge made that the OpenVEX schema refuses (a bug in dcforge): the
    gate blocks with one line, not a traceback."""


@dataclass(frozen=True)
class Image:
    """The image a document speaks about, where it is published."""

    repository: str  # registry/namespace/name, as in the manifest
    digest: str  # the image manifest's digest (one platform's)
    platform: str = ""  # os/arch[/variant]
    index_digest: str = ""  # the multi-platform index listing it; "" for a single image

    def purls(self) -> list[str]:
        """The image's purl, and its index's (qualified with the platform's arch) when a
        consumer pulling the tag would see that one."""
        own = oci_purl(self.repository, self.digest)
        if not self.index_digest:
            return [own]
        arch = self.platform.split("/")[1] if self.platform.count("/") >= 1 else ""
        return [own, oci_purl(self.repository, self.index_digest, arch)]


def oci_purl(repository: str, digest: str, arch: str = "") -> str:
    """``pkg:oci/name@digest?arch=…&repository_url=…``, written as Trivy writes it."""
    name = repository.rsplit("/", 1)[-1].lower()
    qualifiers = {"arch": arch, "repository_url": _repository_url(repository)}
    query = "&".join(f"{k}={quote(v, safe=':')}" for k, v in sorted(qualifiers.items()) if v)
    return f"pkg:oci/{name}@{digest}?{query}"


def _repository_url(repository: str) -> str:
    """The repository as Trivy names it in an image's purl: go-containerregistry's
    ``Repository.Name()``, where Docker Hub is ``index.docker.io`` and an official image
    lives under ``library/`` (Trivy's pkg/sbom/io/encode_test.go, its .vex/oci.openvex.json)."""
    host, _, path = repository.partition("/")
    if host in ("docker.io", "index.docker.io"):
        return f"index.docker.io/{path if '/' in path else 'library/' + path}"
    return repository


def covered(
    findings: Iterable[Finding], waivers: Sequence[Waiver], permutation: str, today: dt.date
) -> list[tuple[Finding, Waiver]]:
    """Every finding a live waiver covers (the first matching waiver, as the gate takes it),
    whatever its severity: the VEX says what the waiver says, the policy what blocks.
    Coverage problems are not vulnerabilities and a finding without a purl cannot be
    named, so neither is in a VEX."""
    out = []
    for f in findings:
        if f.id in COVERAGE_IDS or not f.purl:
            continue
        if (waiver := live_waiver(waivers, permutation, f, today)) is not None:
            out.append((f, waiver))
    return out


def document(
    image: Image,
    waived: Iterable[tuple[Finding, Waiver]],
    *,
    author: str,
    timestamp: dt.datetime,
) -> dict[str, Any] | None:
    """The image's OpenVEX document: one statement per vulnerability and waiver, its
    packages as subcomponents of each of the image's purls; None when nothing is waived
    (OpenVEX has no empty document)."""
    packages: dict[tuple[str, Waiver], set[str]] = {}
    for f, w in waived:
        packages.setdefault((f.id, w), set()).add(f.purl)
    if not packages:
        return None
    statements = [
        _statement(vuln, w, [_product(p, sorted(purls)) for p in image.purls()])
        for (vuln, w), purls in packages.items()
    ]
    return _finish(statements, author, timestamp)


def by_package(doc: Mapping[str, Any]) -> dict[str, Any]:
    """``doc``'s statements with the packages as products: what Trivy matches whatever it
    scans (an archive has no image purl). Only for the scan of ``doc``'s image — it would
    apply to the same package in any image."""
    # Each package is its own product and its own only subcomponent: a product without
    # subcomponents matches every package under it in Trivy's dependency walk, so a waiver
    # for P would hide the CVE in whatever only P depends on (go-vex Product.Matches).
    statements = [
        {
            **s,
            "products": [
                {"@id": sub["@id"], "subcomponents": [{"@id": sub["@id"]}]}
                for sub in s["products"][0]["subcomponents"]
            ],
        }
        for s in doc["statements"]
    ]
    timestamp = dt.datetime.fromisoformat(str(doc["timestamp"]).replace("Z", "+00:00"))
    return _finish(statements, str(doc["author"]), timestamp)


def dumps(doc: Mapping[str, Any]) -> bytes:
    """The document's bytes (its recorded sha256 is of these): sorted keys, one layout."""
    return (json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode()


def document_sha256(predicate: object) -> str:
    """The sha256 of a document as the gate wrote it (:func:`dumps`: the bytes its recorded
    sha256 is of), from the predicate of its verified statement ("" for a non-object)."""
    if not isinstance(predicate, dict):
        return ""
    return hashlib.sha256(dumps(predicate)).hexdigest()


def _product(image_purl: str, package_purls: Sequence[str]) -> dict[str, Any]:
    return {"@id": image_purl, "subcomponents": [{"@id": p} for p in package_purls]}


def _statement(vuln: str, w: Waiver, products: list[dict[str, Any]]) -> dict[str, Any]:
    until = w.expires.isoformat()
    statement: dict[str, Any] = {
        "vulnerability": {"name": vuln},
        "products": products,
        "status": w.status,
        "status_notes": f"dcforge waiver {w.id} ({w.scope()}), expires {until}",
    }
    if w.created is not None:
        statement["timestamp"] = _rfc3339(dt.datetime.combine(w.created, dt.time(), dt.UTC))
    if w.status == NOT_AFFECTED:
        statement |= {"justification": w.justification, "impact_statement": w.reason}
    else:
        statement["action_statement"] = f"Accepted until {until}, then reviewed: {w.reason}"
    return statement


def _finish(
    statements: list[dict[str, Any]], author: str, timestamp: dt.datetime
) -> dict[str, Any]:
    """The document around ``statements``, sorted, identified by its content, validated."""
    doc: dict[str, Any] = {
        "@context": CONTEXT,
        "author": author,
        "timestamp": _rfc3339(timestamp),
        "version": 1,
        "tooling": TOOLING,
        "statements": sorted(statements, key=lambda s: json.dumps(s, sort_keys=True)),
    }
    doc["@id"] = ID_PREFIX + hashlib.sha256(dumps(doc)).hexdigest()
    validate(doc)
    return doc


def _rfc3339(when: dt.datetime) -> str:
    return when.astimezone(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


@cache
def _validator() -> jsonschema.Draft202012Validator:
    text = resources.files("dcforge.resources").joinpath(SCHEMA_RESOURCE).read_text()
    # jsonschema checks "date-time", "iri" and "uri" only with optional packages installed;
    # these two checks hold whatever is installed.
    checker = jsonschema.FormatChecker()
    checker.checks("date-time")(_is_datetime)
    checker.checks("iri")(_is_iri)
    checker.checks("uri")(_is_iri)
    return jsonschema.Draft202012Validator(json.loads(text), format_checker=checker)


_IRI = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:\S+")
_DATETIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)")


def _is_iri(value: object) -> bool:
    return not isinstance(value, str) or bool(_IRI.fullmatch(value))


def _is_datetime(value: object) -> bool:
    if not isinstance(value, str):
        return True
    if not _DATETIME.fullmatch(value):
        return False
    try:
        dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return False
    return True


def validate(doc: Any) -> None:
    """Raise VexError unless ``doc`` is a valid OpenVEX v0.2.0 document."""
    errors = sorted(_validator().iter_errors(doc), key=lambda e: list(e.absolute_path))
    if errors:
        where = ".".join(str(p) for p in errors[0].absolute_path) or "(top level)"
        raise VexError(f"OpenVEX document invalid at '{where}': {errors[0].message}")
