"""The scaffold's workflow run through dcforge's reusable workflow, as GitHub would run it:
``dcforge init``'s ``.github/workflows/images.yml`` in a new repository, its ``uses:``
resolved to this checkout's ``.github/workflows/images.yml``
(tests/integration/actions_runner.py), every called job on what this machine looks like
as ubuntu-24.04, dcforge installed in each job from this checkout's wheel by the version
the reusable workflow pins — as a pull request (build and gate; nothing published) and as
a push to main (published, signed keyless against a local Fulcio with the token GitHub's
endpoint would give the publish job, verified).

Then a consumer with nothing but the image's name: ``verify-image`` passes for the
reusable workflow's identity pinned to the caller's repository and ref, and fails for the
caller's own workflow identity (it did not sign), for another repository calling the same
workflow (it signs as the same identity: the repository pin is what tells them apart)
and for another ref."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import tomllib
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509

from dcforge.core import manifest as mf
from dcforge.core.attestations import PROVENANCE_TYPE
from dcforge.infra.runner import Runner
from tests.integration import oras_oracle as registry_tool
from tests.integration.actions_runner import Event, Rehearsal
from tests.integration.attestation_edits import attestations
from tests.integration.conftest import (
    ROOT,
    KeyPair,
    TrivyDb,
    base_env,
    run_dcforge,
    tags_point_at,
)
from tests.integration.fake_sigstore import Sigstore, Workflow, fake_sigstore
from tests.integration.runner_images import UBUNTU_2404
from tests.integration.test_rehearsal import PR_PAYLOAD
from tests.integration.test_wheel import _wheel
from tests.projects import BUSYBOX_DOCKERFILE, TINY_FAMILY, write_debian_identity

pytestmark = [pytest.mark.integration, pytest.mark.alone(1), pytest.mark.timeout(2400)]

REUSABLE = ROOT / ".github/workflows/images.yml"
OWNER = "dcforge-org"
CALLED = f"{OWNER}/dcforge/.github/workflows/images.yml"
CALLER_REPOSITORY = "acme/images"
# What a local run points elsewhere, and nothing else: GHCR, Docker Hub, GitHub's cache,
# the Trivy DB, the published wheel's hash (this checkout's wheel, which PyPI does not
# serve); and in the publish job, which alone signs, the public Sigstore (Fulcio URL,
# issuer, its root and CT log key; no Rekor).
OVERRIDDEN = {
    "DCFORGE_REGISTRY", "DCFORGE_BASE_REGISTRY", "DCFORGE_CACHE_BACKEND",
    "DCFORGE_CACHE_REGISTRY", "DCFORGE_TRIVY_DB_REPOSITORY", "DCFORGE_SHA256",
}  # fmt: skip
SIGSTORE_OVERRIDDEN = {
    "DCFORGE_COSIGN_FULCIO_URL", "DCFORGE_COSIGN_ISSUER", "DCFORGE_COSIGN_TLOG",
    "SIGSTORE_ROOT_FILE", "SIGSTORE_CT_LOG_PUBLIC_KEY_FILE",
}  # fmt: skip


PLANTED = ("venv.py", "pathlib.py", "dcforge/__init__.py", "sitecustomize.py")
PLANTED_MARK = "caller code ran: "


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *args], capture_output=True, text=True, check=True
    ).stdout.strip()


def _scaffolded(repo: Path, ref: str) -> str:
    """``dcforge init`` in a new repository, its ``uses:`` filled in as the adopter does,
    its example permutations swapped for two tiny ones; one commit. Returns its SHA."""
    repo.mkdir()
    _git(repo, "init", "-q", "-b", "main")
    made = run_dcforge("init", str(repo), cwd=repo)
    assert made.returncode == 0, made.stderr
    caller = repo / ".github/workflows/images.yml"
    text = caller.read_text()
    assert "DCFORGE-OWNER/dcforge/.github/workflows/images.yml@DCFORGE-REF" in text
    caller.write_text(text.replace("DCFORGE-OWNER", OWNER).replace("DCFORGE-REF", ref))
    for folder in ("permutations", "images"):
        shutil.rmtree(repo / folder)
    (repo / "permutations").mkdir()
    (repo / "permutations/tiny.yaml").write_text(TINY_FAMILY)
    ctx = repo / "images/tiny"
    ctx.mkdir(parents=True)
    (ctx / "Dockerfile").write_text(BUSYBOX_DOCKERFILE)
    (ctx / "greeting.txt").write_text("hi\n")
    write_debian_identity(ctx)
    # What a caller could commit to run its own code on the runner, were Python to import
    # from the checkout: none of it may ever run (the install cds away, python -I).
    for module in PLANTED:
        (repo / module).parent.mkdir(parents=True, exist_ok=True)
        (repo / module).write_text(f"raise SystemExit({PLANTED_MARK!r} + {module!r})\n")
    # ... and a build part of its own, which the gate's merge must never take.
    (repo / "parts/part-planted").mkdir(parents=True)
    (repo / "parts/part-planted/manifest.json").write_text("{}\n")
    _git(repo, "add", "-A")
    _git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "scaffold")
    return _git(repo, "rev-parse", "HEAD")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """This checkout's wheel, built once for the module's rehearsals."""
    return _wheel(tmp_path_factory.mktemp("wheel"))


@pytest.fixture
def sigstore(tmp_path: Path) -> Any:
    with fake_sigstore(tmp_path / "sigstore") as s:
        yield s


def test_the_scaffold_publishes_through_the_reusable_workflow_and_consumers_pin_it(
    tmp_path: Path,
    namespace: str,
    trivy_db: TrivyDb,
    sigstore: Sigstore,
    runner: Runner,
    wheel: Path,
) -> None:
    dcforge_ref = "0123456789abcdef0123456789abcdef01234567"
    sha = _scaffolded(tmp_path / "repo", dcforge_ref)
    name = f"rw{uuid.uuid4().hex[:8]}"
    registry = f"{namespace}/{name}"
    cache = f"{namespace}/{name}-cache"
    s = sigstore
    overrides = _overrides(registry, cache, trivy_db, wheel)
    test_sigstore = {
        "DCFORGE_COSIGN_FULCIO_URL": s.fulcio.url,
        "DCFORGE_COSIGN_ISSUER": s.issuer.url,
        "DCFORGE_COSIGN_TLOG": "false",
        **s.trust_env,
    }
    assert set(overrides) == OVERRIDDEN and set(test_sigstore) == SIGSTORE_OVERRIDDEN
    env = _runner_env(wheel)
    signer = Workflow(
        repository=CALLER_REPOSITORY,
        workflow_file="images.yml",
        job_workflow=f"{CALLED}@{dcforge_ref}",
    )
    staging = f"{namespace}/{name}-staging"

    def rehearse(label: str, event: Event, variables: dict[str, str]) -> Rehearsal:
        (tmp_path / label).mkdir()
        rehearsal = Rehearsal(
            tmp_path / "repo/.github/workflows/images.yml", tmp_path / "repo", tmp_path / label,
            event, env, overrides, {"GITHUB_TOKEN": "ghs_notLeaked0123456789"}, variables,
            repository=CALLER_REPOSITORY, image=UBUNTU_2404, workflows={CALLED: REUSABLE},
            id_tokens=s.issuer.serve_actions(signer),
            job_overrides={"images/publish": test_sigstore},
        )  # fmt: skip
        rehearsal.run()
        return rehearsal

    # --- a pull request: built and gated by the called jobs; nothing published -----------
    pr: dict[str, Any] = json.loads(json.dumps(PR_PAYLOAD))
    pr["number"] = pr["pull_request"]["number"] = 5
    checked = rehearse("pr", Event("pull_request", "refs/pull/5/merge", sha, pr), {})
    results = {n: j.result for n, j in checked.jobs.items()}
    assert results == {
        "images": "success", "images/plan": "success", "images/build": "success",
        "images/gate": "success", "images/publish": "skipped",
    }, checked.log()  # fmt: skip
    assert registry_tool.repositories(runner, registry, plain_http=True) == []
    # Only what the reusable workflow says ran: dcforge's commands, never the caller's nox.
    assert PLANTED_MARK not in checked.log()
    ran = [cmd for _, cmd in checked.commands]
    assert ran and all("dcforge" in cmd and "nox" not in cmd for cmd in ran), ran

    # --- a push to main: staged, gated, published, signed keyless, verified ----------------
    push = rehearse(
        "push",
        Event("push", "refs/heads/main", sha, {"ref": "refs/heads/main"}),
        {"DCFORGE_STAGING_REGISTRY": staging},
    )
    results = {n: j.result for n, j in push.jobs.items()}
    assert results == {
        "images": "success", "images/plan": "success", "images/build": "success",
        "images/gate": "success", "images/publish": "success",
    }, push.log()  # fmt: skip
    assert push.jobs["images/publish"].permissions.get("id-token") == "write"
    assert PLANTED_MARK not in push.log()
    assert checked.jobs["images/gate"].permissions.get("id-token") is None
    gated = mf.load(push.artifacts["gated"] / "manifest.json")
    assert all(e.staged.startswith(f"{staging}/main/") for e in gated.permutations)
    assert tags_point_at(runner, gated)
    # Every certificate names the reusable workflow at the ref called, not the caller's.
    names = {
        uri
        for cert in s.fulcio.issued
        for uri in cert.extensions.get_extension_for_class(
            x509.SubjectAlternativeName
        ).value.get_values_for_type(x509.UniformResourceIdentifier)
    }
    assert names == {f"https://github.com/{CALLED}@{dcforge_ref}"}
    # ... and so does the provenance's builder.id, not the caller's workflow.
    for e in gated.permutations:
        predicate = attestations(e.repository, e.image_digest).predicate(PROVENANCE_TYPE)
        assert (
            predicate["runDetails"]["builder"]["id"] == f"https://github.com/{CALLED}@{dcforge_ref}"
        )

    _consumer_checks(gated, s, dcforge_ref)


def _consumer_checks(gated: mf.Manifest, s: Sigstore, dcforge_ref: str) -> None:
    """A consumer with nothing but the image's name."""
    # The reusable workflow's identity, pinned to this repository.
    entry = gated.permutations[0]
    image = f"{entry.repository}:{entry.floating_tags[0]}"
    identity = ["--certificate-identity", f"https://github.com/{CALLED}@{dcforge_ref}",
                "--certificate-oidc-issuer", s.issuer.url]  # fmt: skip
    # The test Sigstore's trust (no Rekor here, a keyless-only knob: the settings' identity
    # is a stranger's, so only the flags below can make anything pass).
    trust = {"DCFORGE_SIGNING": "keyless", "DCFORGE_COSIGN_IDENTITY": "https://github.com/x/y",
             "DCFORGE_COSIGN_TLOG": "false", **s.trust_env}  # fmt: skip
    pinned = [*identity, "--certificate-github-workflow-repository", CALLER_REPOSITORY,
              "--certificate-github-workflow-ref", "refs/heads/main"]  # fmt: skip
    ok = _verify(image, pinned, trust)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    caller_identity = [
        "--certificate-identity", f"https://github.com/{CALLER_REPOSITORY}/.github/workflows/"
        "images.yml@refs/heads/main", "--certificate-oidc-issuer", s.issuer.url,
    ]  # fmt: skip
    # The reusable workflow's identity alone is refused: every repository calling the
    # workflow signs as it, so verify-image asks for the repository.
    unpinned = _verify(image, identity, trust)
    assert unpinned.returncode == 9, unpinned.stdout + unpinned.stderr
    assert f"--certificate-github-workflow-repository {CALLER_REPOSITORY}" in unpinned.stderr
    for refused in (
        caller_identity,
        [*identity, "--certificate-github-workflow-repository", "evil/images"],
        [*identity, "--certificate-github-workflow-repository", CALLER_REPOSITORY,
         "--certificate-github-workflow-ref", "refs/heads/feature"],
    ):  # fmt: skip
        bad = _verify(image, refused, trust)
        assert bad.returncode == 9, (refused, bad.stdout + bad.stderr)


