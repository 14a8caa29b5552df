"""Secrets never reach a log, dist/, a report, or anything pushed to the registry."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.conftest import PrivateRegistry, TrivyDb, env_for, run_dcforge

pytestmark = pytest.mark.integration

SECRETS = {
    "COSIGN_PASSWORD": "cosign-Pa55-7f3a9c1e",
    "GITHUB_TOKEN": "ghp_" + "Zq8Lm2Nx4Rt6Vy8Ab0Cd2Ef4Gh6Ij8Kl0Mn2",
    "DCFORGE_REGISTRY_USERNAME": "robot-dcforge",
    "DCFORGE_REGISTRY_PASSWORD": "reg-Secr3t-5b7d9f1h",
}


@pytest.mark.reliability(
    scenario="secrets in the environment",
    checks="COSIGN_PASSWORD, a GITHUB_TOKEN and registry credentials absent from stdout/stderr (--verbose), dist/, reports and registry storage",
)
def test_the_main_job_leaks_no_secret(
    project: Path, private_registry: PrivateRegistry, trivy_db: TrivyDb
) -> None:
    env = {**env_for(private_registry, trivy_db), **SECRETS}
    output = ""
    for step in (
        ["build", "--no-prune"],
        ["gate"],
        ["publish"],
        ["verify"],
        ["releases"],
        ["prune", "--registry"],
    ):
        result = run_dcforge("--verbose", *step, cwd=project, env=env)
        assert result.returncode == 0, result.stderr
        output += result.stdout + result.stderr
    assert "+ cosign attach signature" in output  # --verbose really echoed the commands
    secret_values = [v for k, v in SECRETS.items() if k != "DCFORGE_REGISTRY_USERNAME"]
    for value in secret_values:
        assert value not in output
    for path in [*(project / "dist").rglob("*"), *private_registry.storage.rglob("*")]:
        if path.is_file():
            data = path.read_bytes()
            for value in secret_values:
                assert value.encode() not in data, f"{value[:6]}… leaked into {path}"
