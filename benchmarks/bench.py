"""dcforge benchmarks: every scenario timed against a baseline measured in the same run.

Generated permutations FROM busybox, each with a 50 MB layer of incompressible data, at
several sizes N. A private registry on a free port keeps the numbers free of other state.
Results: dist/bench/results.json, results.md and bench.png.

    nox -s bench                      # sizes 1,4,16, then the N = 1000 tiny-image scale
    nox -s bench -- --full            # sizes 1,4,16,64
    nox -s bench -- --sizes 1 --scale 0 --repeat 1

Each scenario runs ``--repeat`` times (3 by default): a ratio is the median of the runs'
ratios, with their spread (bench_report.py).
"""

from __future__ import annotations

import argparse
import functools
import itertools
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench_report import machine, median_run, report

from dcforge.core import image_labels, trivydb
from dcforge.core import settings as st
from dcforge.core.bake import bake_definition
from dcforge.infra import vulndb
from dcforge.infra.context import Context
from dcforge.infra.runner import Runner
from dcforge.infra.tools.local_registry import LocalRegistry
from dcforge.infra.tools.registry import Registry as RegistryClient
from dcforge.stages import build

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # tests.integration.apt_repo: the CVE clock's package mirror
LAYER_MB = 50
ENV_BASE = {k: v for k, v in os.environ.items() if not k.startswith(("DCFORGE_", "GITHUB_"))}
ENV_BASE["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{ENV_BASE.get('PATH', '')}"
ENV_BASE.pop("CI", None)

DOCKERFILE = f"""\
ARG BASE_IMAGE
FROM ${{BASE_IMAGE}}
ARG ID
COPY version.txt /version.txt
COPY os-release /etc/os-release
COPY status /var/lib/dpkg/status
COPY debian_version /etc/debian_version
RUN head -c {LAYER_MB * 1024 * 1024} /dev/urandom > /blob-${{ID}}
"""
TINY_DOCKERFILE = "".join(
    line for line in DOCKERFILE.splitlines(keepends=True) if not line.startswith("RUN")
)


_RUNS = itertools.count(1)


def fresh(repository: str) -> str:
    """A repository of its own for each run of a scenario: a repeated run is a new
    project (another git history), and a registry that holds the last one's pinned release
    refuses to publish what does not descend from it."""
    return f"{repository}-r{next(_RUNS)}"


def sh(
    argv: list[str],
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 3600,
) -> str:
    result = subprocess.run(
        argv,
        cwd=cwd,
        env={**ENV_BASE, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(
            f"{' '.join(argv[:6])} failed ({result.returncode}):\n{result.stderr[-2000:]}"
        )
    return result.stdout + result.stderr


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


# Trivy must detect an OS and scan its packages, or the gate blocks: say "Debian 12, one
# package" (Trivy recognises Debian by /etc/debian_version, not by os-release).
OS_RELEASE = 'ID=debian\nVERSION_ID="12"\n'
DPKG_STATUS = (
    "Package: busybox\nStatus: install ok installed\nArchitecture: amd64\nSource: busybox\n"
    "Version: 1:1.35.0-4\nDescription: tiny utilities\n"
)


def make_project(
    root: Path, n: int, registry: str, platforms: str = "", *, tiny: bool = False
) -> Path:
    """N permutations; ``tiny``: no 50 MB layer, a few KB each (the scale scenario)."""
    root.mkdir(parents=True)
    (root / "pyproject.toml").write_text(
        f'[project]\nname = "bench"\nversion = "0"\n\n[tool.dcforge]\nregistry = "{registry}"\n'
        'base_registry = "localhost:5000/library"\ncache_backend = "none"\n'
    )
    for i in range(n):
        ctx = root / "ctx" / f"p{i}"
        ctx.mkdir(parents=True)
        (ctx / "Dockerfile").write_text(TINY_DOCKERFILE if tiny else DOCKERFILE)
        (ctx / "version.txt").write_text(f"1 {i}\n")
        (ctx / "os-release").write_text(OS_RELEASE)
        (ctx / "status").write_text(DPKG_STATUS)
        (ctx / "debian_version").write_text("12.5\n")
    (root / "permutations").mkdir()
    (root / "permutations/bench.yaml").write_text(
        "family: bench\nimage: bench\n"
        f"matrix:\n  i: [{', '.join(str(i) for i in range(n))}]\n"
        'name: "p{i}"\ncontext: "../ctx/p{i}"\nbase: "{base_registry}/busybox:latest"\n'
        'build_args:\n  ID: "{i}"\ntags: ["p{i}"]\n'
        + (f"platforms: {platforms}\n" * bool(platforms))
    )
    (root / ".gitignore").write_text(".dcforge/\ndist/\nbake/\n")
    git(root, "init", "-q", "-b", "main")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "bench")
    # The signing key exists before anything is timed, as it does for a team that
    # publishes (the scripts sign with it too); dcforge's first publish would make it.
    keys = root / ".dcforge/cosign"
    keys.mkdir(parents=True)
    sh(["cosign", "generate-key-pair"], cwd=keys, env={"COSIGN_PASSWORD": ""})
    return root


def git(root: Path, *args: str) -> str:
    return sh(["git", "-C", str(root), "-c", "user.name=b", "-c", "user.email=b@x", *args]).strip()


def dcforge(root: Path, *args: str, env: dict[str, str] | None = None) -> str:
    return sh([sys.executable, "-m", "dcforge", *args], cwd=root, env=env)


def bake_file(root: Path, out: Path) -> Path:
    """The bake file dcforge itself would build from (same targets, plain buildx bake)."""
    ctx = Context(st.load(root, {}), Runner(env=ENV_BASE), {})
    # Dated like dcforge's own build of HEAD: both rewrite every layer's file times.
    head = git(root, "show", "-s", "--format=%H %ct", "HEAD").split()
    targets = build.bake_targets(ctx, out, image_labels.Source(head[0], int(head[1])))
    out.mkdir(parents=True, exist_ok=True)
    path = root / "bake" / "docker-bake.json"
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps(bake_definition(targets), indent=2))
    return path


def bake(path: Path, *targets: str) -> None:
    sh(["docker", "buildx", "bake", "--progress=plain", "-f", str(path), *targets], cwd=path.parent)


def prune_build_cache() -> None:
    sh(["docker", "buildx", "prune", "-af"])


def plain_publish(root: Path, registry: str, key: Path) -> None:
    """The baseline: a plain sequential script — docker load, docker push, cosign sign."""
    m = json.loads((root / "dist/manifest.json").read_text())
    for e in m["permutations"]:
        loaded = sh(["docker", "load", "-i", str(root / "dist" / e["tarball"])])
        image = loaded.strip().splitlines()[-1].split(": ", 1)[1]
        target = f"{registry}/plain/{e['name']}:v1"
        sh(["docker", "tag", image, target])
        out = sh(["docker", "push", target])
        digest = next(w for w in out.split() if w.startswith("sha256:"))
        sh(
            [
                "cosign",
                "sign",
                "--yes",
                "--key",
                str(key),
                "--tlog-upload=false",
                "--allow-http-registry",
                f"{registry}/plain/{e['name']}@{digest}",
            ],
            env={"COSIGN_PASSWORD": ""},
        )


COSIGN = ["--yes", "--tlog-upload=false", "--allow-http-registry"]
SCRIPT_PROVENANCE = {
    "buildDefinition": {"buildType": "https://example.com/script", "externalParameters": {}},
    "runDetails": {"builder": {"id": "https://example.com/script"}},
}


def same_work_publish(
    root: Path, registry: str, key: Path, ns: str, limit: int | None = None
) -> None:
    """The baseline doing dcforge's publish work, as a plain sequential script: per image,
    push the archive byte for byte (skopeo), cosign sign, cosign attest the SBOM, cosign
    attest a SLSA provenance. ``limit``: only the first that many images."""
    m = json.loads((root / "dist/manifest.json").read_text())
    predicate = root / "dist" / "script-provenance.json"
    predicate.write_text(json.dumps(SCRIPT_PROVENANCE))
    for e in m["permutations"][:limit]:
        repo = f"{registry}/{ns}/{e['name']}"
        sbom = root / "dist/reports" / f"{e['name']}.spdx.json"
        publish_one(repo, root / "dist" / e["tarball"], e["image_digest"], sbom, key, predicate)


def publish_one(
    repo: str, tar: Path, digest: str, sbom: Path, key: Path, predicate: Path | None = None
) -> None:
    """One image, as the same-work script publishes it: skopeo, cosign sign, 2 attests."""
    if predicate is None:
        predicate = sbom.with_name("script-provenance.json")
        predicate.write_text(json.dumps(SCRIPT_PROVENANCE))
    env = {"COSIGN_PASSWORD": ""}
    sh(["skopeo", "copy", "--quiet", "--preserve-digests", "--dest-tls-verify=false",
        f"oci-archive:{tar}", f"docker://{repo}:v1"])  # fmt: skip
    ref = f"{repo}@{digest}"
    sh(["cosign", "sign", *COSIGN, "--key", str(key), ref], env=env)
    for kind, pred in (("spdxjson", sbom), ("https://slsa.dev/provenance/v1", predicate)):
        sh(["cosign", "attest", *COSIGN, "--key", str(key), "--type", kind,
            "--predicate", str(pred), ref], env=env)  # fmt: skip


def on_own_registry(work: Path, publish: Callable[[str], None]) -> float:
    """A baseline publish timed against a registry of its own. On the registry dcforge
    had just published to, skopeo mounts the blobs dcforge uploaded instead of uploading
    them (a 50 MB image here: 0.12 s a push instead of 0.47 s), and the baseline would
    skip the work it is measured doing."""
    reg = LocalRegistry(work)
    reg.start()
    try:
        return timed(lambda: publish(reg.host))
    finally:
        reg.stop()
        shutil.rmtree(work, ignore_errors=True)


def gate_script(root: Path, db: str, work: Path) -> None:
    """The baseline gate: per tarball, sequentially, ``trivy image --input`` (same DB, same
    trivy.yaml and flags, the DB downloaded once) and ``syft`` (SPDX + CycloneDX)."""
    from importlib import resources

    config = str(resources.files("dcforge.resources") / "trivy.yaml")
    cache = work / "script-trivy-cache"
    shutil.rmtree(cache, ignore_errors=True)
    sh(["trivy", "image", "--download-db-only", "--quiet", "--cache-dir", str(cache),
        "--db-repository", db, "--insecure"])  # fmt: skip
    m = json.loads((root / "dist/manifest.json").read_text())
    out = work / "script-reports"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir()
    for e in m["permutations"]:
        layout = work / "script-layout"
        shutil.rmtree(layout, ignore_errors=True)
        layout.mkdir()
        sh(["tar", "-xf", str(root / "dist" / e["tarball"]), "-C", str(layout)])
        sh(["trivy", "image", "--config", config, "--quiet", "--format", "json",
            "--output", str(out / f"{e['name']}.trivy.json"), "--exit-code", "0",
            "--cache-dir", str(cache), "--skip-db-update", "--list-all-pkgs",
            "--severity", "UNKNOWN,LOW,MEDIUM,HIGH,CRITICAL", "--scanners", "vuln",
            "--pkg-types", "os,library", "--input", str(layout)])  # fmt: skip
        sh(["syft", "scan", "-q", f"oci-dir:{layout}",
            "-o", f"spdx-json={out / e['name']}.spdx.json",
            "-o", f"cyclonedx-json={out / e['name']}.cdx.json"],
           env={"SYFT_CHECK_FOR_APP_UPDATE": "false"})  # fmt: skip


def publish_profile(root: Path) -> dict[str, Any]:
    path = root / "dist/reports/publish-profile.json"
    return dict(json.loads(path.read_text())) if path.is_file() else {}


def planning_1000(work: Path) -> float:
    root = work / "plan1000"
    (root / "permutations").mkdir(parents=True)
    (root / "ctx").mkdir()
    (root / "ctx/Dockerfile").write_text("ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\nRUN true\n")
    for i in range(20):
        (root / f"ctx/file{i}.txt").write_text("x" * 2000)
    (root / "pyproject.toml").write_text("[project]\nname='p'\nversion='0'\n")
    (root / "permutations/big.yaml").write_text(
        "family: big\nmatrix:\n  a: [" + ", ".join(f'"a{i}"' for i in range(40)) + "]\n"
        "  b: [" + ", ".join(f'"b{i}"' for i in range(25)) + "]\n"
        'name: "big-{a}-{b}"\ncontext: ../ctx\nbase: "r/base:{a}"\nbuild_args: {X: "{a}{b}"}\n'
        'tags: ["{a}-{b}"]\n'
    )
    # A fresh interpreter, so the import cost a user pays is in the figure.
    code = (
        "import time\n"
        "from pathlib import Path\n"
        "t = time.perf_counter()\n"
        "from dcforge.core import hashing, permfile\n"
        f"root = Path({str(root)!r})\n"
        "perms = permfile.load_all(root / 'permutations', root=root, registry='r',\n"
        "    builtins={'base_registry': 'r', 'registry': 'r'})\n"
        "assert len(perms) == 1000\n"
        "ctx = {}\n"
        "hashes = {hashing.input_hash(p, 'sha256:' + '0' * 64, ctx) for p in perms}\n"
        "assert len(hashes) == 1000\n"
        "print(time.perf_counter() - t)\n"
    )
    return float(sh([sys.executable, "-c", code]).strip().splitlines()[-1])


PROFILED = ("trivy", "syft", "docker", "skopeo", "oras")  # cosign: its pin check reads dpkg


def profile_one(work: Path, reg: LocalRegistry, db: str) -> dict[str, Any]:
    """Where a pipeline of 1 spends its time: build, gate and publish of one permutation
    (cold, as in the sizes), each tool behind a wrapper that logs how long each call took.
    Per step: wall seconds, seconds in each tool (summed over its calls, which may overlap),
    and the rest — dcforge itself (start-up, hashing, registry reads) and cosign."""
    root = make_project(work / "profile1", 1, f"{reg.host}/profile1")
    shims, log = work / "profile-shims", work / "profile-calls.log"
    shims.mkdir(exist_ok=True)
    for tool in PROFILED:
        real = shutil.which(tool, path=ENV_BASE["PATH"])
        (shims / tool).write_text(
            f'#!/bin/sh\ns=$(date +%s.%N)\n"{real}" "$@"\nrc=$?\n'
            f'echo "{tool} $s $(date +%s.%N)" >> "{log}"\nexit $rc\n'
        )
        (shims / tool).chmod(0o755)
    env = {"DCFORGE_TRIVY_DB_REPOSITORY": db, "PATH": f"{shims}:{ENV_BASE['PATH']}"}
    prune_build_cache()
    out: dict[str, Any] = {}
    for step in (("build", "--no-prune", "--no-smoke"), ("gate",), ("publish",)):
        log.unlink(missing_ok=True)
        wall = timed(functools.partial(dcforge, root, *step, env=env))
        tools: dict[str, float] = {}
        calls: dict[str, int] = {}
        for line in log.read_text().splitlines() if log.exists() else []:
            tool, start, end = line.split()
            tools[tool] = tools.get(tool, 0.0) + float(end) - float(start)
            calls[tool] = calls.get(tool, 0) + 1
        out[step[0]] = {"wall": wall, "tools": tools, "calls": calls}
    out["startup_s"] = statistics.median(
        timed(functools.partial(dcforge, root, "--version")) for _ in range(5)
    )
    shutil.rmtree(work / "profile1", ignore_errors=True)
    return out


def run_size(n: int, work: Path, reg: LocalRegistry, db: str) -> dict[str, Any]:
    ns = f"n{n}"
    root = make_project(work / ns, n, fresh(f"{reg.host}/{ns}"))
    env = {"DCFORGE_TRIVY_DB_REPOSITORY": db}
    r: dict[str, Any] = {"n": n}
    print(f"[N={n}] build + gate + publish, back to back", flush=True)
    prune_build_cache()
    laps = [time.perf_counter()]
    for step in (("build", "--no-prune", "--no-smoke"), ("gate",), ("publish",)):
        dcforge(root, *step, env=env)
        laps.append(time.perf_counter())
    r["cold_dcforge"], r["gate_dcforge"], r["publish_dcforge"] = (
        b - a for a, b in itertools.pairwise(laps)
    )
    r["pipeline_dcforge"] = laps[-1] - laps[0]
    r["publish_profile"] = publish_profile(root)
    r["regate_dcforge"] = timed(lambda: dcforge(root, "gate", env=env))
    print(f"[N={n}] the script: bake + gate script + same-work publish, back to back", flush=True)
    bf = bake_file(root, work / ns / "bake-out")
    key = root / ".dcforge/cosign/cosign.key"
    prune_build_cache()
    r["cold_bake"] = timed(lambda: bake(bf))
    r["gate_script"] = timed(lambda: gate_script(root, db, work / ns))
    r["publish_same_work_script"] = on_own_registry(
        work / ns / "script-registry", lambda host: same_work_publish(root, host, key, "script")
    )
    r["pipeline_script"] = r["cold_bake"] + r["gate_script"] + r["publish_same_work_script"]
    r["publish_plain_script"] = on_own_registry(
        work / ns / "plain-registry", lambda host: plain_publish(root, host, key)
    )
    before = sum(reg.blobs().values())
    r["republish_dcforge"] = timed(lambda: dcforge(root, "publish", env=env))
    r["republish_uploaded_bytes"] = sum(reg.blobs().values()) - before
    print(f"[N={n}] no-change rebuild", flush=True)
    git(root, "commit", "-q", "--allow-empty", "-m", "no change")
    r["nochange_dcforge"] = timed(
        lambda: dcforge(
            root, "build", "--no-prune", "--no-smoke", "--since", "last-known-good", env=env
        )
    )
    r["nochange_bake_warm"] = timed(lambda: bake(bf))
    print(f"[N={n}] one changed", flush=True)
    (root / "ctx/p0/version.txt").write_text("2\n")
    git(root, "commit", "-q", "-am", "one changed")
    first_sha = git(root, "rev-parse", "HEAD~2")
    r["onechanged_dcforge"] = timed(
        lambda: dcforge(
            root, "build", "--no-prune", "--no-smoke", "--since", "last-known-good", env=env
        )
    )
    # The baseline rebuilds a changed permutation too (not the one dcforge just built).
    (root / "ctx/p0/version.txt").write_text("3\n")
    bf = bake_file(root, work / ns / "bake-out")
    r["onechanged_bake_warm"] = timed(lambda: bake(bf))
    (root / "ctx/p0/version.txt").write_text("2\n")
    dcforge(root, "gate", env=env)
    dcforge(root, "publish", env=env)
    print(f"[N={n}] rollback", flush=True)
    r["rollback_dcforge"] = timed(lambda: dcforge(root, "rollback", "--sha", first_sha, env=env))
    # What a rollback saves: building, gating and publishing the old release again, which
    # is what the first, cold build + gate + publish above timed end to end.
    r["rebuild_gate_publish"] = r["pipeline_dcforge"]
    shutil.rmtree(work / ns, ignore_errors=True)
    return r


SCRIPT_SAMPLE = 64  # images the same-work script publishes at scale (it does each in turn)
SCALE_STAGES = (
    ("plan", ("plan",)),
    ("build", ("build", "--no-prune", "--no-smoke")),
    ("gate", ("gate",)),
    ("publish", ("publish",)),
    ("rebuild_one_changed", ("build", "--no-prune", "--no-smoke", "--since", "last-known-good")),
    ("regate", ("gate",)),
    ("republish", ("publish",)),
    ("rollback", ("rollback", "--sha", "{first}")),
    ("verify", ("verify", "--sha", "{first}")),
    ("retention_plan", ("prune", "--registry")),
)


def scale(n: int, work: Path, reg: LocalRegistry, db: str) -> dict[str, Any]:
    """N tiny permutations (a few KB each), every stage timed: plan, build (bake groups),
    gate (every image distinct, so every one is scanned), publish against the same-work
    script, a second release (one changed, the rest reused), a rollback of all N to the
    first and ``verify`` of it, and retention planning. The script's time is measured on
    ``SCRIPT_SAMPLE`` images and scaled to N: it publishes one image after another, each
    with the same four processes, so its time per image does not depend on N."""
    ns = f"scale{n}"
    root = make_project(work / ns, n, fresh(f"{reg.host}/{ns}"), tiny=True)
    env = {"DCFORGE_TRIVY_DB_REPOSITORY": db}
    r: dict[str, Any] = {"n": n}
    first = git(root, "rev-parse", "HEAD")
    stages: dict[str, float] = {}
    for name, args in SCALE_STAGES:
        if name == "rebuild_one_changed":
            (root / "ctx/p0/version.txt").write_text("2\n")
            git(root, "commit", "-q", "-am", "one changed")
        if name == "publish":
            r["publish_profile"] = {}
        print(f"[scale N={n}] {name.replace('_', ' ')}", flush=True)
        argv = [a.format(first=first) for a in args]
        try:
            stages[name] = timed(functools.partial(dcforge, root, *argv, env=env))
        except RuntimeError as err:
            if name != "verify":
                raise
            print(f"verify after the rollback failed: {err}", file=sys.stderr)
            stages[name] = float("nan")
        if name == "publish":
            r["publish_profile"] = publish_profile(root)
            r.update(_script_at_scale(root, work / ns, n))
    r["stages"] = stages
    r["rollback_verified"] = not math.isnan(stages["verify"])
    r["build_dcforge"], r["gate_dcforge"] = stages["build"], stages["gate"]
    r["publish_dcforge"], r["rollback_dcforge"] = stages["publish"], stages["rollback"]
    r["verified_rollback_dcforge"] = stages["rollback"] + stages["verify"]
    shutil.rmtree(work / ns, ignore_errors=True)
    return r


def _script_at_scale(root: Path, work: Path, n: int) -> dict[str, Any]:
    sample = min(n, SCRIPT_SAMPLE)
    key = root / ".dcforge/cosign/cosign.key"
    print(f"[scale N={n}] the same-work script on {sample} images", flush=True)
    secs = on_own_registry(
        work / "script-registry",
        lambda host: same_work_publish(root, host, key, "script", limit=sample),
    )
    return {"publish_same_work_script": secs * n / sample, "script_sample": sample}


def two_platform_cold(work: Path, reg: LocalRegistry) -> dict[str, float]:
    """One permutation for linux/amd64 + linux/arm64 (arm64 emulated), cold: dcforge's build
    (which also checks the archive's index against the base's platforms) against plain
    ``docker buildx bake`` on the same bake file."""
    root = make_project(work / "two", 1, fresh(f"{reg.host}/two"), "[linux/amd64, linux/arm64]")
    print("[2 platforms] cold build", flush=True)
    prune_build_cache()
    ours = timed(lambda: dcforge(root, "build", "--no-prune", "--no-smoke"))
    bf = bake_file(root, work / "two" / "bake-out")
    prune_build_cache()
    theirs = timed(lambda: bake(bf))
    shutil.rmtree(work / "two", ignore_errors=True)
    return {"dcforge": ours, "bake": theirs}


LIB_DOCKERFILE = "ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\n"


def cve_clock(work: Path, reg: LocalRegistry, n: int = 16) -> dict[str, Any]:
    """The CVE clock: 1 affected of ``n`` permutations. A Debian permutation installs
    demo-lib with apt-get from a real signed apt repository (tests/integration/apt_repo.py);
    after the first release a DB names demo-lib 1.0-1 vulnerable, and the fixed 1.1-1 is
    published to the repository. Timed from that moment to the new release signed, pinned
    and rescanned clean: rescan, refresh build, gate, publish, rescan. Baseline: a cold
    ``docker buildx bake`` of that one permutation alone."""
    from tests.integration.apt_repo import AptRepo, serve

    from dcforge.core.trivydb import Advisory

    root = make_project(work / "cve", n - 1, fresh(f"{reg.host}/cve"), tiny=True)
    gateway = sh(["docker", "network", "inspect", "bridge", "-f",
                  "{{(index .IPAM.Config 0).Gateway}}"]).strip()  # fmt: skip
    client = RegistryClient(Runner(env=ENV_BASE), frozenset({"localhost", "127.0.0.1"}))
    tag = f"{time.time_ns()}"
    before = vulndb.publish_db(client, work / "db0", f"localhost:5000/bench/cve0-{tag}:2", [])
    advisory = Advisory("CVE-2099-0101", "demo-lib", "1.1-1", "CRITICAL")
    today = vulndb.publish_db(
        client, work / "db1", f"localhost:5000/bench/cve1-{tag}:2", [advisory]
    )
    r: dict[str, Any] = {"n": n}
    with AptRepo(work / "apt") as repo:
        repo.publish("demo-lib", "1.0-1", source="demo-lib")
        with serve(repo, host="0.0.0.0", advertise=gateway) as url:  # noqa: S104
            _add_lib(root, repo, url)
            env = {"DCFORGE_TRIVY_DB_REPOSITORY": before}
            print(f"[CVE clock] a release of {n}, then the fix in the mirror", flush=True)
            for first in (("build", "--no-prune", "--no-smoke"), ("gate",), ("publish",)):
                dcforge(root, *first, env=env)
            env = {"DCFORGE_TRIVY_DB_REPOSITORY": today}
            repo.publish("demo-lib", "1.1-1", source="demo-lib")
            git(root, "commit", "-q", "--allow-empty", "-m", "the fix is in the mirror")
            laps = [time.perf_counter()]
            timed_steps: tuple[tuple[tuple[str, ...], int], ...] = (
                (("rescan",), 6),
                (("build", "--no-prune", "--no-smoke", "--since", "last-known-good",
                  "--refresh", "lib"), 0),
                (("gate",), 0),
                (("publish",), 0),
                (("rescan",), 0),
            )  # fmt: skip
            for step, ok in timed_steps:
                rc = subprocess.run(
                    [sys.executable, "-m", "dcforge", *step], cwd=root, env={**ENV_BASE, **env},
                    capture_output=True, text=True, check=False,
                ).returncode  # fmt: skip
                if rc != ok:
                    raise RuntimeError(f"CVE clock: dcforge {' '.join(step)} exited {rc}")
                laps.append(time.perf_counter())
            steps = ("rescan", "refresh_build", "gate", "publish", "rescan_clean")
            r.update(zip(steps, (b - a for a, b in itertools.pairwise(laps)), strict=True))
            r["clock"] = laps[-1] - laps[0]
            bf = bake_file(root, work / "cve" / "bake-out")
            prune_build_cache()
            r["cold_bake_one"] = timed(lambda: bake(bf, "lib"))
            print("[CVE clock] the same work as a script", flush=True)
            r["script"] = cve_clock_script(root, work / "cve", bf, today)
            r["clock_script"] = sum(r["script"].values())
    shutil.rmtree(work / "cve", ignore_errors=True)
    return r


def cve_clock_script(root: Path, work: Path, bf: Path, db: str) -> dict[str, float]:
    """The CVE clock's same work as a plain sequential script: Trivy on every live image
    in turn (after fetching the new DB), a bake of the affected one with no cache, Trivy
    and syft on it, push + sign + 2 attest (a registry of its own), and Trivy on every
    image of the new release in turn. Each step's seconds."""
    from importlib import resources

    config = str(resources.files("dcforge.resources") / "trivy.yaml")
    cache = work / "script-trivy-cache"
    refs = [
        f"{e['repository']}@{e['image_digest']}"
        for e in json.loads((root / "dist/manifest.json").read_text())["permutations"]
    ]
    trivy = ["trivy", "image", "--config", config, "--quiet", "--format", "json",
             "--exit-code", "0", "--cache-dir", str(cache), "--list-all-pkgs",
             "--severity", "UNKNOWN,LOW,MEDIUM,HIGH,CRITICAL", "--scanners", "vuln",
             "--pkg-types", "os,library", "--skip-db-update"]  # fmt: skip
    out = work / "script-out"
    out.mkdir(exist_ok=True)

    def rescan() -> None:
        shutil.rmtree(cache, ignore_errors=True)
        sh(["trivy", "image", "--download-db-only", "--quiet", "--cache-dir", str(cache),
            "--db-repository", db, "--insecure"])  # fmt: skip
        for i, ref in enumerate(refs):
            sh([*trivy, "--insecure", "--image-src", "remote", "-o", str(out / f"{i}.json"), ref])

    tar = work / "bake-out" / "lib.tar"

    def gate() -> None:
        layout = work / "script-layout"
        shutil.rmtree(layout, ignore_errors=True)
        layout.mkdir()
        sh(["tar", "-xf", str(tar), "-C", str(layout)])
        sh([*trivy, "-o", str(out / "lib.trivy.json"), "--input", str(layout)])
        sh(["syft", "scan", "-q", f"oci-dir:{layout}", "-o", f"spdx-json={out}/lib.spdx.json",
            "-o", f"cyclonedx-json={out}/lib.cdx.json"],
           env={"SYFT_CHECK_FOR_APP_UPDATE": "false"})  # fmt: skip

    key = root / ".dcforge/cosign/cosign.key"
    steps: dict[str, float] = {"rescan": timed(rescan)}
    no_cache = ["docker", "buildx", "bake", "--progress=plain", "--no-cache", "-f", str(bf)]
    steps["refresh_build"] = timed(lambda: sh([*no_cache, "lib"], cwd=bf.parent))
    steps["gate"] = timed(gate)
    index = sh(["tar", "-xOf", str(tar), "index.json"])
    digest = str(json.loads(index)["manifests"][0]["digest"])
    steps["publish"] = on_own_registry(
        work / "script-registry",
        lambda host: publish_one(f"{host}/script/lib", tar, digest, out / "lib.spdx.json", key),
    )
    steps["rescan_clean"] = timed(rescan)
    return steps


def _add_lib(root: Path, repo: Any, url: str) -> None:
    """The affected permutation: Debian, demo-lib from the mirror by apt-get."""
    ctx = root / "ctx/lib"
    ctx.mkdir(parents=True)
    repo.write_context(ctx, url)
    (ctx / "Dockerfile").write_text(LIB_DOCKERFILE + repo.dockerfile_snippet("demo-lib"))
    (root / "permutations/lib.yaml").write_text(
        'family: lib\nname: lib\ncontext: "../ctx/lib"\n'
        'base: "{base_registry}/debian:bookworm"\ntags: ["lib"]\n'
    )
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "lib")


