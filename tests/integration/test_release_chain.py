"""The chain from a release record to what users pull, attacked with the real registry and
cosign: swapped records and pins, a tag moved under a publish, provenance read by a strict
SLSA v1 parser, dirty trees, retention racing a rollback, and a release that fails verify."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import pytest

from dcforge.core import trivydb
from dcforge.infra import locks
from dcforge.infra.runner import Runner
from tests.integration import oras_oracle as registry
from tests.integration.conftest import (
    KeyPair,
    PrivateRegistry,
    TrivyDb,
    TwoReleases,
    base_env,
    build_and_gate,
    env_for,
    fake_tool,
    git_commit,
    pinned_record,
    push_db,
    run_dcforge,
    tags_point_at,
)
from tests.unit.test_provenance import strict_validate

pytestmark = pytest.mark.integration

SLSA_V1 = "https://slsa.dev/provenance/v1"


@pytest.mark.reliability(
    scenario="a validly signed older record put under a newer release's tag, or the pin",
    checks="rollback, verify and --since refuse, naming both releases; no tag moves",
)
def test_a_record_or_pin_moved_onto_another_release_is_refused(
    two_releases: TwoReleases, runner: Runner
) -> None:
    r = two_releases
    a_record = registry.resolve(runner, f"{r.releases}:{r.a.git_sha}", plain_http=True)
    # The attack: A's record (signed, valid) copied onto the tags of release B (``<sha>``
    # and its publish's own ``<sha>.1``, which readers go by).
    registry.tag(
        runner, f"{r.releases}@{a_record}", [r.b.git_sha, f"{r.b.git_sha}.1"], plain_http=True
    )
    for command, code in ((["rollback", "--sha"], 10), (["verify", "--sha"], 9)):
        result = run_dcforge(*command, r.b.git_sha, cwd=r.root, env=r.env)
        assert result.returncode == code, result.stderr
        last = result.stderr.strip().splitlines()[-1]
        assert f"holds the record of release {r.a.git_sha[:12]}, not of {r.b.git_sha[:12]}" in last
    assert tags_point_at(runner, r.b)
    since = run_dcforge("build", "--no-prune", "--since", r.b.git_sha, cwd=r.root, env=r.env)
    assert since.returncode == 2
    assert "holds the record of release" in since.stderr

    # The pin re-pointed at A's record: not a signed pin statement, refused.
    registry.tag(runner, f"{r.releases}@{a_record}", ["last-known-good"], plain_http=True)
    result = run_dcforge("rollback", "--last-known-good", cwd=r.root, env=r.env)
    assert result.returncode == 10, result.stderr
    assert "is not a dcforge pin statement" in result.stderr
    assert tags_point_at(runner, r.b)
    assert run_dcforge("verify", cwd=r.root, env=r.env).returncode == 9


def _oras_that_moves_the_tag(directory: Path, real: str, evil: str) -> Path:
    """An ``oras`` whose push of a release record is followed, at once, by another writer
    moving that tag to ``evil`` (the race between a push and reading the tag back)."""
    return fake_tool(
        directory,
        "oras",
        f'{real} "$@" || exit $?\n'
        'if [ "$1" = push ]; then\n'
        '  for a in "$@"; do\n'
        '    if echo "$a" | grep -Eq "dcforge-releases:[0-9a-f]{40}(\\.[0-9]+)?$"; then\n'
        "      ref=$a\n"
        "    fi\n"
        "  done\n"
        f'  [ -n "$ref" ] && {real} tag --plain-http "{evil}" "${{ref##*:}}" >/dev/null\n'
        "fi\n"
        "exit 0\n",
    )


@pytest.mark.reliability(
    scenario="the record's tag moved between its push and its signing",
    checks="the pushed digest is signed; the other writer's artifact is not",
)
def test_the_record_is_signed_by_the_digest_its_push_wrote(
    project: Path,
    private_registry: PrivateRegistry,
    trivy_db: TrivyDb,
    runner: Runner,
    tmp_path: Path,
) -> None:
    env = env_for(private_registry, trivy_db)
    m = build_and_gate(project, env)
    releases = f"{private_registry.host}/dc/dcforge-releases"
    (tmp_path / "evil.json").write_text('{"kind": "not-a-release"}\n')
    registry.push_artifact(
        runner,
        f"{releases}:evil",
        tmp_path,
        "evil.json",
        artifact_type="application/vnd.dcforge.release.v1+json",
        annotations={},
        plain_http=True,
    )
    evil = f"{releases}@{registry.resolve(runner, f'{releases}:evil', plain_http=True)}"
    fake = _oras_that_moves_the_tag(tmp_path / "bin", runner.which("oras"), evil)
    path = f"{fake}{os.pathsep}{base_env()['PATH']}"
    result = run_dcforge("publish", cwd=project, env={**env, "PATH": path})
    assert result.returncode == 0, result.stderr
    pub = project / ".dcforge/cosign/cosign.pub"
    verify = ["cosign", "verify", "--key", str(pub), "--insecure-ignore-tlog"]
    verify += ["--allow-http-registry"]
    evil_check = runner.run([*verify, evil], check=False)
    assert evil_check.returncode != 0, "the other writer's artifact was signed with our key"
    pushed = pinned_record(runner, releases, tmp_path)
    assert runner.run([*verify, f"{releases}@{pushed}"], check=False).returncode == 0
    assert pushed != evil.rsplit("@", 1)[1]
    assert m.git_sha in result.stderr


def _provenance(runner: Runner, pub: Path, ref: str) -> dict[str, object]:
    out = runner.run(
        [
            "cosign",
            "verify-attestation",
            "--type",
            SLSA_V1,
            "--key",
            pub,
            "--insecure-ignore-tlog",
            "--allow-http-registry",
            ref,
        ]
    ).stdout
    statement: dict[str, object] = json.loads(
        base64.b64decode(json.loads(out.splitlines()[0])["payload"])
    )
    return statement


def test_published_provenance_is_strict_slsa_v1(two_releases: TwoReleases, runner: Runner) -> None:
    r = two_releases
    pub = r.root / ".dcforge/cosign/cosign.pub"
    ids = set()
    for m in (r.a, r.b):
        e = m.permutations[0]
        statement = _provenance(runner, pub, f"{e.repository}@{e.image_digest}")
        assert statement["predicateType"] == SLSA_V1
        subjects = statement["subject"]
        assert isinstance(subjects, list)
        assert subjects[0]["digest"]["sha256"] == e.image_digest.removeprefix("sha256:")
        predicate = statement["predicate"]
        assert isinstance(predicate, dict)
        proto = strict_validate(predicate)  # unknown fields (cosign's invocationID) fail here
        ids.add(proto.run_details.metadata.invocation_id)
        source = predicate["buildDefinition"]["externalParameters"]["source"]["repository"]
        assert not source.startswith(("file:", "/"))
    assert len(ids) == 2  # one invocation id per publish run


@pytest.mark.reliability(
    scenario="a build from a dirty tree (untracked file in a build context)",
    checks="publish refused without --allow-dirty; with it, the provenance says so",
)
def test_a_dirty_tree_is_refused_unless_allowed(
    project: Path, private_registry: PrivateRegistry, trivy_db: TrivyDb, runner: Runner
) -> None:
    env = env_for(private_registry, trivy_db)
    (project / "images/tiny/untracked.txt").write_text("not in any commit\n")
    head = subprocess.run(
        ["git", "-C", str(project), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()
    m = build_and_gate(project, {**env, "DCFORGE_GIT_SHA": head})
    assert m.git_dirty is True  # DCFORGE_GIT_SHA names the commit; it does not clean the tree
    refused = run_dcforge("publish", cwd=project, env=env)
    assert refused.returncode == 7, refused.stderr
    assert "built from a dirty tree" in refused.stderr
    assert "--allow-dirty" in refused.stderr
    allowed = run_dcforge("publish", "--allow-dirty", cwd=project, env=env)
    assert allowed.returncode == 0, allowed.stderr
    e = m.permutations[0]
    pub = project / ".dcforge/cosign/cosign.pub"
    predicate = _provenance(runner, pub, f"{e.repository}@{e.image_digest}")["predicate"]
    assert isinstance(predicate, dict)
    internal = predicate["buildDefinition"]["internalParameters"]
    assert internal["gitDirty"] is True
    assert internal["allowDirty"] is True


def _read_until(stream: object, needle: str) -> tuple[bool, list[str]]:
    """Lines of ``stream`` until one contains ``needle`` (True) or the stream ends (False)."""
    seen = []
    for line in iter(stream.readline, ""):  # type: ignore[attr-defined]
        seen.append(line)
        if needle in line:
            return True, seen
    return False, seen


@pytest.mark.reliability(
    scenario="retention started while a rollback holds the registry lock",
    checks="retention waits; what the rollback reinstated is never deleted",
)
def test_retention_waits_for_a_rollback_and_keeps_what_it_reinstated(
    two_releases: TwoReleases, runner: Runner
) -> None:
    r = two_releases
    env = {**r.env, "DCFORGE_KEEP_RELEASES": "1", "DCFORGE_IMAGE_RETENTION_DAYS": "1"}
    argv = [sys.executable, "-m", "dcforge", "prune", "--registry", "--yes"]
    argv += ["--now", "2099-01-01T00:00:00Z"]
    registry_name = r.env["DCFORGE_REGISTRY"]
    locks.configure(locks.directory_for(base_env()))  # where the dcforge process looks
    with locks.registry_lock(registry_name):  # the rollback's critical section
        proc = subprocess.Popen(
            argv,
            cwd=r.root,
            env={**base_env(), **env},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        waiting, seen = _read_until(proc.stderr, "waiting for another publish/rollback")
        assert waiting, "retention did not wait for the lock:\n" + "".join(seen)
        # What the rollback does while it holds the lock: A's images back on the tags.
        for e in r.a.permutations:
            ref = f"{e.repository}@{e.image_digest}"
            registry.tag(runner, ref, list(e.floating_tags), plain_http=True)
    rest = threading.Thread(target=lambda: seen.extend(proc.stderr or []))
    rest.start()
    assert proc.wait(timeout=600) == 0, "".join(seen)
    rest.join()
    if proc.stderr is not None:
        proc.stderr.close()
    assert tags_point_at(runner, r.a)
    # Release A is served again: its images and its record survived, and it still verifies.
    for e in r.a.permutations:
        assert registry.digest_or_none(runner, f"{e.repository}@{e.image_digest}", plain_http=True)
    assert run_dcforge("verify", "--sha", r.a.git_sha, cwd=r.root, env=r.env).returncode == 0


@pytest.mark.reliability(
    scenario="the new release does not verify",
    checks="nothing recorded, no tag moved; last-known-good stays",
)
def test_last_known_good_moves_only_after_verify(
    two_releases: TwoReleases, runner: Runner, other_keys: KeyPair, tmp_path: Path
) -> None:
    r = two_releases
    pinned = pinned_record(runner, r.releases, tmp_path)
    (r.root / "images/tiny/greeting.txt").write_text("release C\n")
    c_sha = git_commit(r.root, "C")
    build_and_gate(r.root, r.env)
    # Signing works, but verification is done with a key that did not sign: verify fails.
    # (Given as a file, the other public key is refused before anything is pushed — the
    # pair is checked then; cosign's env:// form is read by cosign alone, at verify.)
    env = {
        **r.env,
        "COSIGN_PUBLIC_KEY": "env://TEST_OTHER_COSIGN_PUB",
        "TEST_OTHER_COSIGN_PUB": other_keys.pub.read_text(),
    }
    result = run_dcforge("publish", cwd=r.root, env=env)
    assert result.returncode == 7, result.stderr
    assert "last-known-good was NOT moved" in result.stderr
    assert pinned_record(runner, r.releases, tmp_path) == pinned
    assert tags_point_at(runner, r.b)
    # No record of C: nothing signed names C's unverified signature/attestation manifests.
    assert registry.digest_or_none(runner, f"{r.releases}:{c_sha}", plain_http=True) is None


def _publish(root: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return run_dcforge("publish", cwd=root, env=env)


def _publish_again(r: TwoReleases, runner: Runner, work: Path) -> None:
    """Publish 2 of the pinned SHA: the same images gated again with a newer DB (what a
    refresh whose fix is not in the mirror yet does). The same images under the same
    verdict would be a reproduction, which publishes nothing (test_reproduce)."""
    newer = push_db(
        runner,
        work / "newer-db",
        r.releases.replace("/dcforge-releases", f"/trivy-db-{uuid.uuid4().hex[:8]}:2"),
        [trivydb.Advisory("CVE-2099-0001", "zlib", "1:1.3.0-1", "CRITICAL")],
    )
    env = {**r.env, "DCFORGE_TRIVY_DB_REPOSITORY": newer}
    build_and_gate(r.root, env)
    published = _publish(r.root, env)
    assert published.returncode == 0, published.stderr


@pytest.mark.reliability(
    scenario="a SHA published twice (refresh, re-run); the earlier record put back on its tags",
    checks="readers take the newest publish and refuse the earlier one; the pin names it",
)
def test_a_superseded_publish_of_a_sha_is_refused(
    two_releases: TwoReleases, runner: Runner, tmp_path: Path
) -> None:
    r = two_releases
    sha = r.b.git_sha
    first = registry.resolve(runner, f"{r.releases}:{sha}", plain_http=True)
    # The same SHA again, under a newer verdict (a refresh): a record of its own.
    _publish_again(r, runner, tmp_path)
    second = registry.resolve(runner, f"{r.releases}:{sha}.2", plain_http=True)
    assert second != first
    assert registry.resolve(runner, f"{r.releases}:{sha}", plain_http=True) == second
    assert pinned_record(runner, r.releases, tmp_path) == second
    out = registry.fetch_artifact(
        runner, f"{r.releases}:last-known-good", tmp_path / "pin", plain_http=True
    )
    assert json.loads((out / "pin.json").read_text())["sequence"] == 2

    # The earlier record (still validly signed) named directly, or put back on <sha>:
    by_digest = run_dcforge("rollback", "--sha", first, cwd=r.root, env=r.env)
    assert by_digest.returncode == 10, by_digest.stderr
    assert f"is publish 1 of release {sha[:12]}, superseded by publish 2" in by_digest.stderr
    registry.tag(runner, f"{r.releases}@{first}", [sha], plain_http=True)
    assert run_dcforge("verify", "--sha", sha, cwd=r.root, env=r.env).returncode == 0
    # … or on the newest publish's own tag: refused by every reader, the pin aside.
    registry.tag(runner, f"{r.releases}@{first}", [f"{sha}.2"], plain_http=True)
    repointed = f"{sha}.2 holds the signed record of publish 1 of {sha[:12]}"
    for command in (["rollback", "--sha"], ["verify", "--sha"], ["pin", "--sha"]):
        result = run_dcforge(*command, sha, cwd=r.root, env=r.env)
        assert result.returncode != 0, command
        assert repointed in result.stderr, command
    since = run_dcforge("build", "--no-prune", "--since", sha, cwd=r.root, env=r.env)
    assert since.returncode != 0
    assert repointed in since.stderr
    assert pinned_record(runner, r.releases, tmp_path) == second

    # A later publish that does not verify — cut off before signing, or junk someone pushed
    # over a valid publish's tag — is refused too: passing over it hands out publish 2.
    registry.tag(runner, f"{r.releases}@{second}", [f"{sha}.2"], plain_http=True)
    (tmp_path / "release.json").write_text('{"kind": "dcforge-release"}\n')
    registry.push_artifact(
        runner,
        f"{r.releases}:{sha}.3",
        tmp_path,
        "release.json",
        artifact_type="application/vnd.dcforge.release.v1+json",
        annotations={},
        plain_http=True,
    )
    refused = run_dcforge("verify", "--sha", sha, cwd=r.root, env=r.env)
    assert refused.returncode != 0
    assert f"the newest publish of {sha[:12]} is not valid" in refused.stderr
    # The pinned release is read by the digest the signed pin names: a warning only.
    pinned = run_dcforge("verify", cwd=r.root, env=r.env)
    assert pinned.returncode == 0, pinned.stderr
    assert f"{sha}.3 is not a valid publish" in pinned.stderr
    # Re-running the publish supersedes the cut-off one, and readers take it.
    assert _publish(r.root, r.env).returncode == 0
    assert run_dcforge("verify", "--sha", sha, cwd=r.root, env=r.env).returncode == 0


@pytest.mark.reliability(
    scenario="the later publish's record deleted and the pin made unverifiable",
    checks="the number the broken pin states still refuses the earlier publish, with a warning",
)
def test_a_broken_pin_still_floors_the_pinned_release(
    two_releases: TwoReleases, runner: Runner, tmp_path: Path
) -> None:
    r = two_releases
    first = registry.resolve(runner, f"{r.releases}:{r.b.git_sha}", plain_http=True)
    _publish_again(r, runner, tmp_path)  # publish 2 of B, pinned
    second = registry.resolve(runner, f"{r.releases}:{r.b.git_sha}.2", plain_http=True)
    # The pin's statement pushed again, signed by nobody; publish 2's record deleted (its
    # tags go with it): nothing in the registry says publish 2 existed but the pin.
    pin = registry.fetch_artifact(
        runner, f"{r.releases}:last-known-good", tmp_path / "pin", plain_http=True
    )
    registry.push_artifact(
        runner,
        f"{r.releases}:last-known-good",
        pin,
        "pin.json",
        artifact_type="application/vnd.dcforge.pin.v1+json",
        annotations={"note": "unsigned copy"},
        plain_http=True,
    )
    registry.delete(runner, f"{r.releases}@{second}", plain_http=True)
    for command in (["rollback", "--sha", first], ["verify", "--sha", r.b.git_sha]):
        refused = run_dcforge(*command, cwd=r.root, env=r.env)
        assert refused.returncode != 0, command
        assert "superseded by publish 2" in refused.stderr, command
        assert "last-known-good does not verify: it states publish 2" in refused.stderr


@pytest.mark.reliability(
    scenario="an older commit published after a newer one (slow refresh, re-run old job)",
    checks="publish refuses naming both SHAs; nothing moves; rollback still goes back",
)
def test_publish_never_moves_tags_backwards(two_releases: TwoReleases, runner: Runner) -> None:
    r = two_releases
    subprocess.run(["git", "-C", r.root, "checkout", "-q", r.a.git_sha], check=True)
    build_and_gate(r.root, r.env)
    refused = _publish(r.root, r.env)
    assert refused.returncode == 7, refused.stderr
    last = refused.stderr.strip().splitlines()[-1]
    assert f"{r.a.git_sha[:12]} does not descend from the pinned release {r.b.git_sha[:12]}" in last
    assert "nothing was pushed" in last
    assert tags_point_at(runner, r.b)
    # Going back is rollback's job; from there, publishing the newer commit moves forward.
    assert run_dcforge("rollback", "--sha", r.a.git_sha, cwd=r.root, env=r.env).returncode == 0
    assert tags_point_at(runner, r.a)
    subprocess.run(["git", "-C", r.root, "checkout", "-q", r.b.git_sha], check=True)
    build_and_gate(r.root, r.env)
    assert _publish(r.root, r.env).returncode == 0
    assert tags_point_at(runner, r.b)
