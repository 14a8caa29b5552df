"""Multi-platform permutations (linux/amd64 + linux/arm64, arm64 under qemu emulation) through
build, gate, publish, verify, pull, rollback and retention against the real stack."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import io
import json
import shutil
import subprocess
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from dcforge.core import index_sbom
from dcforge.core import manifest as mf
from dcforge.core.errors import BuildError
from dcforge.core.files import extract_plain
from dcforge.infra.runner import Runner
from dcforge.infra.tools import docker, registry
from tests.integration import attestation_edits, oras_oracle
from tests.integration.conftest import (
    KeyPair,
    PrivateRegistry,
    TrivyDb,
    base_env,
    env_for,
    fake_tool,
    git_commit,
    run_dcforge,
    verdicts,
)
from tests.projects import DPKG_STATUS, write_project, zlib_status

pytestmark = pytest.mark.integration

PLATFORMS = ("linux/amd64", "linux/arm64")
FUTURE = (dt.datetime.now(dt.UTC) + dt.timedelta(days=100)).isoformat()

# Each platform's image records the architecture it was built for; the smoke test checks it
# against the architecture the container really runs.
DOCKERFILE = """\
ARG BASE_IMAGE
FROM ${BASE_IMAGE}
ARG TARGETARCH
ARG GREETING=hello
COPY os-release /etc/os-release
COPY status-${TARGETARCH} /var/lib/dpkg/status
RUN echo "${TARGETARCH}" > /etc/dcforge-arch && echo "${GREETING}" > /etc/built-greeting \\
 && echo 12.5 > /etc/debian_version
"""

FAMILY = """\
family: multi
name: "multi"
context: ../images/multi
base: "{base_registry}/busybox:latest"
platforms: [linux/amd64, linux/arm64]
build_args:
  GREETING: "hello"
tags: ["latest"]
smoke:
  - test "$(cat /etc/dcforge-arch)" = "$(uname -m | sed -e s/x86_64/amd64/ -e s/aarch64/arm64/)"
