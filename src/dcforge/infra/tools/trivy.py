"""Trivy: scan an OCI archive (unpacked to a layout directory) into a JSON report."""

from __future__ import annotations

import hashlib
import json
import tarfile
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from dcforge.core import oci_archive
from dcforge.core.errors import ToolError
from dcforge.core.files import extract_plain
from dcforge.infra.runner import Runner
from dcforge.infra.tools.registry import Registry

# Every scan reports every severity (the policy decides what blocks) and lists all packages
# (the gate compares them with the SBOM). These flags override trivy.yaml and TRIVY_*.
ALL_SEVERITIES = "UNKNOWN,LOW,MEDIUM,HIGH,CRITICAL"
# TRIVY_* variables a user may set (credentials, output noise); any other could change
# what is scanned or reported (TRIVY_SEVERITY, TRIVY_IGNORE_UNFIXED, TRIVY_SKIP_DIRS, …).
ALLOWED_ENV = frozenset(
    {"TRIVY_USERNAME", "TRIVY_PASSWORD", "TRIVY_REGISTRY_TOKEN", "TRIVY_NO_PROGRESS", "TRIVY_DEBUG"}
)


@dataclass(frozen=True)
class ScanOptions:
    cache_dir: Path
    db_repository: str = ""  # empty: Trivy's default (public) DB
    insecure: bool = False  # plain-HTTP DB registry
    skip_db_update: bool = False
    config: Path | None = None  # trivy.yaml (scanners, severities, timeout, ignorefile)
    timeout: float = 1200  # the process limit; trivy.yaml sets Trivy's own
    skip_dirs: tuple[str, ...] = ()  # the policy's scan_skip_dirs (recorded and reported)
    vex: Path | None = None  # an OpenVEX document from waivers.yaml (dcforge.core.vex)


def unpack_oci_archive(tarball: Path, directory: Path) -> Path:
    """Trivy reads an OCI layout directory, not an OCI tar ("manifest.json not found")."""
    directory.mkdir(parents=True, exist_ok=True)
    try:
        with tarfile.open(tarball, "r:") as tar:
            extract_plain(tar, directory)
    except (tarfile.TarError, OSError, EOFError) as err:
        reason = " ".join(str(err).split())
        raise ToolError(f"{tarball}: not a readable OCI archive ({reason}) — rebuild it") from err
    if not (directory / "index.json").is_file():
        raise ToolError(f"{tarball}: not an OCI archive (no index.json)")
    return directory


def _layout_json(layout: Path, digest: str) -> dict[str, Any]:
    algo, _, hexdigest = digest.partition(":")
    blob = layout / "blobs" / algo / hexdigest
    try:
        data = blob.read_bytes()
        doc = json.loads(data)
    except (OSError, ValueError) as err:
        raise ToolError(f"{layout}: the archive has no readable {digest} ({err})") from None
    if (
        algo != "sha256"
        or hashlib.sha256(data).hexdigest() != hexdigest
        or not isinstance(doc, dict)
    ):
        raise ToolError(f"{layout}: {digest} does not match its digest")
    return doc


def image_platform(layout: Path, digest: str) -> str:
    """``os/arch[/variant]`` from the config of image ``digest`` in an OCI layout: what the
    image is, whatever the index that names it says."""
    manifest = _layout_json(layout, digest)
    config_ref = manifest.get("config")
    if not isinstance(config_ref, dict):
        raise ToolError(f"{layout}: {digest} is not an image manifest")
    return oci_archive.platform_key(_layout_json(layout, str(config_ref.get("digest", ""))))


def platform_layout(layout: Path, digest: str) -> Path:
    """An OCI layout naming one image of ``layout``'s index (a platform's), sharing its blobs:
    scanners then read exactly that platform's image, whatever platform they run on."""
    manifest = _layout_json(layout, digest)
    algo, _, hexdigest = digest.partition(":")
    one = layout.parent / f"{layout.name}-{hexdigest[:16]}"
    one.mkdir(exist_ok=True)
    (one / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
    descriptor = {
        "mediaType": manifest.get("mediaType", "application/vnd.oci.image.manifest.v1+json"),
        "digest": digest,
        "size": (layout / "blobs" / algo / hexdigest).stat().st_size,
    }
    (one / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [descriptor]}))
    if not (one / "blobs").exists():
        (one / "blobs").symlink_to(layout / "blobs")
    return one


