"""Retention against the real registry (OCI API + its garbage collection) and against a
local server speaking GitHub's Packages and Actions APIs (GHCR cannot be reached here)."""

from __future__ import annotations

import datetime as dt
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from dcforge.core import manifest as mf
from dcforge.infra.runner import Runner
from tests.integration import oras_oracle as registry
from tests.integration.conftest import (
    PrivateRegistry,
    TrivyDb,
    base_env,
    env_for,
    fake_tool,
    publish_release,
    run_dcforge,
)
from tests.integration.fake_github import FakeGitHub, State

pytestmark = pytest.mark.integration

FUTURE = (dt.datetime.now(dt.UTC) + dt.timedelta(days=100)).isoformat()


def state(runner: Runner, reg: PrivateRegistry, namespace: str) -> dict[str, str]:
    out = {}
    for repo in runner.run(
        ["oras", "repo", "ls", "--plain-http", f"{reg.host}/{namespace}"]
    ).stdout.split():
        full = f"{reg.host}/{namespace}/{repo}"
        for tag in registry.tags(runner, full, plain_http=True):
            out[f"{full}:{tag}"] = registry.resolve(runner, f"{full}:{tag}", plain_http=True)
    return out


def exists(runner: Runner, m: mf.Manifest) -> list[bool]:
    return [
        registry.digest_or_none(runner, f"{e.repository}@{e.image_digest}", plain_http=True)
        is not None
        for e in m.permutations
    ]


def sig_tags(m: mf.Manifest) -> list[str]:
    return [f"{e.repository}:sha256-{e.image_digest[7:]}.sig" for e in m.permutations]


