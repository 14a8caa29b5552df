"""What scripts/bootstrap does to a machine it did not set up: an existing
/etc/docker/daemon.json is merged (a backup kept), never replaced; a broken one stops it."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.integration


def merge(path: Path) -> subprocess.CompletedProcess[str]:
    """Run the exact daemon.json merge the bootstrap runs (its heredoc), on ``path``."""
    script = (ROOT / "scripts/bootstrap").read_text()
    found = re.search(r"<<'PY' \|\| exit 1\n(.*?)\nPY\n", script, re.S)
    assert found, "the daemon.json merge moved; update this test"
    return subprocess.run(
        [sys.executable, "-", str(path)],
        input=found[1],
        capture_output=True,
        text=True,
        check=False,
    )


def test_an_existing_daemon_json_is_merged_not_replaced(tmp_path: Path) -> None:
    path = tmp_path / "daemon.json"
    mine = {
        "log-driver": "journald",
        "registry-mirrors": ["https://m.example"],
        "features": {"cdi": True},
    }
    path.write_text(json.dumps(mine))
    assert merge(path).returncode == 0
    merged = json.loads(path.read_text())
    assert merged == {**mine, "features": {"cdi": True, "containerd-snapshotter": True}}
    assert json.loads((tmp_path / "daemon.json.before-dcforge").read_text()) == mine
    before = path.read_bytes()
    assert merge(path).returncode == 0 and path.read_bytes() == before  # idempotent


@pytest.mark.parametrize("text", ["{not json", "[1, 2]", '{"features": "on"}'])
def test_a_daemon_json_it_cannot_read_stops_it_and_is_left_alone(tmp_path: Path, text: str) -> None:
    path = tmp_path / "daemon.json"
    path.write_text(text)
    result = merge(path)
    assert result.returncode != 0 and "bootstrap: error:" in result.stderr
    assert path.read_text() == text


def test_no_daemon_json_gets_just_the_image_store(tmp_path: Path) -> None:
    path = tmp_path / "daemon.json"
    assert merge(path).returncode == 0
    assert json.loads(path.read_text()) == {"features": {"containerd-snapshotter": True}}