def scan(runner: Runner, layout: Path, report: Path, options: ScanOptions) -> dict[str, Any]:
    """Scan an OCI layout directory; write and return the JSON report.

    Every severity is reported (the policy decides, not the scanner); exit code 1 or any
    unreadable report is a :class:`ToolError` — never "no findings".
    """
    return _scan(runner, ["--input", layout], report, options, options.insecure)


def scan_remote(
    registry: Registry, reference: str, report: Path, options: ScanOptions
) -> dict[str, Any]:
    """Scan an image in a registry by digest (a reused image, re-checked with today's DB)."""
    target: list[str | Path] = ["--image-src", "remote", reference]
    insecure = options.insecure or registry.plain(reference)
    return _scan(registry.runner, target, report, options, insecure)


def _scan(
    runner: Runner, target: list[str | Path], report: Path, options: ScanOptions, insecure: bool
) -> dict[str, Any]:
    config = options.config or Path(str(resources.files("dcforge.resources") / "trivy.yaml"))
    argv: list[str | Path] = ["trivy", "image", "--config", config, "--quiet"]
    argv += ["--format", "json", "--output", report, "--exit-code", "0"]
    # The DB under --cache-dir is shared read-only; the layer cache is per process: parallel
    # scans would otherwise wait on one bolt file's lock (5 s, then fail).
    argv += ["--cache-dir", options.cache_dir, "--cache-backend", "memory", "--list-all-pkgs"]
    argv += ["--severity", ALL_SEVERITIES, "--scanners", "vuln", "--pkg-types", "os,library"]
    # Trivy reads .trivyignore from the working directory unless told otherwise: waivers
    # live in waivers.yaml, with reasons and expiry dates, so the ignore file is an empty one.
    ignore = report.with_name(report.name + ".trivyignore")
    ignore.write_text("")
    argv += ["--ignorefile", ignore]
    # Whatever Trivy hides (the VEX made from waivers.yaml, nothing else) stays in the
    # report, under ExperimentalModifiedFindings: the gate checks every hidden finding.
    argv += ["--show-suppressed"]
    if options.vex is not None:
        argv += ["--vex", options.vex]
    for directory in options.skip_dirs:
        argv += ["--skip-dirs", directory]
    if options.db_repository:
        argv += ["--db-repository", options.db_repository]
    if insecure:
        argv += ["--insecure"]
    if options.skip_db_update:
        argv += ["--skip-db-update"]
    report.unlink(missing_ok=True)
    try:
        runner.run([*argv, *target], timeout=options.timeout)
    finally:
        ignore.unlink(missing_ok=True)
    if runner.dry_run:
        return {}
    try:
        data = json.loads(report.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ToolError(f"trivy wrote no readable report at {report} ({err})") from err
    if not isinstance(data, dict) or "SchemaVersion" not in data:
        raise ToolError(f"trivy report {report} is not a Trivy JSON report")
    return data


def download_db(runner: Runner, options: ScanOptions) -> None:
    """Fetch the vulnerability DB once, before parallel scans share it read-only."""
    argv: list[str | Path] = [
        "trivy",
        "image",
        "--download-db-only",
        "--quiet",
        "--cache-dir",
        options.cache_dir,
    ]
    if options.db_repository:
        argv += ["--db-repository", options.db_repository]
    if options.insecure:
        argv += ["--insecure"]
    runner.run(argv, timeout=options.timeout)


def db_metadata(cache_dir: Path) -> dict[str, Any] | None:
    """The downloaded DB's metadata.json, or None when there is no DB in the cache."""
    path = cache_dir / "db" / "metadata.json"
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None
