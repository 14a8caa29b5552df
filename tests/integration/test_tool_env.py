"""Secrets reach only the tool that needs them: every tool wrapper (src/dcforge/infra/tools/*, and
gitinfo) runs through the real runner, with COSIGN_PASSWORD, GITHUB_TOKEN and a registry
password in the base environment, and each child process's environment is recorded.

A recording shim first on PATH stands in for each tool: it appends the names of the
variables it was given, each with a hash of its value (never the value), to a log, then
``exec``s the real tool, which does the real work."""

from __future__ import annotations

import hashlib
import json
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from dcforge.core import oci_archive, refs
from dcforge.infra import gitinfo, signing
from dcforge.infra.runner import Runner, common_variable
from dcforge.infra.tools import buildx, cosign, devcontainer_cli, registry, syft, trivy
from tests.integration import oras_oracle
from tests.integration.conftest import ROOT, TrivyDb, base_env, fake_tool, git_commit

pytestmark = pytest.mark.integration

SECRETS = {
    "COSIGN_PASSWORD": "cosign-Pa55-toolenv-4d1c",
    "GITHUB_TOKEN": "ghp_" + "ToolEnv8Lm2Nx4Rt6Vy8Ab0Cd2Ef4Gh6Ij8Kl0",
    "DCFORGE_REGISTRY_PASSWORD": "reg-Secr3t-toolenv-9e2a",
}
TOOLS = ("git", "oras", "skopeo", "docker", "syft", "trivy", "cosign", "devcontainer")
PROBE = "toolenv-probe"  # no tool of dcforge's: an unknown executable

RECORDER = """\
import hashlib, json, os, sys
log, tool, sub = sys.argv[1], sys.argv[2], sys.argv[3]
env = {k: hashlib.sha256(v.encode()).hexdigest()[:16] for k, v in os.environ.items()}
with open(log, "a") as fh:
    fh.write(json.dumps({"tool": tool, "sub": sub, "env": env}) + "\\n")
"""


