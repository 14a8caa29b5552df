from __future__ import annotations

import pytest

from dcforge.core.errors import ToolError
from dcforge.infra.runner import TOOL_ENV, Runner, common_variable, redact, secret_values, tool_env


def test_secret_values_are_redacted() -> None:
    env = {
        "COSIGN_PASSWORD": "hunter22",
        "GITHUB_TOKEN": "ghp_abcdef",
        "PATH": "/bin",
        "X": "hunter22x",
    }
    secrets = secret_values(env)
    assert secrets == {"hunter22", "ghp_abcdef"}
    assert redact("pw=hunter22 token ghp_abcdef", secrets) == "pw=*** token ***"


def test_a_password_given_on_stdin_is_redacted_too(capsys: pytest.CaptureFixture[str]) -> None:
    Runner(env={}, dry_run=True).run(["oras", "login", "pw-on-stdin-7"], redacted=["pw-on-stdin-7"])
    err = capsys.readouterr().err
    assert "oras login ***" in err
    assert "pw-on-stdin-7" not in err


def test_missing_tool_names_the_tool_and_the_fix() -> None:
    with pytest.raises(
        ToolError, match="couldn't find 'no-such-tool' on PATH — run scripts/bootstrap"
    ):
        Runner(env={"PATH": "/nonexistent"}).run(["no-such-tool"])


def test_dry_run_does_not_spawn(capsys: pytest.CaptureFixture[str]) -> None:
    result = Runner(env={"COSIGN_PASSWORD": "sekrit99"}, dry_run=True).run(
        ["cosign", "sign", "--password", "sekrit99"]
    )
    assert result.returncode == 0
    err = capsys.readouterr().err
    assert "dry run" in err
    assert "sekrit99" not in err


BASE = {
    "PATH": "/bin",
    "HOME": "/home/u",
    "LC_ALL": "C.UTF-8",
    "XDG_RUNTIME_DIR": "/run/user/1000",
    "https_proxy": "http://proxy:3128",
    "DOCKER_CONFIG": "/home/u/.docker",
    "DOCKER_HOST": "unix:///run/docker.sock",
    "COSIGN_PASSWORD": "hunter22",
    "SIGSTORE_ID_TOKEN": "eyJ-oidc",
    "ACTIONS_ID_TOKEN_REQUEST_TOKEN": "oidc-request",
    "ACTIONS_RUNTIME_TOKEN": "cache-token",
    "GITHUB_TOKEN": "ghp_abcdef",
    "DCFORGE_REGISTRY_PASSWORD": "reg-pass",
    "TRIVY_USERNAME": "robot",
    "SYFT_CHECK_FOR_APP_UPDATE": "false",
    "GIT_AUTHOR_NAME": "t",
    "NODE_EXTRA_CA_CERTS": "/etc/ca.pem",
}
COMMON = {"PATH", "HOME", "LC_ALL", "XDG_RUNTIME_DIR", "https_proxy", "DOCKER_CONFIG"}


@pytest.mark.parametrize(
    ("tool", "own"),
    [
        ("cosign", {"COSIGN_PASSWORD", "SIGSTORE_ID_TOKEN", "ACTIONS_ID_TOKEN_REQUEST_TOKEN"}),
        (
            "/usr/bin/cosign",
            {"COSIGN_PASSWORD", "SIGSTORE_ID_TOKEN", "ACTIONS_ID_TOKEN_REQUEST_TOKEN"},
        ),
        ("trivy", {"TRIVY_USERNAME"}),
        ("syft", {"SYFT_CHECK_FOR_APP_UPDATE"}),
        ("git", {"GIT_AUTHOR_NAME"}),
        ("docker", {"DOCKER_HOST", "ACTIONS_RUNTIME_TOKEN"}),
        ("/state/node_modules/.bin/devcontainer", {"DOCKER_HOST", "NODE_EXTRA_CA_CERTS"}),
        ("oras", set()),
        ("skopeo", set()),
        ("some-test-utility", set()),
    ],
)
def test_each_tool_sees_the_common_base_and_its_own_variables(tool: str, own: set[str]) -> None:
    assert set(tool_env(tool, BASE)) == COMMON | own


def test_the_github_token_and_registry_passwords_reach_no_tool() -> None:
    for tool in [*TOOL_ENV, "unknown"]:
        seen = tool_env(tool, BASE)
        assert "GITHUB_TOKEN" not in seen
        assert "DCFORGE_REGISTRY_PASSWORD" not in seen
        assert ("COSIGN_PASSWORD" in seen) == (tool == "cosign")


def test_the_common_base() -> None:
    assert all(common_variable(name) for name in COMMON)
    assert not any(common_variable(name) for name in set(BASE) - COMMON)
    assert common_variable("NO_PROXY") and common_variable("SSL_CERT_FILE")
    assert common_variable("REGISTRY_AUTH_FILE") and common_variable("CI")


def test_registry_clients_carry_what_credential_helpers_read() -> None:
    helpers = {"AWS_PROFILE": "ecr", "CLOUDSDK_CONFIG": "/g", "SSH_AUTH_SOCK": "/s"}
    for tool in ("docker", "oras", "skopeo", "trivy", "syft"):
        assert set(helpers) <= set(tool_env(tool, {**BASE, **helpers})), tool
    for tool in ("git", "devcontainer", "some-test-utility"):
        assert not set(helpers) & set(tool_env(tool, {**BASE, **helpers})), tool