def test_oci_retention_keeps_every_kept_release_usable(
    project: Path, private_registry: PrivateRegistry, trivy_db: TrivyDb, runner: Runner
) -> None:
    env = {**env_for(private_registry, trivy_db), "DCFORGE_KEEP_RELEASES": "1"}
    a = publish_release(project, env, "A\n")
    b = publish_release(project, env, "B\n")
    c = publish_release(project, env, "C\n")
    assert run_dcforge("pin", "--sha", a.git_sha, cwd=project, env=env).returncode == 0
    before = state(runner, private_registry, "dc")

    dry = run_dcforge("prune", "--registry", "--now", FUTURE, cwd=project, env=env)
    assert dry.returncode == 0, dry.stderr
    assert "pass --yes to delete" in dry.stderr
    for e in b.permutations:
        assert f"delete {e.repository}@{e.image_digest[:19]}" in dry.stderr
    assert state(runner, private_registry, "dc") == before  # nothing deleted without --yes

    done = run_dcforge("prune", "--registry", "--yes", "--now", FUTURE, cwd=project, env=env)
    assert done.returncode == 0, done.stderr
    after = state(runner, private_registry, "dc")
    assert exists(runner, b) == [False, False]
    assert exists(runner, a) == [True, True]
    assert exists(runner, c) == [True, True]
    for tag in sig_tags(b):
        assert tag not in after
    for tag in sig_tags(a) + sig_tags(c):
        assert after[tag] == before[tag]
    releases = f"{private_registry.host}/dc/dcforge-releases"
    assert f"{releases}:{b.git_sha}" not in after
    assert f"{releases}:{a.git_sha}" in after

    # The registry's garbage collection, then every kept release still works.
    private_registry.stop()
    gc = subprocess.run(
        ["docker-registry", "garbage-collect", str(private_registry.config)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert gc.returncode == 0, gc.stderr
    private_registry.start()
    for m in (a, c):
        rolled = run_dcforge("rollback", "--sha", m.git_sha, cwd=project, env=env)
        assert rolled.returncode == 0, rolled.stderr
        verified = run_dcforge("verify", "--sha", m.git_sha, cwd=project, env=env)
        assert verified.returncode == 0, verified.stderr
    gone = run_dcforge("rollback", "--sha", b.git_sha, cwd=project, env=env)
    assert gone.returncode == 10
    assert "no published release" in gone.stderr


def _fake_from_registry(runner: Runner, reg: PrivateRegistry, old: set[str]) -> State:
    """GHCR's view of the registry: one version per digest, old ones dated January."""
    st = State(registry_port=reg.port, owner="acme")
    for ref, digest in sorted(state(runner, reg, "acme/dc").items()):
        repo, tag = ref.rsplit(":", 1)
        package = repo.split("/acme/", 1)[1]
        versions = st.packages.setdefault(package, [])
        match = next((v for v in versions if v["name"] == digest), None)
        subject = f"sha256:{tag[7:71]}" if tag.startswith("sha256-") else digest
        when = "2026-01-01T00:00:00Z" if subject in old else "2026-02-01T00:00:00Z"
        if match:
            match["metadata"]["container"]["tags"].append(tag)
        else:
            st.add_version(package, digest, [tag], when)
    return st


def _ghcr_env(project_env: dict[str, str], fake: FakeGitHub) -> dict[str, str]:
    """GHCR as it is: no /v2/_catalog (the registry's catalog, `oras repo ls`, fails as
    GHCR's does), so the repositories must come from the Packages API."""
    real = shutil.which("oras")
    no_catalog = fake_tool(
        Path(tempfile.mkdtemp(prefix="ghcr-")),
        "oras",
        'if [ "$1 $2" = "repo ls" ]; then\n'
        '  echo "Error: GET /v2/_catalog: 404 Not Found (GHCR has no catalog)" >&2; exit 1\n'
        f'fi\nexec {real} "$@"\n',
    )
    return {
        **project_env,
        "DCFORGE_RETENTION_BACKEND": "ghcr",
        "GITHUB_API_URL": fake.url,
        "GITHUB_TOKEN": "ghp_" + "x" * 36,
        "DCFORGE_KEEP_RELEASES": "1",
        "PATH": f"{no_catalog}:{base_env()['PATH']}",
    }


@pytest.fixture
def ghcr_releases(
    project: Path, private_registry: PrivateRegistry, trivy_db: TrivyDb, runner: Runner
) -> tuple[Path, dict[str, str], mf.Manifest, mf.Manifest, set[str]]:
    env = {
        **env_for(private_registry, trivy_db),
        "DCFORGE_REGISTRY": f"{private_registry.host}/acme/dc",
    }
    a = publish_release(project, env, "A\n")
    b = publish_release(project, env, "B\n")
    releases = f"{private_registry.host}/acme/dc/dcforge-releases"
    a_record = registry.resolve(runner, f"{releases}:{a.git_sha}", plain_http=True)
    old = {e.image_digest for e in a.permutations} | {a_record}
    return project, env, a, b, old


def test_ghcr_retention_through_the_packages_api(
    ghcr_releases: tuple[Path, dict[str, str], mf.Manifest, mf.Manifest, set[str]],
    private_registry: PrivateRegistry,
    runner: Runner,
) -> None:
    project, env, a, b, old = ghcr_releases
    st = _fake_from_registry(runner, private_registry, old)
    st.rate_limit_next = 2  # the first two calls are answered 429 Retry-After: 0
    with FakeGitHub(st) as fake:
        genv = _ghcr_env(env, fake)
        dry = run_dcforge(
            "prune", "--registry", "--now", "2026-11-28T00:00:00Z", cwd=project, env=genv
        )
        assert dry.returncode == 0, dry.stderr
        assert st.deletes == 0
        done = run_dcforge(
            "prune", "--registry", "--yes", "--now", "2026-11-28T00:00:00Z", cwd=project, env=genv
        )
        assert done.returncode == 0, done.stderr
    assert st.requests[0] == st.requests[1] == st.requests[2]  # retried after the 429s
    assert all(h == "Bearer " + "ghp_" + "x" * 36 for h in st.auth)
    assert "ghp_" not in done.stderr + dry.stderr
    remaining = {v["name"] for vs in st.packages.values() for v in vs}
    assert not ({e.image_digest for e in a.permutations} & remaining)
    assert {e.image_digest for e in b.permutations} <= remaining
    assert exists(runner, a) == [False, False]
    assert run_dcforge("verify", cwd=project, env=env).returncode == 0


@pytest.mark.reliability(
    scenario="API error half-way through retention",
    checks="report of what was and wasn't deleted; kept release still verifies",
)
def test_ghcr_error_half_way_reports_and_orphans_nothing_kept(
    ghcr_releases: tuple[Path, dict[str, str], mf.Manifest, mf.Manifest, set[str]],
    private_registry: PrivateRegistry,
    runner: Runner,
) -> None:
    project, env, _, _, old = ghcr_releases
    st = _fake_from_registry(runner, private_registry, old)
    st.fail_delete_after = 1
    with FakeGitHub(st) as fake:
        result = run_dcforge(
            "prune",
            "--registry",
            "--yes",
            "--now",
            "2026-11-28T00:00:00Z",
            cwd=project,
            env=_ghcr_env(env, fake),
        )
    assert result.returncode == 11
    assert "stopped after deleting 1 of" in result.stderr
    assert "not deleted:" in result.stderr
    assert "403" in result.stderr
    # Release B (kept) still verifies: its signatures and attestations are all there.
    assert run_dcforge("verify", cwd=project, env=env).returncode == 0


def test_workflow_artifacts_older_than_30_days(tmp_path: Path) -> None:
    st = State()
    for i in range(230):  # more than two pages
        age = 45 if i % 2 else 5
        created = (dt.datetime(2026, 11, 28, tzinfo=dt.UTC) - dt.timedelta(days=age)).isoformat()
        st.artifacts.append(
            {
                "id": i + 1,
                "name": f"tarballs-{i}",
                "size_in_bytes": 1000,
                "created_at": created.replace("+00:00", "Z"),
                "expired": False,
            }
        )
    st.rate_limit_next = 1
    with FakeGitHub(st) as fake:
        env = {
            "GITHUB_API_URL": fake.url,
            "GITHUB_TOKEN": "ghs_" + "y" * 36,
            "GITHUB_REPOSITORY": "acme/images",
        }
        dry = run_dcforge(
            "prune", "--artifacts", "--now", "2026-11-28T00:00:00Z", cwd=tmp_path, env=env
        )
        assert dry.returncode == 0, dry.stderr
        assert len(st.artifacts) == 230
        done = run_dcforge(
            "prune", "--artifacts", "--yes", "--now", "2026-11-28T00:00:00Z", cwd=tmp_path, env=env
        )
        assert done.returncode == 0, done.stderr
    assert len(st.artifacts) == 115
    assert all(a["id"] % 2 == 1 for a in st.artifacts)  # the young ones (even index → odd id)
    assert "deleted 115 artifact(s)" in done.stderr


@pytest.mark.reliability(
    scenario="the pinned release's record does not verify during retention",
    checks="--yes stops before the first delete; the plan keeps the pinned record",
)
def test_a_record_that_does_not_verify_stops_retention_before_any_delete(
    project: Path, private_registry: PrivateRegistry, trivy_db: TrivyDb, runner: Runner
) -> None:
    env = env_for(private_registry, trivy_db, DCFORGE_KEEP_RELEASES="1")
    publish_release(project, env, "release A\n")
    b = publish_release(project, env, "release B\n")  # pinned, served by the floating tags
    releases = f"{private_registry.host}/dc/dcforge-releases"
    record = registry.resolve(runner, f"{releases}:{b.git_sha}", plain_http=True)
    # The record's signature is gone (as after a cosign timeout or a key rotation, the
    # signature check fails): the pin itself still verifies.
    signature = f"{releases}:sha256-{record[7:]}.sig"
    registry.delete(runner, f"{releases}@{registry.resolve(runner, signature, plain_http=True)}",
                    plain_http=True)  # fmt: skip
    before = state(runner, private_registry, "dc")

    planned = run_dcforge("prune", "--registry", "--now", FUTURE, cwd=project, env=env)
    assert planned.returncode == 0, planned.stderr
    assert "with --yes this stops the run" in planned.stderr
    assert f"keep   {releases}@{record[:19]}" in planned.stderr

    done = run_dcforge("prune", "--registry", "--yes", "--now", FUTURE, cwd=project, env=env)
    assert done.returncode != 0
    assert f"{releases}@{record[:19]}" in done.stderr and "nothing deleted" in done.stderr
    assert "Traceback" not in done.stderr
    assert state(runner, private_registry, "dc") == before
