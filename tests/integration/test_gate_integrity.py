"""Ways around the gate, each tried against the real Trivy, syft, cosign and registry.

Every test here is an attack or a careless edit that let an image reach publish without a
real scan behind it; each must block (or refuse) with a line that names the reason.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
from pathlib import Path

import pytest

from dcforge.core import trivydb
from dcforge.infra.runner import Runner
from tests.integration import oras_oracle as registry
from tests.integration.conftest import (
    VULN_DIR,
    TrivyDb,
    base_env,
    fake_tool,
    gate,
    git_commit,
    push_db,
    run_dcforge,
    verdicts,
)
from tests.projects import OS_RELEASE, write_debian_identity, write_project

pytestmark = pytest.mark.integration

TODAY = dt.date.today()

# The vulnerable image (zlib1g 1:1.2.13.dfsg-1, a planted CRITICAL) flattened after its OS
# identity was deleted: it builds and runs, but Trivy can no longer tell what OS it is.
FLATTENED = """\
ARG BASE_IMAGE
FROM ${BASE_IMAGE} AS full
ARG DROP
COPY os-release /etc/os-release
COPY status /var/lib/dpkg/status
RUN echo 12.5 > /etc/debian_version
RUN rm -f /etc/os-release /usr/lib/os-release /etc/debian_version ${DROP}
FROM scratch
COPY --from=full / /
"""
# A Python package as pip installs it: what an image without an OS can be scanned for.
PY_METADATA = "Metadata-Version: 2.1\nName: requests\nVersion: 2.31.0\n"

FAMILIES = {
    "flat.yaml": """\
family: flat
name: flat
context: ../images/flat
base: "{base_registry}/busybox:latest"
build_args: {DROP: ""}
tags: [latest]
""",
    "bare.yaml": """\
family: bare
name: bare
context: ../images/flat
base: "{base_registry}/busybox:latest"
build_args: {DROP: /var/lib/dpkg/status}
os: none
tags: [latest]
""",
    "pyonly.yaml": """\
family: pyonly
name: pyonly
context: ../images/pyonly
base: "{base_registry}/busybox:latest"
os: none
tags: [latest]
""",
    "eol.yaml": """\
family: eol
name: eol
context: ../images/eol
base: "{base_registry}/busybox:latest"
tags: [latest]
""",
    # The vulnerable zlib1g as Debian testing and as a Debian 14 the DB has no data for.
    "sid.yaml": """\
family: sid
name: sid
context: ../images/newer
base: "{base_registry}/busybox:latest"
build_args: {DEBIAN_VERSION: forky/sid}
tags: [latest]
""",
    "deb14.yaml": """\