"""


def multi_project(root: Path, registry_ns: str, *, arm64_zlib: bool = False) -> Path:
    write_project(root, registry=registry_ns, families={"multi.yaml": FAMILY})
    ctx = root / "images" / "multi"
    ctx.mkdir(parents=True, exist_ok=True)
    (ctx / "Dockerfile").write_text(DOCKERFILE)
    (ctx / "os-release").write_text((root / "images/tiny/os-release").read_text())
    (ctx / "status-amd64").write_text(DPKG_STATUS)
    arm64 = DPKG_STATUS.replace("Architecture: amd64", "Architecture: arm64")
    (ctx / "status-arm64").write_text(arm64 + zlib_status(arch="arm64") * arm64_zlib)
    (root / ".gitignore").write_text(".dcforge/\ndist/\n")
    git_commit(root)
    return root


def build_gate(root: Path, env: dict[str, str]) -> tuple[mf.Manifest, str]:
    built = run_dcforge("build", "--no-prune", cwd=root, env=env, timeout=1200)
    assert built.returncode == 0, built.stderr
    gated = run_dcforge("gate", cwd=root, env=env, timeout=1200)
    return mf.load(root / "dist/manifest.json"), gated.stderr if gated.returncode else ""


def archive_index(tarball: Path) -> dict[str, object]:
    with tarfile.open(tarball) as tar:
        top = json.load(tar.extractfile("index.json"))["manifests"][0]  # type: ignore[arg-type]
        algo, hexdigest = top["digest"].split(":")
        doc: dict[str, object] = json.load(tar.extractfile(f"blobs/{algo}/{hexdigest}"))  # type: ignore[arg-type]
    return {"top": top, "index": doc}


def children(doc: dict[str, object]) -> dict[str, str]:
    out = {}
    for m in doc["manifests"]:  # type: ignore[attr-defined]
        p = m["platform"]
        out[f"{p['os']}/{p['architecture']}"] = m["digest"]
    return out


def assert_each_sbom_is_its_platforms(root: Path) -> None:
    """Each platform's SBOM lists that architecture's packages (syft read that image)."""
    for platform in PLATFORMS:
        stem = f"multi@{platform.replace('/', '-')}"
        spdx = json.loads((root / "dist/reports" / f"{stem}.spdx.json").read_text())
        arches = {
            ref["referenceLocator"].split("arch=")[1].split("&")[0]
            for pkg in spdx["packages"]
            for ref in pkg.get("externalRefs", [])
            if ref.get("referenceLocator", "").startswith("pkg:deb/")
        }
        assert arches == {platform.split("/")[1]}


def pushed(runner: Runner, m: mf.Manifest) -> bool:
    (e,) = m.permutations
    return (
        oras_oracle.digest_or_none(runner, f"{e.repository}@{e.image_digest}", plain_http=True)
        is not None
    )


@pytest.fixture
def env(private_registry: PrivateRegistry, trivy_db: TrivyDb) -> dict[str, str]:
    return env_for(private_registry, trivy_db)


def test_an_index_is_built_gated_published_signed_per_platform_and_pulled_by_platform(  # noqa: PLR0915
    tmp_path: Path,
    private_registry: PrivateRegistry,
    env: dict[str, str],
    runner: Runner,
    stack: str,
    other_keys: KeyPair,
) -> None:
    root = multi_project(tmp_path / "p", f"{private_registry.host}/dc")
    m, blocked = build_gate(root, env)
    assert not blocked
    (entry,) = m.permutations

    # 1. One archive holding an index; the manifest names the index and every child.
    found = archive_index(root / "dist" / entry.tarball)
    assert found["top"]["mediaType"] == "application/vnd.oci.image.index.v1+json"  # type: ignore[index]
    assert entry.image_digest == found["top"]["digest"]  # type: ignore[index]
    assert entry.platform_digests == children(found["index"])  # type: ignore[arg-type]
    assert set(entry.platform_digests) == set(PLATFORMS)
    base = oras_oracle.manifest(runner, f"{stack}/library/busybox:latest", plain_http=True)
    assert entry.base_image.platform_digests == children(base)

    # 2. Both platforms scanned, each with its own reports and verdict.
    v = verdicts(root)["multi"]
    scanned = {p["platform"]: p for p in v["platforms"]}  # type: ignore[attr-defined]
    assert {p: s["digest"] for p, s in scanned.items()} == entry.platform_digests
    assert all(s["passed"] and s["coverage"]["os"] for s in scanned.values())
    assert_each_sbom_is_its_platforms(root)

    # 4. Published byte for byte: the registry serves the index digest and its children.
    published = run_dcforge("publish", cwd=root, env=env, timeout=1200)
    assert published.returncode == 0, published.stderr
    repo = entry.repository
    assert oras_oracle.resolve(runner, f"{repo}:latest", plain_http=True) == entry.image_digest
    served = oras_oracle.manifest(runner, f"{repo}@{entry.image_digest}", plain_http=True)
    assert children(served) == entry.platform_digests
    tags = set(oras_oracle.tags(runner, repo, plain_http=True))
    for digest in [entry.image_digest, *entry.platform_digests.values()]:
        assert f"sha256-{digest[7:]}.sig" in tags
    for digest in [entry.image_digest, *entry.platform_digests.values()]:
        assert f"sha256-{digest[7:]}.att" in tags  # each platform's, and the index's own
    # Plain cosign on what users pull (the tag: the index) finds an SBOM and a provenance
    # (sigstore/cosign#3552); the index's SBOM names each platform's by its checksum.
    pub = root / ".dcforge/cosign/cosign.pub"
    for ptype in ("spdxjson", "https://slsa.dev/provenance/v1"):
        argv: list[str | Path] = ["cosign", "verify-attestation", "--type", ptype, "--key", pub]
        out = runner.run(
            [*argv, "--insecure-ignore-tlog", "--allow-http-registry", f"{repo}:latest"]
        )
        (line,) = out.stdout.split()
        statement = json.loads(base64.b64decode(json.loads(line)["payload"]))
        assert statement["subject"][0]["digest"]["sha256"] == entry.image_digest[7:]
        if ptype == "spdxjson":
            sums = {
                r["checksum"]["checksumValue"]
                for r in statement["predicate"]["externalDocumentRefs"]
            }
            # …as a consumer recomputes them from each platform image's own SBOM statement.
            recomputed = set()
            for digest in entry.platform_digests.values():
                their = runner.run(
                    [*argv, "--insecure-ignore-tlog", "--allow-http-registry", f"{repo}@{digest}"]
                )
                child = json.loads(base64.b64decode(json.loads(their.stdout.split()[0])["payload"]))
                recomputed.add(index_sbom.checksum(child["predicate"]))
            assert sums == recomputed
    verified = run_dcforge("verify", cwd=root, env=env)
    assert verified.returncode == 0, verified.stderr
    consumer_checks(root, m, runner, other_keys, tmp_path)

    # 5. docker pull --platform linux/arm64 of the floating tag gets the arm64 image.
    ref = f"{repo}:latest"
    subprocess.run(["docker", "pull", "-q", "--platform", "linux/arm64", ref], check=True)
    arch = subprocess.run(
        [
            "docker",
            "run",
            "--rm",
            "--network",
            "none",
            "--platform",
            "linux/arm64",
            ref,
            "sh",
            "-c",
            "cat /etc/dcforge-arch; uname -m",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert arch == ["arm64", "aarch64"]
    subprocess.run(["docker", "rmi", "-f", ref], capture_output=True, check=False)

    # Unchanged since the release: reused by digest, and every platform re-scanned from the
    # registry with today's DB.
    git_commit(root, "no change")
    again = run_dcforge("build", "--no-prune", "--since", "last-known-good", cwd=root, env=env)
    assert again.returncode == 0, again.stderr
    (reused,) = mf.load(root / "dist/manifest.json").permutations
    assert reused.reused and reused.platform_digests == entry.platform_digests
    regated = run_dcforge("gate", cwd=root, env=env)
    assert regated.returncode == 0, regated.stderr
    rescanned = {p["platform"]: p["digest"] for p in verdicts(root)["multi"]["platforms"]}  # type: ignore[attr-defined]
    assert rescanned == entry.platform_digests
    # Scanned with this very DB at the first gate: the outputs are reused, not re-made …
    assert "scan reused linux/arm64" in regated.stderr
    # … and without the scan cache every platform is scanned again in the registry.
    regated = run_dcforge("gate", "--no-scan-cache", cwd=root, env=env)
    assert regated.returncode == 0, regated.stderr
    assert "re-scanned linux/arm64 from the registry" in regated.stderr

    # verify checks every platform: the arm64 image's attestations gone → verify fails.
    arm64 = entry.platform_digests["linux/arm64"]
    att = oras_oracle.resolve(runner, f"{repo}:sha256-{arm64[7:]}.att", plain_http=True)
    registry.delete(runner, f"{repo}@{att}", plain_http=True)
    broken = run_dcforge("verify", cwd=root, env=env)
    assert broken.returncode != 0
    assert "linux/arm64" in broken.stderr and "attestation" in broken.stderr


def consumer_checks(
    root: Path, m: mf.Manifest, runner: Runner, other_keys: KeyPair, tmp_path: Path
) -> None:
    """``verify-image`` as someone who pulls the image runs it: no checkout, no settings,
    the publisher's public key. It passes for each platform's image, and fails on a foreign
    signer, another platform's SBOM and a provenance naming another commit."""
    (entry,) = m.permutations
    repo, pub = entry.repository, root / ".dcforge/cosign/cosign.pub"
    consumer = tmp_path / "consumer"
    consumer.mkdir()

    def check(platform: str = "linux/amd64", key: Path = pub) -> subprocess.CompletedProcess[str]:
        args = ["verify-image", f"{repo}:latest", "--platform", platform, "--key", str(key)]
        return run_dcforge(*args, cwd=consumer)

    for platform in PLATFORMS:
        ok = check(platform)
        assert ok.returncode == 0, ok.stderr
        assert entry.platform_digests[platform][:19] in ok.stderr, ok.stderr
        assert m.git_sha[:12] in ok.stderr and "lists it as multi" in ok.stderr
        assert "index attestations" in ok.stderr
    stranger = check(key=other_keys.pub)
    assert stranger.returncode == 9, stranger.stderr
    assert "index's signature does not verify" in stranger.stderr

    # By a platform image's own digest: that image, and only as that platform.
    amd64 = entry.platform_digests["linux/amd64"]
    by_digest = ["verify-image", f"{repo}@{amd64}", "--key", str(pub)]
    child = run_dcforge(*by_digest, cwd=consumer)
    assert child.returncode == 0, child.stderr
    assert "for linux/amd64" in child.stderr
    other_platform = run_dcforge(*by_digest, "--platform", "linux/arm64", cwd=consumer)
    assert other_platform.returncode == 9, other_platform.stderr
    assert "is a linux/amd64 image, not linux/arm64" in other_platform.stderr
    # A tag someone pointed at the signed image, which the release never gave it.
    oras_oracle.tag(runner, f"{repo}@{entry.image_digest}", ["not-a-release-tag"], plain_http=True)
    swapped_tag = run_dcforge(
        "verify-image", f"{repo}:not-a-release-tag", "--key", str(pub), cwd=consumer
    )
    assert swapped_tag.returncode == 9, swapped_tag.stderr
    assert "the tag was pointed at an image it does not name" in swapped_tag.stderr

    forged_attestations(root, entry, runner, check, tmp_path)
    assert check().returncode == 0

    # The admission policies for the same key and source, for this machine's platform.
    for kind, expected in (("kyverno", "ClusterPolicy"), ("sigstore", "ClusterImagePolicy")):
        args = ["verify-image", f"{repo}:latest", "--key", str(pub), "--policy", kind]
        made = run_dcforge(*args, cwd=consumer)
        assert made.returncode == 0, made.stderr
        assert expected in {doc["kind"] for doc in yaml.safe_load_all(made.stdout)}
        assert pub.read_text().splitlines()[1] in made.stdout


