"""CVE drift: a published image meets a new advisory; rescan finds it, a plain incremental
build would hand back the same image, ``--refresh`` rebuilds it from the (fixed) package
mirror, and the rescan of the new release is clean. Real registry, Trivy, BuildKit."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from dcforge.core import manifest as mf
from dcforge.infra.runner import Runner
from tests.integration.conftest import (
    PrivateRegistry,
    TrivyDb,
    env_for,
    git_commit,
    push_db,
    run_dcforge,
)
from tests.integration.fake_github import FakeGitHub, State
from tests.projects import DPKG_STATUS, write_project, zlib_status

pytestmark = pytest.mark.integration


class Mirror:
    """The package mirror: what the image's package DB is fetched from at build time (an
    ADD of a URL, fetched by BuildKit itself), so a fix lands there, not in the repo."""

    def __init__(self) -> None:
        self.status = DPKG_STATUS + zlib_status()
        mirror = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                return

            def do_GET(self) -> None:
                data = mirror.status.encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/status"


@pytest.fixture
def mirror() -> Iterator[Mirror]:
    m = Mirror()
    yield m
    m.server.shutdown()
    m.server.server_close()


def step(root: Path, env: dict[str, str], *args: str) -> tuple[int, str]:
    result = run_dcforge(*args, cwd=root, env=env, timeout=1200)
    return result.returncode, result.stderr


def test_rescan_finds_drift_and_a_refresh_rebuild_from_the_mirror_clears_it(
    tmp_path: Path,
    private_registry: PrivateRegistry,
    trivy_db: TrivyDb,
    mirror: Mirror,
    runner: Runner,
    namespace: str,
) -> None:
    family = (
        'family: tiny\nname: tiny\ncontext: ../images/tiny\nbase: "{base_registry}/busybox:latest"\n'
        'tags: ["latest"]\n'
    )
    root = write_project(tmp_path / "p", registry=f"{private_registry.host}/dc",
                         families={"tiny.yaml": family})  # fmt: skip
    (root / "images/tiny/Dockerfile").write_text(
        "ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\nCOPY os-release /etc/os-release\n"
        f"ADD {mirror.url} /var/lib/dpkg/status\nRUN echo 12.5 > /etc/debian_version\n"
    )
    (root / ".gitignore").write_text(".dcforge/\ndist/\n")
    git_commit(root)
    before = push_db(
        runner, tmp_path / "db0", f"{namespace}/nothing-yet-{uuid.uuid4().hex[:6]}:2", []
    )
    env = env_for(private_registry, trivy_db, DCFORGE_TRIVY_DB_REPOSITORY=before)
    for args in (("build", "--no-prune"), ("gate",), ("publish",)):
        rc, err = step(root, env, *args)
        assert rc == 0, err
    first = mf.load(root / "dist/manifest.json").permutations[0]

    rc, err = step(root, env, "rescan")
    assert rc == 0, err
    assert json.loads((root / "dist/rescan/rescan.json").read_text())["affected"] == []

    # A new advisory for zlib 1.2.13 (fixed in 1:1.3.0-1) reaches the DB.
    today = {**env, "DCFORGE_TRIVY_DB_REPOSITORY": trivy_db.repository}
    output = tmp_path / "github_output"
    rc, err = step(root, {**today, "GITHUB_OUTPUT": str(output)}, "rescan", "--github-output")
    assert rc == 6, err
    assert "tiny" in err and "--refresh tiny" in err
    found = json.loads((root / "dist/rescan/rescan.json").read_text())
    assert found["affected"] == ["tiny"]
    assert [f["id"] for f in found["images"][0]["blocking"]] == ["CVE-2099-0001"]
    assert found["images"][0]["digest"] == first.image_digest
    sarif = json.loads((root / "dist/rescan/rescan.sarif").read_text())
    assert {r["ruleId"] for r in sarif["runs"][0]["results"]} == {"CVE-2099-0001"}
    assert output.read_text() == "affected=tiny\n"

    # Scheduled in CI: on the default branch only, a refresh build of just those is started.
    with FakeGitHub(State()) as fake:
        ci = {**today, "GITHUB_API_URL": fake.url, "GITHUB_TOKEN": "ghp_" + "z" * 36,
              "GITHUB_REPOSITORY": "acme/images"}  # fmt: skip
        for ref in ("refs/pull/7/merge", "refs/heads/main"):
            rc, err = step(root, {**ci, "GITHUB_REF": ref}, "rescan", "--dispatch-refresh",
                           "build-publish.yml")  # fmt: skip
            assert rc == 6, err
        assert fake.state.dispatches == [
            {"repo": "acme/images", "workflow": "build-publish.yml", "ref": "main",
             "inputs": {"refresh": "tiny"}}
        ]  # fmt: skip
        assert "ghp_" not in err

    # The fix lands in the mirror. Inputs are unchanged: an incremental build reuses the
    # vulnerable image, and the gate says so.
    mirror.status = DPKG_STATUS + zlib_status("1:1.3.0.dfsg-1")
    git_commit(root, "weekly")
    rc, err = step(root, today, "build", "--no-prune", "--since", "last-known-good")
    assert rc == 0, err
    assert mf.load(root / "dist/manifest.json").permutations[0].image_digest == first.image_digest
    rc, err = step(root, today, "gate")
    assert rc == 6 and "CVE-2099-0001" in err

    # --refresh: rebuilt from scratch, from the mirror's fixed package; published; clean.
    refresh = ("build", "--no-prune", "--since", "last-known-good", "--refresh", "tiny")
    rc, err = step(root, today, *refresh)
    assert rc == 0, err
    assert "--refresh: rebuilt from scratch" in err
    refreshed = mf.load(root / "dist/manifest.json").permutations[0]
    assert not refreshed.reused and refreshed.image_digest != first.image_digest
    assert refreshed.input_hash == first.input_hash
    for command in ("gate", "publish", "rescan"):
        rc, err = step(root, today, command)
        assert rc == 0, err
    assert json.loads((root / "dist/rescan/rescan.json").read_text())["affected"] == []
