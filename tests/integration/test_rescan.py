"""CVE drift, from a real package mirror: a published image meets a new advisory; rescan
finds it, a plain incremental build would hand back the same image, ``--refresh`` rebuilds
only the affected permutation from the mirror (now serving the fixed package), and the
rescan of the new release is clean; the unaffected permutation keeps its digest.

The mirror is a signed apt repository (tests/integration/apt_repo.py: ``dpkg-deb`` and a
throwaway gpg key the image trusts) served where a build's ``RUN apt-get`` reaches it (the
docker bridge's gateway). Real registry, Trivy, BuildKit, apt."""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from dcforge.core import manifest as mf
from dcforge.core.trivydb import Advisory
from dcforge.infra.runner import Runner
from tests.integration import oras_oracle
from tests.integration.apt_repo import AptRepo, serve
from tests.integration.conftest import (
    PrivateRegistry,
    TrivyDb,
    env_for,
    git_commit,
    publish_release,
    push_db,
    run_dcforge,
)
from tests.integration.fake_github import FakeGitHub, State
from tests.projects import write_project

pytestmark = pytest.mark.integration

PACKAGE = "demo-lib"
VULNERABLE, FIXED = "1.0-1", "1.1-1"
ADVISORY = Advisory("CVE-2099-0101", PACKAGE, FIXED, "CRITICAL")


def _gateway() -> str:
    """The docker bridge's gateway: the host, as a build's RUN step reaches it."""
    return subprocess.run(
        ["docker", "network", "inspect", "bridge", "-f", "{{(index .IPAM.Config 0).Gateway}}"],
        capture_output=True, text=True, check=True, timeout=60,
    ).stdout.strip()  # fmt: skip


@pytest.fixture
def mirror(tmp_path: Path) -> Iterator[tuple[AptRepo, str]]:
    """The package mirror, serving demo-lib at its vulnerable version."""
    with AptRepo(tmp_path / "apt") as repo:
        repo.publish(PACKAGE, VULNERABLE, source=PACKAGE)
        with serve(repo, host="0.0.0.0", advertise=_gateway()) as url:  # noqa: S104
            yield repo, url


def step(root: Path, env: dict[str, str], *args: str) -> tuple[int, str]:
    result = run_dcforge(*args, cwd=root, env=env, timeout=1200)
    return result.returncode, result.stderr


