"""The settings the scripts act on come from dcforge's one reader: which registry is local,
and on which port the local one listens."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from dcforge.core import settings
from dcforge.infra.hostsetup import registry_addr, settings_lines

ROOT = Path(__file__).resolve().parents[2]


def _values(env: dict[str, str]) -> dict[str, str]:
    conf = settings.load(ROOT, env)
    pairs = (line.split("=", 1) for line in settings_lines(conf, env))
    return {name: " ".join(shlex.split(value)) for name, value in pairs}


@pytest.mark.parametrize(
    ("registry", "base", "addr"),
    [
        ("localhost:5000/dcforge", "localhost:5000/library", "127.0.0.1:5000"),
        ("localhost:5001/dcforge", "localhost:5000/library", "127.0.0.1:5001"),
        ("127.0.0.1:6000/x", "docker.io/library", "127.0.0.1:6000"),
        ("ghcr.io/acme/images", "localhost:5002/library", "127.0.0.1:5002"),
        ("localhost/dcforge", "docker.io/library", "127.0.0.1:5000"),
        ("[::1]:5003/x", "docker.io/library", "127.0.0.1:5003"),
    ],
)
def test_the_local_registry_listens_where_the_settings_say(
    registry: str, base: str, addr: str
) -> None:
    env = {"DCFORGE_REGISTRY": registry, "DCFORGE_BASE_REGISTRY": base}
    assert registry_addr(settings.load(ROOT, env), env) == addr


def test_an_explicit_address_wins() -> None:
    env = {"DCFORGE_REGISTRY_ADDR": "127.0.0.1:7000"}
    assert registry_addr(settings.load(ROOT, env), env) == "127.0.0.1:7000"


def test_local_bases_with_a_remote_registry_still_need_the_local_stack() -> None:
    found = _values({"DCFORGE_REGISTRY": "ghcr.io/acme/images"})
    assert found["DCF_LOCAL"] == "1" and found["DCF_LOCAL_BASES"] == "1"
    found = _values(
        {"DCFORGE_REGISTRY": "ghcr.io/acme/images", "DCFORGE_BASE_REGISTRY": "docker.io/library"}
    )
    assert found["DCF_LOCAL"] == "0" and found["DCF_LOCAL_BASES"] == "0"


def test_values_are_quoted_for_the_shell() -> None:
    env = {"DCFORGE_STATE_DIR": "/tmp/a b/$(touch x)"}
    line = next(
        x for x in settings_lines(settings.load(ROOT, env), env) if x.startswith("DCF_STATE=")
    )
    assert shlex.split(line.split("=", 1)[1]) == [str(ROOT / "/tmp/a b/$(touch x)")]