def forged_attestations(
    root: Path,
    entry: mf.Entry,
    runner: Runner,
    check: Callable[[], subprocess.CompletedProcess[str]],
    tmp_path: Path,
) -> None:
    """Attestations signed by the publisher's key, but about another image or naming a
    commit that was never released: verify-image refuses each, and passes once they are
    put back."""
    repo = entry.repository
    amd64, arm64 = (entry.platform_digests[p] for p in PLATFORMS)
    att, other = (
        attestation_edits.attestations(repo, amd64),
        attestation_edits.attestations(repo, arm64),
    )
    sbom, slsa = "https://spdx.dev/Document", "https://slsa.dev/provenance/v1"
    # The arm64 image's SBOM (validly signed) in the amd64 image's attestations.
    att.put([other.layer(sbom) if att.predicate_type(x) == sbom else x for x in att.doc["layers"]])
    swapped = check()
    assert swapped.returncode == 9, swapped.stderr
    # (cosign itself passes over a statement about another image: none is left.)
    assert f"{repo}@{amd64}: no SBOM (SPDX) attestation verifies" in swapped.stderr
    att.restore()

    # A provenance, signed with the publisher's key, naming a commit that was never released.
    body = att.predicate(slsa)
    source = next(
        d for d in body["buildDefinition"]["resolvedDependencies"] if "gitCommit" in d["digest"]
    )
    source["digest"]["gitCommit"] = "f" * 40
    forged = tmp_path / "forged-provenance.json"
    forged.write_text(json.dumps(body))
    kept = tmp_path / "sbom.json"
    kept.write_text(json.dumps(att.predicate(sbom)))
    att.delete()  # (cosign attest adds to the manifest it finds: start from none)
    key = root / ".dcforge/cosign/cosign.key"
    for ptype, predicate in (("spdxjson", kept), (slsa, forged)):
        runner.run(
            ["cosign", "attest", "--key", key, "--type", ptype, "--predicate", predicate,
             "--tlog-upload=false", "--allow-http-registry", f"{repo}@{amd64}"],
            env={"COSIGN_PASSWORD": ""},
        )  # fmt: skip
    wrong = check()
    assert wrong.returncode == 9, wrong.stderr
    assert "no signed release record of ffffffffffff" in wrong.stderr
    att.restore()