def _overrides(registry: str, cache: str, trivy_db: TrivyDb, wheel: Path) -> dict[str, str]:
    return {
        "DCFORGE_SHA256": hashlib.sha256(wheel.read_bytes()).hexdigest(),
        "DCFORGE_REGISTRY": registry,
        "DCFORGE_BASE_REGISTRY": "localhost:5000/library",
        "DCFORGE_CACHE_BACKEND": "registry",
        "DCFORGE_CACHE_REGISTRY": cache,
        "DCFORGE_TRIVY_DB_REPOSITORY": trivy_db.repository,
    }


def _runner_env(wheel: Path) -> dict[str, str]:
    """The jobs' `pip install dcforge==VERSION` finds this checkout's wheel (PyPI the rest)."""
    env = {**base_env(), "PIP_FIND_LINKS": str(wheel.parent)}
    env.pop("VIRTUAL_ENV", None)
    return env


def test_key_signing_takes_the_key_from_the_production_environment(
    tmp_path: Path,
    namespace: str,
    trivy_db: TrivyDb,
    cosign_keys: KeyPair,
    runner: Runner,
    wheel: Path,
) -> None:
    """``signing: key``: the key pair's private half and password are secrets of the
    caller's environment ``production`` (never passed: a caller job cannot hold an
    environment secret), which the called publish job runs in; the public key is a file of
    the caller's repository. The release verifies with it, and not with another key."""
    dcforge_ref = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "repo"
    _scaffolded(repo, dcforge_ref)
    caller = repo / ".github/workflows/images.yml"
    text = caller.read_text()
    assert "      registry: ghcr.io/${{ github.repository }}\n" in text
    caller.write_text(text.replace(
        "      registry: ghcr.io/${{ github.repository }}\n",
        "      registry: ghcr.io/${{ github.repository }}\n      signing: key\n",
    ))  # fmt: skip
    shutil.copy2(cosign_keys.pub, repo / "cosign.pub")
    _git(repo, "add", "-A")
    _git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "key signing")
    sha = _git(repo, "rev-parse", "HEAD")
    registry = f"{namespace}/rk{uuid.uuid4().hex[:8]}"
    (tmp_path / "push").mkdir()
    push = Rehearsal(
        caller, repo, tmp_path / "push",
        Event("push", "refs/heads/main", sha, {"ref": "refs/heads/main"}),
        _runner_env(wheel), _overrides(registry, f"{registry}-cache", trivy_db, wheel),
        {"GITHUB_TOKEN": "ghs_notLeaked0123456789"},
        repository=CALLER_REPOSITORY, image=UBUNTU_2404, workflows={CALLED: REUSABLE},
        environments={"production": {
            "COSIGN_PRIVATE_KEY": cosign_keys.key.read_text(),
            "COSIGN_PASSWORD": cosign_keys.password,
        }},
    )  # fmt: skip
    push.run()
    assert push.jobs["images/publish"].result == "success", push.log()
    assert cosign_keys.password not in push.log()
    gated = mf.load(push.artifacts["gated"] / "manifest.json")
    entry = gated.permutations[0]
    image = f"{entry.repository}:{entry.floating_tags[0]}"
    ok = run_dcforge("verify-image", image, "--key", str(cosign_keys.pub), cwd=tmp_path)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    keys = tmp_path / "other-keys"
    keys.mkdir()
    runner.run(["cosign", "generate-key-pair"], cwd=keys, env={"COSIGN_PASSWORD": "x"})
    other = run_dcforge("verify-image", image, "--key", str(keys / "cosign.pub"), cwd=tmp_path)
    assert other.returncode == 9, other.stdout + other.stderr


def _verify(image: str, args: list[str], trust: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dcforge", "verify-image", image, *args],
        cwd="/", env={**base_env(), **trust},
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip


def test_the_reusable_workflow_pins_this_version() -> None:
    """The version the reusable workflow installs is the package's it ships with."""
    doc = yaml.safe_load(REUSABLE.read_text())
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert doc["env"]["DCFORGE_VERSION"] == project["version"]