def reproduce(work: Path, reg: LocalRegistry, n: int, shipped: bool) -> dict[str, Any]:
    """``build --check-reproducible`` (two cold builds, then the comparison) of N tiny
    permutations against two cold ``docker buildx bake`` runs of the same bake file; with
    ``shipped``, also the repository's own permutations (every platform, arm64 emulated)."""
    root = make_project(work / "repro", n, fresh(f"{reg.host}/repro"), tiny=True)
    print(f"[reproduce N={n}] two cold builds, compared", flush=True)
    prune_build_cache()
    ours = timed(lambda: dcforge(root, "build", "--check-reproducible", "--no-prune"))
    found = json.loads((root / "dist/reports/reproduce.json").read_text())
    bf = bake_file(root, work / "repro" / "bake-out")
    prune_build_cache()
    first = timed(lambda: bake(bf))
    prune_build_cache()
    second = timed(lambda: bake(bf))
    r: dict[str, Any] = {"n": n, "dcforge": ours, "two_cold_bakes": first + second}
    r["share_identical"], r["images"] = found["share_identical"], found["images"]
    shutil.rmtree(work / "repro", ignore_errors=True)
    if shipped:
        print("[reproduce] the shipped permutations", flush=True)
        dist = work / "shipped-dist"
        env = {"DCFORGE_DIST": str(dist), "DCFORGE_REGISTRY": f"{reg.host}/shipped"}
        start = time.perf_counter()
        try:
            dcforge(ROOT, "build", "--check-reproducible", "--no-prune", env=env)
        except RuntimeError as err:  # not reproducible: the report says where
            print(f"shipped permutations not reproducible: {err}", file=sys.stderr)
        shipped_report = json.loads((dist / "reports/reproduce.json").read_text())
        r["shipped"] = {
            "seconds": time.perf_counter() - start,
            "share_identical": shipped_report["share_identical"],
            "images": shipped_report["images"],
            "differences": shipped_report["differences"],
        }
    return r