def test_a_cve_only_in_the_arm64_image_blocks(
    tmp_path: Path, private_registry: PrivateRegistry, env: dict[str, str], runner: Runner
) -> None:
    root = multi_project(tmp_path / "p", f"{private_registry.host}/dc", arm64_zlib=True)
    m, blocked = build_gate(root, env)
    assert "CVE-2099-0001" in blocked and "linux/arm64" in blocked
    scanned = {p["platform"]: p for p in verdicts(root)["multi"]["platforms"]}  # type: ignore[attr-defined]
    assert scanned["linux/amd64"]["passed"] is True
    assert scanned["linux/arm64"]["passed"] is False
    assert [f["id"] for f in scanned["linux/arm64"]["blocking"]] == ["CVE-2099-0001"]
    refused = run_dcforge("publish", cwd=root, env=env)
    assert refused.returncode != 0
    assert not pushed(runner, m)


def test_publish_refuses_a_verdict_missing_a_platform(
    tmp_path: Path, private_registry: PrivateRegistry, env: dict[str, str], runner: Runner
) -> None:
    """A gate.json edited to carry only the amd64 verdict (or written by a gate that scanned
    one platform) never lets the arm64 image be signed."""
    root = multi_project(tmp_path / "p", f"{private_registry.host}/dc")
    m, blocked = build_gate(root, env)
    assert not blocked
    path = root / "dist/gate.json"
    doc = json.loads(path.read_text())
    perm = doc["permutations"][0]
    perm["platforms"] = [p for p in perm["platforms"] if p["platform"] == "linux/amd64"]
    path.write_text(json.dumps(doc))
    refused = run_dcforge("publish", cwd=root, env=env)
    assert refused.returncode != 0
    assert "linux/arm64" in refused.stderr
    assert not pushed(runner, m)


