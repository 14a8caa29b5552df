"""dcforge benchmarks: every scenario timed against a baseline measured in the same run.

Generated permutations FROM busybox, each with a 50 MB layer of incompressible data, at
several sizes N. A private registry on a free port keeps the numbers free of other state.
Results: dist/bench/results.json, results.md and bench.png.

    nox -s bench                      # sizes 1,4,16
    nox -s bench -- --sizes 1,4,16,64
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dcforge import settings as st
from dcforge import trivydb
from dcforge.runner import Runner
from dcforge.stages import build, gate
from dcforge.tools import buildx
from dcforge.tools.local_registry import LocalRegistry
from dcforge.tools.registry import Registry as RegistryClient

ROOT = Path(__file__).resolve().parents[1]
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


def make_project(root: Path, n: int, registry: str, platforms: str = "") -> Path:
    root.mkdir(parents=True)
    (root / "pyproject.toml").write_text(
        f'[project]\nname = "bench"\nversion = "0"\n\n[tool.dcforge]\nregistry = "{registry}"\n'
        'base_registry = "localhost:5000/library"\ncache_backend = "none"\n'
    )
    for i in range(n):
        ctx = root / "ctx" / f"p{i}"
        ctx.mkdir(parents=True)
        (ctx / "Dockerfile").write_text(DOCKERFILE)
        (ctx / "version.txt").write_text("1\n")
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
    return root


def git(root: Path, *args: str) -> str:
    return sh(["git", "-C", str(root), "-c", "user.name=b", "-c", "user.email=b@x", *args]).strip()


def dcforge(root: Path, *args: str, env: dict[str, str] | None = None) -> str:
    return sh([sys.executable, "-m", "dcforge", *args], cwd=root, env=env)


def bake_file(root: Path, out: Path) -> Path:
    """The bake file dcforge itself would build from (same targets, plain buildx bake)."""
    conf = st.load(root, {})
    targets = build.bake_targets(conf, Runner(env=ENV_BASE), {}, out, "0" * 40)
    out.mkdir(parents=True, exist_ok=True)
    path = root / "bake" / "docker-bake.json"
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps(buildx.bake_definition(targets), indent=2))
    return path


def bake(path: Path) -> None:
    sh(["docker", "buildx", "bake", "--progress=plain", "-f", str(path)], cwd=path.parent)


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
        "from dcforge import config, hashing\n"
        f"root = Path({str(root)!r})\n"
        "perms = config.load_all(root / 'permutations', root=root, registry='r',\n"
        "    builtins={'base_registry': 'r', 'registry': 'r'})\n"
        "assert len(perms) == 1000\n"
        "ctx = {}\n"
        "hashes = {hashing.input_hash(p, 'sha256:' + '0' * 64, ctx) for p in perms}\n"
        "assert len(hashes) == 1000\n"
        "print(time.perf_counter() - t)\n"
    )
    return float(sh([sys.executable, "-c", code]).strip().splitlines()[-1])


def run_size(n: int, work: Path, reg: LocalRegistry, db: str) -> dict[str, Any]:
    ns = f"n{n}"
    root = make_project(work / ns, n, f"{reg.host}/{ns}")
    env = {"DCFORGE_TRIVY_DB_REPOSITORY": db}
    r: dict[str, Any] = {"n": n}
    print(f"[N={n}] cold build", flush=True)
    prune_build_cache()
    r["cold_dcforge"] = timed(lambda: dcforge(root, "build", "--no-prune", "--no-smoke", env=env))
    bf = bake_file(root, work / ns / "bake-out")
    prune_build_cache()
    r["cold_bake"] = timed(lambda: bake(bf))
    print(f"[N={n}] gate + publish", flush=True)
    dcforge(root, "gate", env=env)
    r["publish_dcforge"] = timed(lambda: dcforge(root, "publish", env=env))
    key = root / ".dcforge/cosign/cosign.key"
    r["publish_plain_script"] = timed(lambda: plain_publish(root, reg.host, key))
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
    r["rebuild_and_publish"] = r["cold_dcforge"] + r["publish_dcforge"]
    shutil.rmtree(work / ns, ignore_errors=True)
    return r


def two_platform_cold(work: Path, reg: LocalRegistry) -> dict[str, float]:
    """One permutation for linux/amd64 + linux/arm64 (arm64 emulated), cold: dcforge's build
    (which also checks the archive's index against the base's platforms) against plain
    ``docker buildx bake`` on the same bake file."""
    root = make_project(work / "two", 1, f"{reg.host}/two", "[linux/amd64, linux/arm64]")
    print("[2 platforms] cold build", flush=True)
    prune_build_cache()
    ours = timed(lambda: dcforge(root, "build", "--no-prune", "--no-smoke"))
    bf = bake_file(root, work / "two" / "bake-out")
    prune_build_cache()
    theirs = timed(lambda: bake(bf))
    shutil.rmtree(work / "two", ignore_errors=True)
    return {"dcforge": ours, "bake": theirs}


TIMES = "\N{MULTIPLICATION SIGN}"

SCENARIOS = [
    ("cold build", "cold_dcforge", "cold_bake", "docker buildx bake (cold)", 1.10),
    ("no-change rebuild", "nochange_dcforge", "nochange_bake_warm", "bake, warm cache", 0.10),
    ("one changed of N", "onechanged_dcforge", "onechanged_bake_warm", "bake, warm cache", None),
    ("publish N", "publish_dcforge", "publish_plain_script", "load+push+sign script", 0.5),
    ("re-publish unchanged", "republish_dcforge", "publish_dcforge", "first publish", None),
    ("rollback N", "rollback_dcforge", "rebuild_and_publish", "rebuild + publish", 0.05),
]


def report(
    results: list[dict[str, Any]],
    planning: float,
    two: dict[str, float],
    out: Path,
    elapsed: float,
) -> None:
    out.mkdir(parents=True, exist_ok=True)
    machine = (
        f"{platform.node()}: {os.cpu_count()} cores, {platform.platform()}, "
        f"Python {platform.python_version()}"
    )
    data = {
        "machine": machine,
        "layer_mb": LAYER_MB,
        "elapsed_s": elapsed,
        "sizes": results,
        "planning_1000_s": planning,
        "two_platform_cold_build": two,
    }
    (out / "results.json").write_text(json.dumps(data, indent=2))
    lines = [
        f"Machine: {machine}. Each permutation carries a {LAYER_MB} MB incompressible layer.",
        "",
        "| scenario | N | dcforge (s) | baseline | baseline (s) | ratio | target |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, ours, base, label, target in SCENARIOS:
        for r in results:
            ratio = r[ours] / r[base] if r[base] else float("nan")
            tgt = f"≤ {target:.2f}{TIMES}" if target is not None else "—"
            cells = [name, r["n"], f"{r[ours]:.2f}", label, f"{r[base]:.2f}"]
            cells += [f"{ratio:.2f}{TIMES}", tgt]
            lines.append("| " + " | ".join(map(str, cells)) + " |")
    for r in results:
        uploaded = r["republish_uploaded_bytes"]
        lines.append(f"| re-publish bytes uploaded | {r['n']} | {uploaded} B | — | — | — | 0 B |")
    lines.append(f"| planning 1,000 permutations | 1000 | {planning:.3f} | — | — | — | < 1 s |")
    cells = ["cold build, linux/amd64 + linux/arm64 (emulated)", 1, f"{two['dcforge']:.2f}"]
    cells += ["docker buildx bake (cold)", f"{two['bake']:.2f}"]
    cells += [f"{two['dcforge'] / two['bake']:.2f}{TIMES}", f"≤ 1.10{TIMES}"]
    lines.append("| " + " | ".join(map(str, cells)) + " |")
    lines.append("")
    lines.append(f"Total benchmark time: {elapsed / 60:.1f} min.")
    (out / "results.md").write_text("\n".join(lines) + "\n")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(2, 3, figsize=(14, 8))
        for ax, (name, ours, base, label, _) in zip(axes.flat, SCENARIOS, strict=True):
            ns = [r["n"] for r in results]
            ax.plot(ns, [r[ours] for r in results], "o-", label="dcforge")
            ax.plot(ns, [r[base] for r in results], "s--", label=label)
            ax.set_title(name)
            ax.set_xlabel("N permutations")
            ax.set_ylabel("seconds")
            ax.set_xscale("log", base=2)
            ax.legend(fontsize=8)
        fig.suptitle(f"dcforge benchmarks ({LAYER_MB} MB layer each) — {machine}", fontsize=9)
        fig.tight_layout()
        fig.savefig(out / "bench.png", dpi=100)
    except ImportError:
        print("matplotlib missing: no plot", file=sys.stderr)
    print((out / "results.md").read_text())


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="1,4,16")
    parser.add_argument("--out", type=Path, default=ROOT / "dist/bench")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="dcforge-bench-") as tmp:
        work = Path(tmp)
        reg = LocalRegistry(work / "registry")
        reg.start()
        try:
            db = prepare_db(work)
            planning = planning_1000(work)
            results = [run_size(n, work, reg, db) for n in sizes]
            two = two_platform_cold(work, reg)
        finally:
            reg.stop()
    report(results, planning, two, args.out, time.perf_counter() - start)
    return 0


def prepare_db(work: Path) -> str:
    """The bundled sample DB served by the stack's registry (the public one is out of reach
    here), through the gate's own push: the benchmark is a user of the package."""
    reg = RegistryClient(Runner(env=ENV_BASE), frozenset({"localhost", "127.0.0.1"}))
    repo = "localhost:5000/bench/trivy-db:2"
    return gate.push_db_dir(reg, work, repo, trivydb.sample_db(work / "db"))


if __name__ == "__main__":
    sys.exit(main())