family: deb14
name: deb14
context: ../images/newer
base: "{base_registry}/busybox:latest"
build_args: {DEBIAN_VERSION: "14.0"}
tags: [latest]
""",
}
NEWER = """\
ARG BASE_IMAGE
FROM ${BASE_IMAGE}
ARG DEBIAN_VERSION
COPY os-release /etc/os-release
COPY status /var/lib/dpkg/status
RUN echo "${DEBIAN_VERSION}" > /etc/debian_version
"""


def blocking_ids(root: Path, name: str) -> set[str]:
    return {str(f["id"]) for f in verdicts(root)[name]["blocking"]}  # type: ignore[attr-defined]


def waivers_file(root: Path, *entries: str) -> None:
    (root / "waivers.yaml").write_text("waivers:\n" + "".join(entries))


def waiver(wid: str, scope: str, days: int = 30) -> str:
    return (
        f"  - id: {wid}\n    reason: accepted for this test only\n"
        f"    created: {TODAY.isoformat()}\n"
        f"    expires: {(TODAY + dt.timedelta(days=days)).isoformat()}\n    {scope}\n"
    )


@pytest.fixture(scope="module")
def blind_project(tmp_path_factory: pytest.TempPathFactory, namespace: str) -> Path:
    """Four images the scanner cannot (fully) see into, built once."""
    root = write_project(
        tmp_path_factory.mktemp("blind") / "proj",
        registry=f"{namespace}/blind",
        families=FAMILIES,
    )
    (root / "permutations/tiny.yaml").unlink(missing_ok=True)
    flat = root / "images/flat"
    shutil.copytree(VULN_DIR, flat)
    (flat / "Dockerfile").write_text(FLATTENED)
    py = root / "images/pyonly"
    py.mkdir()
    (py / "METADATA").write_text(PY_METADATA)
    (py / "Dockerfile").write_text(
        "ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\n"
        "COPY METADATA /usr/lib/python3/site-packages/requests-2.31.0.dist-info/METADATA\n"
    )
    eol = root / "images/eol"
    eol.mkdir()
    write_debian_identity(eol)
    (eol / "os-release").write_text(OS_RELEASE.replace("12", "9").replace("bookworm", "stretch"))
    (eol / "Dockerfile").write_text(
        "ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\nCOPY os-release /etc/os-release\n"
        "COPY status /var/lib/dpkg/status\nRUN echo 9.13 > /etc/debian_version\n"
    )
    newer = root / "images/newer"
    shutil.copytree(VULN_DIR, newer)
    (newer / "Dockerfile").write_text(NEWER)
    (newer / "os-release").write_text('ID=debian\nPRETTY_NAME="Debian GNU/Linux forky/sid"\n')
    (root / ".gitignore").write_text(".dcforge/\ndist/\n")
    git_commit(root, "blind images")
    result = run_dcforge("build", "--no-prune", cwd=root)
    assert result.returncode == 0, result.stderr
    return root


@pytest.mark.reliability(
    scenario="an image the scanner cannot see into (flattened, no OS, EOSL)",
    checks="blocks with the permutation and the reason; only a dated waiver lifts it",
)
def test_an_image_the_scanner_cannot_see_into_blocks(
    blind_project: Path, trivy_db: TrivyDb
) -> None:
    result = gate(blind_project, trivy_db)
    assert result.returncode == 6, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert "5 of 6 permutation(s) blocked" in last
    # The flattened image: the planted CRITICAL in zlib1g is invisible to Trivy, and the gate
    # says so instead of "passed".
    assert blocking_ids(blind_project, "flat") == {"DCFORGE-OS-UNDETECTED", "DCFORGE-PKG-MISMATCH"}
    assert "flat: DCFORGE-OS-UNDETECTED: Trivy detected no operating system" in last
    assert "Trivy scanned 0 OS package(s), the SBOM lists 1" in last
    assert blocking_ids(blind_project, "eol") == {"DCFORGE-OS-EOSL"}
    assert "debian 9.13 is end-of-life (EOSL)" in last
    # The same vulnerable zlib1g the DB flags for Debian 12, on releases it has no data for:
    # Trivy matches nothing and marks nothing end-of-life; the gate blocks anyway.
    for name, release in (("sid", "forky/sid"), ("deb14", "14.0")):
        assert blocking_ids(blind_project, name) == {"DCFORGE-OS-NO-ADVISORIES"}, name
        assert f"holds no advisories for debian {release}" in last
    # Declared without an OS, and nothing else scanned either.
    assert blocking_ids(blind_project, "bare") == {"DCFORGE-NOTHING-SCANNED"}
    # Declared without an OS, and its language packages were scanned: that is a scan.
    pyonly = verdicts(blind_project)["pyonly"]
    assert pyonly["passed"] is True
    assert pyonly["coverage"]["lang_packages"] == 1  # type: ignore[index]
    summary = (blind_project / "dist/reports/summary.md").read_text()
    assert "| flat | **blocked** | **none** | 0 / 1 |" in summary
    assert "| pyonly | pass | none (declared) | 0 / 0 |" in summary

    # A waiver lifts a coverage problem like any finding — scoped, dated, and reported.
    waivers_file(
        blind_project,
        waiver("DCFORGE-OS-UNDETECTED", "permutations: [flat]"),
        waiver("DCFORGE-PKG-MISMATCH", "permutations: [flat]"),
        waiver("DCFORGE-OS-NO-ADVISORIES", "permutations: [sid]"),
    )
    result = gate(blind_project, trivy_db)
    assert result.returncode == 6
    assert verdicts(blind_project)["flat"]["passed"] is True
    assert verdicts(blind_project)["sid"]["passed"] is True
    assert verdicts(blind_project)["deb14"]["passed"] is False  # the waiver names sid only
    summary = (blind_project / "dist/reports/summary.md").read_text()
    assert "## Waivers in force" in summary
    assert "| DCFORGE-OS-UNDETECTED | permutations: flat |" in summary
    assert "| 30 | accepted for this test only |" in summary
    (blind_project / "waivers.yaml").unlink()


def test_waivers_without_scope_or_past_their_lifetime_are_refused(
    blind_project: Path, trivy_db: TrivyDb
) -> None:
    unscoped = waiver("CVE-2099-0001", "scope: all").replace("    scope: all\n", "")
    waivers_file(blind_project, unscoped)
    result = gate(blind_project, trivy_db)
    assert result.returncode == 2
    assert "waivers.0 (CVE-2099-0001): no scope" in result.stderr
    waivers_file(blind_project, waiver("CVE-2099-0001", "scope: all", days=400))
    result = gate(blind_project, trivy_db)
    assert result.returncode == 2
    assert "more than max_waiver_days = 90" in result.stderr
    # A scan that could not see into an image is waived one image at a time.
    waivers_file(blind_project, waiver("DCFORGE-OS-UNDETECTED", "scope: all"))
    result = gate(blind_project, trivy_db)
    assert result.returncode == 2
    assert "must name its permutations" in result.stderr
    assert not (blind_project / "dist/gate.json").exists()
    (blind_project / "waivers.yaml").unlink()


# -- made-up data never stands in for real data --------------------------------------------


@pytest.mark.reliability(
    scenario="sample DB and a non-loopback plain-HTTP registry",
    checks="no sample data, nothing pushed there; the gate blocks with the reason",
)
def test_sample_db_is_never_used_for_an_http_registry_that_is_not_loopback(
    project: Path,
) -> None:
    remote = "registry.example.invalid:5000/dcforge"
    assert run_dcforge("build", "--no-prune", cwd=project).returncode == 0
    result = run_dcforge(
        "gate",
        cwd=project,
        env={
            "DCFORGE_REGISTRY": remote,
            "DCFORGE_INSECURE_REGISTRIES": "localhost,127.0.0.1,registry.example.invalid",
        },
    )
    assert result.returncode == 6, result.stderr
    assert "could not be downloaded from Trivy's default repositories" in result.stderr
    assert "SAMPLE" not in result.stderr
    assert "registry.example.invalid:5000/dcforge-sample" not in result.stderr


def test_a_sample_db_is_known_by_its_marker_wherever_it_is_served(
    project: Path, namespace: str, runner: Runner, tmp_path: Path
) -> None:
    # The sample DB re-served under another name, without the artifact annotation.
    db_dir = trivydb.write_db(tmp_path / "db", trivydb.SAMPLE_ADVISORIES, sample=True)
    trivydb.pack(db_dir, tmp_path / "db.tar.gz")
    repo = f"{namespace}/looks-real/trivy-db:2"
    registry.push_artifact(
        runner,
        repo,
        tmp_path,
        "db.tar.gz",
        artifact_type=trivydb.DB_ARTIFACT_TYPE,
        media_type=trivydb.DB_MEDIA_TYPE,
        annotations={},
        plain_http=True,
    )
    assert run_dcforge("build", "--no-prune", cwd=project).returncode == 0
    # For the loopback demo registry it is allowed, and said to be sample data.
    assert gate(project, repo).returncode == 0
    doc = json.loads((project / "dist/gate.json").read_text())
    assert doc["sample_db"] is True
    assert doc["registry"].startswith(namespace)
    # For any other registry it blocks, naming the DB.
    result = gate(project, repo, env={"DCFORGE_REGISTRY": "registry.example.invalid/dcforge"})
    assert result.returncode == 6
    assert f"the Trivy DB at {repo} is dcforge's SAMPLE data" in result.stderr


# -- the DB is identified ------------------------------------------------------------------


@pytest.mark.reliability(
    scenario="Trivy DB identity (digest pin, a date in the future, a new DB under the tag)",
    checks="the digest is recorded; a wrong pin or a future date blocks; a new DB is used",
)
def test_the_db_is_identified_by_digest_pinned_and_never_from_the_future(
    project: Path, namespace: str, runner: Runner, tmp_path: Path
) -> None:
    shutil.copytree(VULN_DIR, project / "images/vuln")
    (project / "permutations/vuln.yaml").write_text(
        'family: vuln\nname: vuln\ncontext: ../images/vuln\nbase: "{base_registry}/busybox:latest"\n'
        "tags: [latest]\n"
    )
    git_commit(project, "vuln")
    assert run_dcforge("build", "--no-prune", cwd=project).returncode == 0
    repo = push_db(runner, tmp_path / "a", f"{namespace}/moving-db:2", [])
    assert gate(project, repo).returncode == 0
    first = json.loads((project / "dist/gate.json").read_text())
    assert first["db_digest"] == registry.resolve(runner, repo, plain_http=True)
    assert first["db_digest"] in (project / "dist/reports/summary.md").read_text()
    # A new DB under the same tag is downloaded and used (not the cached old one).
    advisory = trivydb.Advisory("CVE-2099-0001", "zlib", "1:1.3.0-1", "CRITICAL")
    push_db(runner, tmp_path / "b", repo, [advisory])
    result = gate(project, repo)
    assert result.returncode == 6, result.stderr
    assert "vuln: CVE-2099-0001" in result.stderr
    second = json.loads((project / "dist/gate.json").read_text())
    assert second["db_digest"] != first["db_digest"]
    # A pinned digest that is not the one served blocks.
    result = gate(project, repo, env={"DCFORGE_TRIVY_DB_DIGEST": first["db_digest"]})
    assert result.returncode == 6
    assert f"but trivy_db_digest pins {first['db_digest']}" in result.stderr
    # A DB that claims to come from the future blocks.
    future = dt.datetime.now(dt.UTC) + dt.timedelta(days=2)
    push_db(runner, tmp_path / "c", repo, [], updated_at=future)
    result = gate(project, repo)
    assert result.returncode == 6
    assert "lies in the future" in result.stderr


# -- trivy.yaml and the environment are part of the policy ---------------------------------


@pytest.mark.reliability(
    scenario="trivy.yaml, .trivyignore or TRIVY_* that hide findings",
    checks="refused before scanning; a changed trivy.yaml makes publish refuse the verdict",
)
def test_scanner_options_that_hide_findings_are_refused(project: Path, trivy_db: TrivyDb) -> None:
    shutil.copytree(VULN_DIR, project / "images/vuln")
    (project / "permutations/vuln.yaml").write_text(
        'family: vuln\nname: vuln\ncontext: ../images/vuln\nbase: "{base_registry}/busybox:latest"\n'
        "tags: [latest]\n"
    )
    (project / "trivy.yaml").write_text("severity: [LOW, MEDIUM]\n")
    git_commit(project, "vuln + narrowed trivy.yaml")
    assert run_dcforge("build", "--no-prune", cwd=project).returncode == 0
    result = gate(project, trivy_db)
    assert result.returncode == 2, result.stderr
    assert "trivy.yaml: 'severity' leaves out CRITICAL, HIGH" in result.stderr
    assert not (project / "dist/gate.json").exists()

    (project / "trivy.yaml").write_text("vulnerability:\n  ignore-unfixed: true\n")
    result = gate(project, trivy_db)
    assert result.returncode == 2
    assert "use ignore_unfixed instead" in result.stderr

    result = gate(project, trivy_db, env={"TRIVY_SEVERITY": "LOW"})
    assert result.returncode == 2
    assert "environment: TRIVY_SEVERITY would change what Trivy/syft scan" in result.stderr

    # Trivy's own ignore file in the working directory is not a way around waivers.yaml.
    (project / "trivy.yaml").write_text("timeout: 10m\n")
    (project / ".trivyignore").write_text("CVE-2099-0001\n")
    result = gate(project, trivy_db)
    assert result.returncode == 6
    assert "vuln: CVE-2099-0001 CRITICAL" in result.stderr


def test_a_verdict_is_bound_to_trivy_yaml(project: Path) -> None:
    assert run_dcforge("build", "--no-prune", cwd=project).returncode == 0
    (project / "trivy.yaml").write_text("timeout: 10m\n")
    assert run_dcforge("gate", cwd=project).returncode == 0
    doc = json.loads((project / "dist/gate.json").read_text())
    assert doc["policy"]["trivy_config_sha256"]
    (project / "trivy.yaml").write_text("timeout: 5m\n")
    result = run_dcforge("publish", cwd=project)
    assert result.returncode == 7
    assert "trivy.yaml changed since the gate ran" in result.stderr


# -- the tools are the pinned tools --------------------------------------------------------


def _impostor(directory: Path, tool: str, real: str, version_json: str) -> Path:
    """A ``tool`` that delegates to the real one but reports another version."""
    return fake_tool(
        directory,
        tool,
        'case "$*" in *--version*|version*) echo \'' + version_json + "'; exit 0;; esac\n"
        f'exec {real} "$@"\n',
    )


@pytest.mark.reliability(
    scenario="a scanner that is not the pinned version",
    checks="the gate blocks naming found and pinned versions; tools recorded with sha256",
)
def test_a_scanner_that_is_not_the_pinned_one_blocks(
    project: Path, trivy_db: TrivyDb, runner: Runner, tmp_path: Path
) -> None:
    assert run_dcforge("build", "--no-prune", cwd=project).returncode == 0
    assert gate(project, trivy_db).returncode == 0
    tools = json.loads((project / "dist/gate.json").read_text())["tools"]
    assert tools["trivy"]["version"] == "0.76.0"
    assert tools["syft"]["version"] == "1.18.1"
    assert len(tools["trivy"]["sha256"]) == 64
    fake = _impostor(tmp_path / "bin", "trivy", runner.which("trivy"), '{"Version":"0.50.0"}')
    result = gate(project, trivy_db, env={"PATH": f"{fake}{os.pathsep}{base_env()['PATH']}"})
    assert result.returncode == 6, result.stderr
    assert "trivy at" in result.stderr
    assert "is version 0.50.0, but dcforge pins 0.76.0" in result.stderr
    assert not (project / "dist/gate.json").exists()


# -- no throwaway signing key in CI --------------------------------------------------------


@pytest.mark.reliability(
    scenario="CI with key signing and no COSIGN_KEY",
    checks="publish refuses; no key is made; nothing is pushed",
)
def test_ci_never_signs_with_a_freshly_made_key(project: Path, runner: Runner) -> None:
    assert run_dcforge("build", "--no-prune", cwd=project).returncode == 0
    assert run_dcforge("gate", cwd=project).returncode == 0
    result = run_dcforge("publish", cwd=project, env={"CI": "true"})
    assert result.returncode == 7, result.stderr
    assert "COSIGN_KEY is not set" in result.stderr
    assert not (project / ".dcforge/cosign/cosign.key").exists()
    manifest = json.loads((project / "dist/manifest.json").read_text())
    immutable = manifest["permutations"][0]["tags"][0]
    assert registry.digest_or_none(runner, immutable, plain_http=True) is None