def test_rollback_and_retention_treat_an_index_and_its_children_as_one(
    tmp_path: Path, private_registry: PrivateRegistry, env: dict[str, str], runner: Runner
) -> None:
    root = multi_project(tmp_path / "p", f"{private_registry.host}/dc")
    family = root / "permutations/multi.yaml"
    releases = []
    for greeting in ("A", "B"):
        family.write_text(FAMILY.replace('GREETING: "hello"', f'GREETING: "{greeting}"'))
        git_commit(root, greeting)
        m, blocked = build_gate(root, env)
        assert not blocked
        result = run_dcforge("publish", cwd=root, env=env, timeout=1200)
        assert result.returncode == 0, result.stderr
        releases.append(m)
    (a, b) = (r.permutations[0] for r in releases)
    assert set(a.platform_digests.values()).isdisjoint(b.platform_digests.values())

    # Rollback moves the tag of the index: every platform goes back together.
    latest = f"{a.repository}:latest"
    for target, entry in ((releases[0], a), (releases[1], b)):
        rolled = run_dcforge("rollback", "--sha", target.git_sha, cwd=root, env=env)
        assert rolled.returncode == 0, rolled.stderr
        assert oras_oracle.resolve(runner, latest, plain_http=True) == entry.image_digest

    keep = {**env, "DCFORGE_KEEP_RELEASES": "1"}
    done = run_dcforge("prune", "--registry", "--yes", "--now", FUTURE, cwd=root, env=keep)
    assert done.returncode == 0, done.stderr
    tags = set(oras_oracle.tags(runner, a.repository, plain_http=True))

    def present(digest: str) -> bool:
        return (
            oras_oracle.digest_or_none(runner, f"{a.repository}@{digest}", plain_http=True)
            is not None
        )

    for digest in [a.image_digest, *a.platform_digests.values()]:
        assert not present(digest), done.stderr
        assert f"sha256-{digest[7:]}.sig" not in tags
        assert f"sha256-{digest[7:]}.att" not in tags
    for digest in [b.image_digest, *b.platform_digests.values()]:
        assert present(digest), digest
        assert f"sha256-{digest[7:]}.sig" in tags
    verified = run_dcforge("verify", cwd=root, env=env)
    assert verified.returncode == 0, verified.stderr

    # A "delete untagged versions" clean-up removes the arm64 image under the index: the
    # record's bindings still match, but verify and rollback read each child by digest.
    arm64 = b.platform_digests["linux/arm64"]
    registry.delete(runner, f"{b.repository}@{arm64}", plain_http=True)
    broken = run_dcforge("verify", cwd=root, env=env)
    assert broken.returncode != 0
    assert f"the linux/arm64 image of {b.name} is gone" in broken.stderr
    refused = run_dcforge("rollback", "--sha", releases[1].git_sha, cwd=root, env=env)
    assert refused.returncode != 0
    assert "is gone" in refused.stderr
    assert "Traceback" not in broken.stderr + refused.stderr