PARTS = ("planning", "profile", "sizes", "two_platform", "reproduce", "cve_clock", "scale")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="", help="comma-separated N (default 1,4,16)")
    parser.add_argument("--full", action="store_true", help="sizes 1,4,16,64")
    parser.add_argument(
        "--scale",
        default="1000",
        help="tiny-image scale N, or a comma list (a smaller N beside it shows how each stage "
        "grows; 0: skip; default 1000)",
    )
    parser.add_argument("--out", type=Path, default=ROOT / "dist/bench")
    parser.add_argument(
        "--repeat", type=int, default=3, help="runs of each scenario; ratios are their median"
    )
    parser.add_argument(
        "--scale-repeat",
        type=int,
        default=1,
        help="runs of the scale scenario (default 1: ~25 min a run at 1,000; its figures are "
        "over every permutation)",
    )
    parser.add_argument(
        "--only",
        default="",
        help=f"comma-separated scenarios to run (default all): {','.join(PARTS)}",
    )
    args = parser.parse_args()
    k = max(1, args.repeat)
    sizes_text = args.sizes or ("1,4,16,64" if args.full else "1,4,16")
    sizes = [int(s) for s in sizes_text.split(",")]
    only = set(args.only.split(",")) if args.only else set(PARTS)
    if unknown := only - set(PARTS):
        parser.error(f"--only: unknown scenario(s) {', '.join(sorted(unknown))}")
    start = time.perf_counter()
    results: list[dict[str, Any]] = []
    extras: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="dcforge-bench-") as tmp:
        work = Path(tmp)
        reg = LocalRegistry(work / "registry")
        reg.start()
        try:
            db = prepare_db(work)
            if "planning" in only:
                extras["planning_1000_s"] = planning_1000(work)
            if "profile" in only:
                extras["profile_one"] = profile_one(work, reg, db)
            for n in sizes if "sizes" in only else []:
                results.append(median_run([run_size(n, work, reg, db) for _ in range(k)]))
            if "two_platform" in only:
                extras["two_platform_cold_build"] = median_run(
                    [two_platform_cold(work, reg) for _ in range(k)]
                )
            if "reproduce" in only:
                extras["reproduce"] = reproduce(work, reg, 8, shipped=args.full)
            if "cve_clock" in only:
                extras["cve_clock"] = median_run([cve_clock(work, reg) for _ in range(k)])
            scales = sorted(int(x) for x in str(args.scale).split(",") if int(x) > 0)
            if scales and "scale" in only:
                runs = max(1, args.scale_repeat)
                points = [
                    median_run([scale(n, work, reg, db) for _ in range(runs)]) for n in scales
                ]
                extras["scale"], extras["scale_smaller"] = points[-1], points[:-1]
        finally:
            reg.stop()
            # What ran is reported even when a later scenario failed.
            report(results, extras, args.out, time.perf_counter() - start, LAYER_MB, machine())
    return 0


def prepare_db(work: Path) -> str:
    """The bundled sample DB served by the stack's registry (the public one is out of reach
    here), through dcforge's own DB push: the benchmark is a user of the package."""
    reg = RegistryClient(Runner(env=ENV_BASE), frozenset({"localhost", "127.0.0.1"}))
    repo = "localhost:5000/bench/trivy-db:2"
    return vulndb.push_db_dir(reg, work, repo, trivydb.sample_db(work / "db"))


if __name__ == "__main__":
    sys.exit(main())
