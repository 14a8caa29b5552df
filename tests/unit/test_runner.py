from __future__ import annotations

import pytest

from dcforge.errors import ToolError
from dcforge.runner import Runner, redact, secret_values


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