def test_a_builder_without_arm64_is_one_clear_line_before_anything_builds(
    tmp_path: Path, private_registry: PrivateRegistry, env: dict[str, str]
) -> None:
    """A runner with no arm64 emulator registered (the builder offers amd64 only)."""
    root = multi_project(tmp_path / "p", f"{private_registry.host}/dc")
    real = shutil.which("docker")
    tools = fake_tool(
        tmp_path / "bin",
        "docker",
        'if [ "$1 $2" = "buildx inspect" ]; then\n'
        '  printf "Name: default\\nPlatforms: linux/amd64, linux/amd64/v2\\n"; exit 0\n'
        f'fi\nexec {real} "$@"\n',
    )
    path = f"{tools}:{base_env()['PATH']}"
    result = run_dcforge("build", "--no-prune", cwd=root, env={**env, "PATH": path})
    assert result.returncode != 0
    assert "cannot build linux/arm64" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (root / "dist/manifest.json").exists()


def test_platform_parts_built_apart_merge_into_the_index_one_machine_would_build(
    tmp_path: Path, private_registry: PrivateRegistry, env: dict[str, str], runner: Runner
) -> None:
    """A matrix over platforms (each part on its own, native, runner; emulated here) merged by
    digest: every platform keeps its own build's digest; parts never gate or publish alone;
    a part whose image is not its platform's, or a missing part, is refused."""
    root = multi_project(tmp_path / "p", f"{private_registry.host}/dc")
    parts = {}
    for platform in PLATFORMS:
        out = tmp_path / f"part-{platform.split('/')[1]}"
        built = run_dcforge(
            "build", "--no-prune", "--platform", platform, cwd=root,
            env={**env, "DCFORGE_DIST": str(out)},
        )  # fmt: skip
        assert built.returncode == 0, built.stderr
        (part,) = mf.load(out / "manifest.json").permutations
        assert part.part_of == list(PLATFORMS) and part.platforms == [platform]
        parts[platform] = (out, part)
    amd64_dir, amd64 = parts["linux/amd64"]
    alone = run_dcforge("gate", cwd=root, env={**env, "DCFORGE_DIST": str(amd64_dir)})
    assert alone.returncode != 0 and "merge the platform parts" in alone.stderr

    # A part that claims arm64 but holds the amd64 image (say, a runner whose engine built
    # the wrong platform) and a missing part are refused; nothing is written.
    liar = tmp_path / "part-liar"
    shutil.copytree(amd64_dir, liar)
    doc = json.loads((liar / "manifest.json").read_text())
    doc["permutations"][0]["platforms"] = ["linux/arm64"]
    doc["permutations"][0]["platform_digests"] = {"linux/arm64": amd64.image_digest}
    (liar / "manifest.json").write_text(json.dumps(doc))
    for bad, expected in (
        ([amd64_dir, liar], "the part for linux/arm64 holds a linux/amd64 image"),
        ([amd64_dir], "is only its linux/amd64 part"),
    ):
        refused = run_dcforge("merge-manifests", *map(str, bad), cwd=root, env=env)
        assert refused.returncode != 0 and expected in refused.stderr, refused.stderr
        assert "Traceback" not in refused.stderr
        assert not (root / "dist/manifest.json").exists()

    dirs = [str(parts[p][0]) for p in reversed(PLATFORMS)]
    merged = run_dcforge("merge-manifests", *dirs, cwd=root, env=env)
    assert merged.returncode == 0, merged.stderr
    (entry,) = mf.load(root / "dist/manifest.json").permutations
    assert entry.platforms == list(PLATFORMS) and not entry.part_of
    assert entry.platform_digests == {p: parts[p][1].image_digest for p in PLATFORMS}
    found = archive_index(root / "dist" / entry.tarball)
    assert found["top"]["digest"] == entry.image_digest  # type: ignore[index]
    assert children(found["index"]) == entry.platform_digests  # type: ignore[arg-type]
    again = run_dcforge("merge-manifests", *dirs, cwd=root, env=env)
    assert again.returncode == 0
    assert mf.load(root / "dist/manifest.json").permutations[0].image_digest == entry.image_digest

    for step in ("gate", "publish", "verify"):
        result = run_dcforge(step, cwd=root, env=env, timeout=1200)
        assert result.returncode == 0, result.stderr
    served = oras_oracle.manifest(runner, f"{entry.repository}:latest", plain_http=True)
    assert children(served) == entry.platform_digests