def test_rescan_finds_drift_and_a_refresh_rebuild_from_the_mirror_clears_it(
    tmp_path: Path,
    private_registry: PrivateRegistry,
    mirror: tuple[AptRepo, str],
    runner: Runner,
    namespace: str,
) -> None:
    repo, url = mirror
    root = _project(tmp_path / "p", private_registry, repo, url)
    git_commit(root)
    db = tmp_path / "db"
    before = push_db(runner, db / "0", f"{namespace}/nothing-yet-{uuid.uuid4().hex[:6]}:2", [])
    today_db = push_db(runner, db / "1", f"{namespace}/today-{uuid.uuid4().hex[:6]}:2", [ADVISORY])
    env = env_for(private_registry, TrivyDb(before, tmp_path / "cache"))
    for args in (("build", "--no-prune"), ("gate",), ("publish",)):
        rc, err = step(root, env, *args)
        assert rc == 0, err
    first = {e.name: e for e in mf.load(root / "dist/manifest.json").permutations}
    assert any(f"/pool/main/d/{PACKAGE}/{PACKAGE}_{VULNERABLE}_all.deb 200" in r
               for r in repo.requests), repo.requests  # fmt: skip

    rc, err = step(root, env, "rescan")
    assert rc == 0, err
    assert json.loads((root / "dist/rescan/rescan.json").read_text())["affected"] == []

    # A new advisory for demo-lib (fixed in 1.1-1) reaches the DB: only lib is affected.
    today = {**env, "DCFORGE_TRIVY_DB_REPOSITORY": today_db}
    output = tmp_path / "github_output"
    rc, err = step(root, {**today, "GITHUB_OUTPUT": str(output)}, "rescan", "--github-output")
    assert rc == 6, err
    assert "--refresh lib" in err
    assert not _reused(err)  # scanned under the old DB: another key, scanned again
    found = json.loads((root / "dist/rescan/rescan.json").read_text())
    assert found["affected"] == ["lib"]
    (image,) = [i for i in found["images"] if i["blocking"]]
    assert [f["id"] for f in image["blocking"]] == [ADVISORY.cve]
    assert image["digest"] == first["lib"].image_digest
    _reported(root, output)

    _dispatches_a_refresh_of(root, today, "lib")

    # The fix lands in the mirror. Inputs are unchanged: an incremental build reuses the
    # vulnerable image, and the gate says so.
    repo.publish(PACKAGE, FIXED, source=PACKAGE)
    git_commit(root, "weekly")
    rc, err = step(root, today, "build", "--no-prune", "--since", "last-known-good")
    assert rc == 0, err
    again = {e.name: e for e in mf.load(root / "dist/manifest.json").permutations}
    assert again["lib"].image_digest == first["lib"].image_digest
    rc, err = step(root, today, "gate")
    assert rc == 6 and ADVISORY.cve in err

    # --refresh lib: rebuilt from scratch, apt-get installing the fixed package from the
    # mirror; tiny untouched; published; the rescan of the new release is clean.
    refresh = ("build", "--no-prune", "--since", "last-known-good", "--refresh", "lib")
    rc, err = step(root, today, *refresh)
    assert rc == 0, err
    assert "--refresh: rebuilt from scratch" in err
    refreshed = {e.name: e for e in mf.load(root / "dist/manifest.json").permutations}
    assert not refreshed["lib"].reused
    assert refreshed["lib"].image_digest != first["lib"].image_digest
    assert refreshed["lib"].input_hash == first["lib"].input_hash
    assert refreshed["tiny"].reused
    assert refreshed["tiny"].image_digest == first["tiny"].image_digest
    assert any(f"/pool/main/d/{PACKAGE}/{PACKAGE}_{FIXED}_all.deb 200" in r
               for r in repo.requests), repo.requests  # fmt: skip
    _publish_and_rescan_clean(root, today, first, refreshed)


def _publish_and_rescan_clean(
    root: Path, today: dict[str, str], first: dict[str, mf.Entry], refreshed: dict[str, mf.Entry]
) -> None:
    said = {}
    for command in ("gate", "publish", "rescan"):
        rc, said[command] = step(root, today, command)
        assert rc == 0, said[command]
    clean = json.loads((root / "dist/rescan/rescan.json").read_text())
    assert clean["affected"] == []
    assert {i["digest"] for i in clean["images"]} == {
        refreshed["lib"].image_digest,
        first["tiny"].image_digest,
    }
    # Same image, same DB, policy and Trivy: the gate took tiny's scan from the rescan, and
    # the rescan of the new release both from the gate and the rescan before it. Asked not
    # to, it scans both again and says the same.
    assert _reused(said["gate"]) == {"tiny"}, said["gate"]
    assert _reused(said["rescan"]) == {"lib", "tiny"}, said["rescan"]
    rc, err = step(root, today, "rescan", "--no-scan-cache")
    assert rc == 0 and not _reused(err), err
    assert json.loads((root / "dist/rescan/rescan.json").read_text())["images"] == clean["images"]


def _reused(stderr: str) -> set[str]:
    return {line.split()[0] for line in stderr.splitlines() if " scan reused " in line}


def _project(where: Path, registry: PrivateRegistry, repo: AptRepo, url: str) -> Path:
    """Two permutations: lib (Debian, demo-lib from the mirror by apt-get) and tiny."""
    families = {
        "lib.yaml": "family: lib\nname: lib\ncontext: ../images/lib\n"
        'base: "{base_registry}/debian:bookworm"\ntags: ["latest"]\n',
        "tiny.yaml": "family: tiny\nname: tiny\ncontext: ../images/tiny\n"
        'base: "{base_registry}/busybox:latest"\ntags: ["latest"]\n',
    }
    root = write_project(where, registry=f"{registry.host}/dc",
                         families=families)  # fmt: skip
    ctx = root / "images/lib"
    ctx.mkdir()
    repo.write_context(ctx, url)
    (ctx / "Dockerfile").write_text(
        "ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\n" + AptRepo.dockerfile_snippet(PACKAGE)
    )
    (root / ".gitignore").write_text(".dcforge/\ndist/\n")
    return root