def digest_of(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Record:
    tool: str
    sub: str  # the first argument (a subcommand), never an environment value
    env: dict[str, str]  # name → hash of the value

    def holds(self, value: str) -> bool:
        return digest_of(value) in self.env.values()


def real_tools(env: dict[str, str]) -> dict[str, str]:
    """Where each real tool is: on PATH, the Dev Containers CLI where bootstrap put it."""
    found = Runner(env=env)
    reals = {tool: found.which(tool) for tool in TOOLS if tool != "devcontainer"}
    reals["devcontainer"] = devcontainer_cli.executable(found, ROOT / ".dcforge")
    return reals


def shims(directory: Path, log: Path, reals: dict[str, str]) -> Path:
    """A recording shim for each tool (and the probe) in ``directory``."""
    recorder = directory.parent / "record.py"
    recorder.write_text(RECORDER)
    record = f'"{sys.executable}" "{recorder}" "{log}"'
    for tool, real in reals.items():
        fake_tool(directory, tool, f'{record} {tool} "$1" || exit 97\nexec "{real}" "$@"\n')
    fake_tool(directory, PROBE, f'{record} {PROBE} "$1"\n')
    return directory


def devcontainer_build(run: Runner, cli: str, work: Path, base: str) -> None:
    workspace = work / "dc"
    (workspace / ".devcontainer").mkdir(parents=True)
    (workspace / ".devcontainer" / "Dockerfile").write_text(f"FROM {base}\n")
    (workspace / ".devcontainer" / "devcontainer.json").write_text(
        json.dumps({"build": {"dockerfile": "Dockerfile"}})
    )
    devcontainer_cli.build(
        run, cli, workspace=workspace, config=workspace / ".devcontainer/devcontainer.json",
        output_tar=work / "dc.tar", image_name="dcforge-toolenv:dc", platforms=["linux/amd64"],
        labels={}, cache_from=[], cache_to=[], no_cache=False, builder=buildx.Builder(),
        timeout=600,
    )  # fmt: skip


def every_wrapper(run: Runner, work: Path, base: str, repo: str, db: TrivyDb) -> None:
    """Each wrapper once, each with its real tool behind the shim."""
    (work / "checkout").mkdir()
    git_commit(work / "checkout")
    gitinfo.current(run, work / "checkout", run.env)
    oras_oracle.resolve(run, base, plain_http=True)
    config = replace(run, env={**run.env, "DOCKER_CONFIG": str(work / "docker-config")})
    registry.login(config, "localhost:5000", "robot", SECRETS["DCFORGE_REGISTRY_PASSWORD"])
    (work / "ctx").mkdir()
    (work / "ctx" / "Dockerfile").write_text(f"FROM {base}\nRUN echo toolenv > /mark\n")
    buildx.builder_platforms(run)
    buildx.build_oci(run, work / "ctx", work / "img.tar")
    registry.push_oci_archive(run, work / "img.tar", f"{repo}:1", plain_http=True)
    ref = refs.at_digest(f"{repo}:1", oci_archive.oci_archive(work / "img.tar")[0])
    syft.sbom(run, work / "img.tar", work / "sbom.spdx.json")
    layout = trivy.unpack_oci_archive(work / "img.tar", work / "layout")
    options = trivy.ScanOptions(cache_dir=db.cache_dir, db_repository=db.repository, insecure=True)
    trivy.scan(run, layout, work / "report.json", options)
    key, pub = cosign.generate_key_pair(run, work / "keys", signing.cosign_env(run.env))
    signer = cosign.Signer(key=str(key), public_key=str(pub))
    cosign.sign(run, signer, ref, plain_http=True, env=signing.cosign_env(run.env))
    cosign.verify(run, signer, ref, plain_http=True)
    devcontainer_build(run, str(Path(run.which("devcontainer"))), work, base)
    run.run([PROBE, "probe"])


@pytest.fixture(scope="module")
def records(
    stack: str,
    busybox_digest: str,
    namespace: str,
    trivy_db: TrivyDb,
    tmp_path_factory: pytest.TempPathFactory,
) -> list[Record]:
    work = tmp_path_factory.mktemp("toolenv")
    log = work / "env.log"
    env = {**base_env(), **SECRETS}
    reals = real_tools(env)
    env["PATH"] = f"{shims(work / 'shims', log, reals)}:{env['PATH']}"
    base = f"{stack}/library/busybox@{busybox_digest}"
    every_wrapper(Runner(env=env), work, base, f"{namespace}/toolenv", trivy_db)
    return [Record(**json.loads(line)) for line in log.read_text().splitlines()]


def test_every_tool_ran_behind_its_shim(records: list[Record]) -> None:
    assert {r.tool for r in records} >= {*TOOLS, PROBE}


def test_the_cosign_password_reaches_cosign_only(records: list[Record]) -> None:
    password = SECRETS["COSIGN_PASSWORD"]
    saw = sorted({r.tool for r in records if r.holds(password) or "COSIGN_PASSWORD" in r.env})
    assert saw == ["cosign"]
    signed = [r for r in records if r.tool == "cosign" and r.sub in ("sign", "generate-key-pair")]
    assert signed and all(r.holds(password) for r in signed)


def test_no_tool_sees_the_github_token(records: list[Record]) -> None:
    token = SECRETS["GITHUB_TOKEN"]
    assert sorted({r.tool for r in records if r.holds(token) or "GITHUB_TOKEN" in r.env}) == []


def test_the_registry_password_goes_to_no_environment(records: list[Record]) -> None:
    password = SECRETS["DCFORGE_REGISTRY_PASSWORD"]  # oras login reads it on stdin
    saw = sorted({r.tool for r in records if r.holds(password)})
    assert saw == []
    assert not any("DCFORGE_REGISTRY_PASSWORD" in r.env for r in records)
    assert [r.sub for r in records if r.tool == "oras"].count("login") == 1


def test_explicit_variables_reach_their_tool(records: list[Record]) -> None:
    assert all("SYFT_CHECK_FOR_APP_UPDATE" in r.env for r in records if r.tool == "syft")
    cli = [r for r in records if r.tool == "devcontainer" and r.sub == "build"]
    assert cli and all("BUILDX_NO_DEFAULT_ATTESTATIONS" in r.env for r in cli)


def test_an_unknown_executable_gets_the_common_base_only(records: list[Record]) -> None:
    probe: list[dict[str, Any]] = [r.env for r in records if r.tool == PROBE]
    assert probe
    shell = {"PWD", "OLDPWD", "SHLVL", "_"}  # what /bin/sh itself exports to the recorder
    extra = {n for env in probe for n in env if not common_variable(n)} - shell
    assert extra == set()