def test_smoke_catches_an_index_that_labels_an_image_with_another_platform(
    tmp_path: Path, private_registry: PrivateRegistry, env: dict[str, str], runner: Runner
) -> None:
    """An index whose linux/arm64 entry is really the amd64 image: the smoke step must not
    pass it as arm64 (the engine refuses the mismatch too, or the architecture check does)."""
    root = multi_project(tmp_path / "p", f"{private_registry.host}/dc")
    built = run_dcforge("build", "--no-prune", "--no-smoke", cwd=root, env=env)
    assert built.returncode == 0, built.stderr
    (entry,) = mf.load(root / "dist/manifest.json").permutations
    layout = tmp_path / "layout"
    with tarfile.open(root / "dist" / entry.tarball) as tar:
        extract_plain(tar, layout)
    top = json.loads((layout / "index.json").read_text())
    index_blob = layout / "blobs/sha256" / top["manifests"][0]["digest"][7:]
    index = json.loads(index_blob.read_text())
    amd64 = next(m for m in index["manifests"] if m["platform"]["architecture"] == "amd64")
    for m in index["manifests"]:  # both entries name the amd64 image
        m.update(digest=amd64["digest"], size=amd64["size"])
    data = json.dumps(index).encode()
    digest = hashlib.sha256(data).hexdigest()
    (layout / "blobs/sha256" / digest).write_bytes(data)
    top["manifests"][0].update(digest=f"sha256:{digest}", size=len(data))
    top["manifests"][0]["annotations"] = {
        "io.containerd.image.name": "docker.io/dcforge-test/liar:1"
    }
    (layout / "index.json").write_text(json.dumps(top))
    forged = tmp_path / "forged.tar"
    with tarfile.open(forged, "w") as tar:
        for path in sorted(layout.rglob("*")):
            tar.add(path, arcname=str(path.relative_to(layout)), recursive=False)
    engine = docker.Engine(runner)
    assert docker.smoke_archive(engine, forged, {"linux/amd64": amd64["digest"]}, [], "liar")
    with pytest.raises(BuildError, match="linux/arm64"):
        docker.smoke_archive(engine, forged, {"linux/arm64": amd64["digest"]}, [], "liar")