def _dispatches_a_refresh_of(root: Path, today: dict[str, str], affected: str) -> None:
    """Scheduled in CI: on the default branch only, a refresh build of just those."""
    with FakeGitHub(State()) as fake:
        ci = {**today, "GITHUB_API_URL": fake.url, "GITHUB_TOKEN": "ghp_" + "z" * 36,
              "GITHUB_REPOSITORY": "acme/images"}  # fmt: skip
        for ref in ("refs/pull/7/merge", "refs/heads/main"):
            rc, err = step(root, {**ci, "GITHUB_REF": ref}, "rescan", "--dispatch-refresh",
                           "build-publish.yml")  # fmt: skip
            assert rc == 6, err
        assert fake.state.dispatches == [
            {"repo": "acme/images", "workflow": "build-publish.yml", "ref": "main",
             "inputs": {"refresh": affected}}
        ]  # fmt: skip
        assert "ghp_" not in err


def _reported(root: Path, output: Path) -> None:
    """The rescan's SARIF names the advisory, and the job output the affected permutation."""
    sarif = json.loads((root / "dist/rescan/rescan.sarif").read_text())
    assert {r["ruleId"] for r in sarif["runs"][0]["results"]} == {ADVISORY.cve}
    assert output.read_text() == "affected=lib\n"


def test_a_floating_tag_moved_by_hand_is_rescanned_as_its_own_image(
    project: Path,
    private_registry: PrivateRegistry,
    trivy_db: TrivyDb,
    vulnerable_tar: Path,
    runner: Runner,
) -> None:
    """Someone moves a live floating tag to another image (here: one with a planted
    CRITICAL). The rescan scans both — the pinned image and what the tag serves — each
    into reports of its own and, kept by digest, each under its own report: scanned side
    by side under one file name, one image's report could be read, and kept, as the
    other's (the rescan after it would then reuse the wrong one)."""
    env = env_for(private_registry, trivy_db)
    m = publish_release(project, env)
    entry = next(e for e in m.permutations if e.floating_tags)
    moved = f"{entry.repository}:{entry.floating_tags[0]}"
    runner.run(["skopeo", "copy", "--quiet", "--dest-tls-verify=false",
                f"oci-archive:{vulnerable_tar}", f"docker://{moved}"])  # fmt: skip
    planted = oras_oracle.resolve(runner, moved, plain_http=True)
    assert planted != entry.image_digest
    for attempt in ("scanned", "reused"):
        rc, err = step(project, env, "rescan")
        assert rc == 6, err
        found = json.loads((project / "dist/rescan/rescan.json").read_text())
        mine = {i["digest"]: i for i in found["images"] if i["permutation"] == entry.name}
        assert set(mine) == {entry.image_digest, planted}, (attempt, found["images"])
        assert not mine[entry.image_digest]["blocking"], attempt
        assert [f["id"] for f in mine[planted]["blocking"]] == ["CVE-2099-0001"], attempt
        assert found["affected"] == [entry.name]
        reports = {
            p.name: {
                v["VulnerabilityID"]
                for r in json.loads(p.read_text()).get("Results") or []
                for v in r.get("Vulnerabilities") or []
            }
            for p in (project / "dist/rescan").glob(f"{entry.name}*.trivy.json")
        }
        # Each image's own report: the planted CVE in the moved tag's, not in the pinned's
        # (which a gate of the same image with this DB may have made: reused).
        assert reports == {
            f"{entry.name}.trivy.json": set(),
            f"{entry.name}+{planted[7:19]}.trivy.json": {"CVE-2099-0001"},
        }, (attempt, reports)
    assert _reused(err) >= {entry.name}, err