def test_an_archive_with_a_duplicate_member_never_passes_the_gate(
    tmp_path: Path, private_registry: PrivateRegistry, env: dict[str, str]
) -> None:
    """A second ``./index.json`` (or ``./blobs/sha256/X``) is what tar extraction — and so
    Trivy, syft and skopeo — reads, while a lookup by name reads the first: what is checked
    would not be what is scanned and pushed."""
    root = multi_project(tmp_path / "p", f"{private_registry.host}/dc")
    built = run_dcforge("build", "--no-prune", "--no-smoke", cwd=root, env=env)
    assert built.returncode == 0, built.stderr
    tar_path = root / "dist/multi.tar"
    with tarfile.open(tar_path, "a") as tar:
        data = b'{"schemaVersion":2,"manifests":[]}'
        info = tarfile.TarInfo("./index.json")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    path = root / "dist/manifest.json"
    doc = json.loads(path.read_text())
    doc["permutations"][0]["tarball_sha256"] = hashlib.sha256(tar_path.read_bytes()).hexdigest()
    path.write_text(json.dumps(doc))
    gated = run_dcforge("gate", cwd=root, env=env)
    assert gated.returncode != 0
    assert "appears twice" in gated.stderr and "Traceback" not in gated.stderr


def test_a_served_index_with_an_image_nobody_scanned_is_refused(
    tmp_path: Path,
    private_registry: PrivateRegistry,
    env: dict[str, str],
    runner: Runner,
    stack: str,
) -> None:
    """A reused entry edited to name an index that holds one more image than the release's
    (its platform digests unchanged): the gate re-scans what the registry serves, and
    refuses the extra image instead of scanning the listed ones and signing the index."""
    root = multi_project(tmp_path / "p", f"{private_registry.host}/dc")
    _, blocked = build_gate(root, env)
    assert not blocked
    published = run_dcforge("publish", cwd=root, env=env, timeout=1200)
    assert published.returncode == 0, published.stderr
    git_commit(root, "no change")
    again = run_dcforge("build", "--no-prune", "--since", "last-known-good", cwd=root, env=env)
    assert again.returncode == 0, again.stderr
    (entry,) = mf.load(root / "dist/manifest.json").permutations
    assert entry.reused

    # An extra image (busybox for amd64, labelled riscv64) in an index next to the release's.
    busybox = oras_oracle.manifest(runner, f"{stack}/library/busybox:latest", plain_http=True)
    extra = busybox["manifests"][0]
    subprocess.run(
        ["oras", "cp", "--from-plain-http", "--to-plain-http",
         f"{stack}/library/busybox@{extra['digest']}", f"{entry.repository}@{extra['digest']}"],
        check=True, capture_output=True,
    )  # fmt: skip
    served = oras_oracle.manifest(
        runner, f"{entry.repository}@{entry.image_digest}", plain_http=True
    )
    served["manifests"].append({**extra, "platform": {"os": "linux", "architecture": "riscv64"}})
    doc_path = tmp_path / "index.json"
    doc_path.write_text(json.dumps(served))
    subprocess.run(
        ["oras", "manifest", "push", "--plain-http", "--media-type", served["mediaType"],
         f"{entry.repository}:smuggled", str(doc_path)],
        check=True, capture_output=True,
    )  # fmt: skip
    smuggled = oras_oracle.resolve(runner, f"{entry.repository}:smuggled", plain_http=True)
    path = root / "dist/manifest.json"
    doc = json.loads(path.read_text())
    doc["permutations"][0]["image_digest"] = smuggled
    path.write_text(json.dumps(doc))

    gated = run_dcforge("gate", cwd=root, env=env)
    assert gated.returncode != 0
    assert "not one platform's image" in gated.stderr or "other images" in gated.stderr
    tags = set(oras_oracle.tags(runner, entry.repository, plain_http=True))
    assert f"sha256-{smuggled[7:]}.sig" not in tags
