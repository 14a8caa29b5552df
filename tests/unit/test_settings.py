from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from dcforge.core import settings
from dcforge.core.errors import ConfigError
from dcforge.infra.runner import Runner
from dcforge.infra.tools.registry import Registry
from tests.projects import write_project
from tests.readme import ROOT, pages, sections, table_rows


def test_pyproject_then_env_overrides(tmp_path: Path) -> None:
    root = write_project(tmp_path, registry="localhost:5000/a")
    assert settings.load(root, {}).registry == "localhost:5000/a"
    s = settings.load(root, {"DCFORGE_REGISTRY": "ghcr.io/org", "DCFORGE_JOBS": "3"})
    assert s.registry == "ghcr.io/org"
    assert s.jobs == 3
    assert "localhost" in s.insecure_hosts
    reg = Registry(Runner(), s.insecure_hosts | {"::1"})
    assert reg.plain("localhost:5000/x") and reg.plain("[::1]:5000/x")
    assert not reg.plain("ghcr.io/org/x")


def test_defaults_without_pyproject(tmp_path: Path) -> None:
    assert settings.load(tmp_path, {}).registry == "localhost:5000/dcforge"


@pytest.mark.parametrize(
    ("extra", "env", "expected"),
    [
        ("colour = 'red'\n", {}, r"unknown key \[tool.dcforge\].colour"),
        ("jobs = 'many'\n", {}, "'jobs' must be an integer"),
        ("", {"DCFORGE_JOBS": "x"}, "DCFORGE_JOBS"),
        ("cache_backend = 's3'\n", {}, "cache_backend 's3'"),
    ],
)
def test_bad_settings(tmp_path: Path, extra: str, env: dict[str, str], expected: str) -> None:
    root = write_project(tmp_path, extra_settings=extra)
    with pytest.raises(ConfigError, match=expected):
        settings.load(root, env)


@pytest.mark.parametrize(
    ("reference", "loopback"),
    [
        ("localhost:5000/dcforge", True),
        ("LOCALHOST/x", True),
        ("127.0.0.1:5000/x", True),
        ("127.8.9.10:5000/x", True),
        ("[::1]:5000/x", True),
        ("[::ffff:127.0.0.1]:5000/x", True),  # IPv4-mapped 127/8: the kernel sends it to lo
        ("[::FFFF:7f00:2]/x", True),
        ("0.0.0.0:5000/x", False),  # a listen address, not a destination (refused by load)
        ("[::]:5000/x", False),
        ("[::ffff:10.0.0.5]:5000/x", False),
        ("localhost.:5000/x", False),
        ("127.1:5000/x", False),  # only canonical spellings
        ("registry.example.invalid:5000/dcforge", False),
        ("10.0.0.5:5000/x", False),
        ("localhost.example.com/x", False),
        ("ghcr.io/org/x", False),
    ],
)
def test_loopback_is_localhost_127_8_and_ipv6_one(reference: str, loopback: bool) -> None:
    assert settings.is_loopback(reference) is loopback


IPV4 = st.ip_addresses(v=4)


@given(IPV4, st.integers(min_value=1, max_value=65535))
def test_loopback_ipv4_and_its_ipv4_mapped_spelling_agree(address: object, port: int) -> None:
    want = str(address).startswith("127.")
    assert settings.is_loopback(f"{address}:{port}/x") is want
    assert settings.is_loopback(f"[::ffff:{address}]:{port}/x") is want
    assert settings.is_loopback(f"{address}/x") is want


@given(st.ip_addresses(v=6))
def test_loopback_ipv6_is_one_or_mapped_127(address: object) -> None:
    text = str(address)
    mapped = getattr(address, "ipv4_mapped", None)
    want = text == "::1" or (mapped is not None and str(mapped).startswith("127."))
    assert settings.is_loopback(f"[{text}]:5000/x") is want


@pytest.mark.parametrize("key", ["REGISTRY", "BASE_REGISTRY", "CACHE_REGISTRY", "STAGING_REGISTRY"])
@pytest.mark.parametrize("host", ["0.0.0.0:5000", "[::]:5000", "[::ffff:0.0.0.0]"])
def test_a_listen_everywhere_address_is_refused_as_a_registry(
    tmp_path: Path, key: str, host: str
) -> None:
    with pytest.raises(ConfigError, match=r"is an address to listen on, not a registry to reach"):
        settings.load(tmp_path, {f"DCFORGE_{key}": f"{host}/x-{key.lower()}"})


def test_boolean_settings(tmp_path: Path) -> None:
    assert settings.load(tmp_path, {"DCFORGE_IGNORE_UNFIXED": "true"}).ignore_unfixed is True
    with pytest.raises(ConfigError, match="must be true or false"):
        settings.load(tmp_path, {"DCFORGE_IGNORE_UNFIXED": "maybe"})


def test_unknown_keys_and_variables_are_refused_with_a_hint(tmp_path: Path) -> None:
    root = write_project(tmp_path, extra_settings='regsitry = "x"\n')
    with pytest.raises(ConfigError, match=r"unknown key \[tool.dcforge\].regsitry — did you mean"):
        settings.load(root, {})
    with pytest.raises(
        ConfigError,
        match="DCFORGE_REGISTY is not a dcforge setting — did you mean DCFORGE_REGISTRY",
    ):
        settings.load(tmp_path / "none", {"DCFORGE_REGISTY": "x"})
    with pytest.raises(ConfigError, match="DCFORGE_QQQQQ is not a dcforge setting — unset it"):
        settings.load(tmp_path / "none", {"DCFORGE_QQQQQ": "x"})
    # Credentials, signing mode and the like are not settings, and are fine.
    env = {"DCFORGE_SIGNING": "keyless", "DCFORGE_COSIGN_IDENTITY": "https://x/wf.yml@main"}
    assert settings.load(tmp_path / "none", env).registry
    with pytest.raises(ConfigError, match="needs DCFORGE_COSIGN_IDENTITY"):
        settings.load(tmp_path / "none", {"DCFORGE_SIGNING": "keyless"})


def test_settings_are_parsed_once_into_typed_values(tmp_path: Path) -> None:
    s = settings.load(tmp_path, {"DCFORGE_INSECURE_REGISTRIES": " a.example , b ,,"})
    assert s.insecure_hosts == frozenset({"a.example", "b"})
    assert s.gate_policy.blocking == ("CRITICAL", "HIGH")
    with pytest.raises(ConfigError, match="blocking_severities"):
        settings.load(tmp_path, {"DCFORGE_BLOCKING_SEVERITIES": "SEVERE"})


def _settings_rows() -> dict[str, str]:
    """Setting → its default cell, from every "Settings" table in README.md and docs/ (a row
    whose first cell names lowercase keys; ``a``, ``b`` | ``1``, ``2`` gives each its own)."""
    found: dict[str, str] = {}
    for section in sections("Settings"):
        for row in table_rows(section):
            keys = re.findall(r"`([a-z_]+)`", row[0])
            if not keys:
                continue
            values = re.findall(r"`([^`]*)`", row[1])
            assert len(values) in (0, len(keys)), f"{row[0]}: say each one's default"
            for key, value in zip(keys, values or [""] * len(keys), strict=True):
                assert key not in found, f"{key}: documented twice"
                found[key] = value
    return found


def _fields() -> dict[str, object]:
    return {
        f.name: f.default
        for f in dataclasses.fields(settings.Settings)
        if f.init and f.name not in settings.NOT_SETTINGS
    }


def test_the_documented_settings_tables_list_every_setting() -> None:
    assert set(_settings_rows()) == set(_fields())


def _spelt(value: object) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def test_the_documented_defaults_are_the_code_defaults() -> None:
    """A default in `backticks` is the code's; a default in words is for an empty one."""
    fields = _fields()
    for key, value in _settings_rows().items():
        if value:
            assert value == _spelt(fields[key]), f"{key}: the default is {fields[key]!r}"
        else:
            assert not fields[key], f"{key}: say its default, {fields[key]!r}"


def test_the_variables_that_are_not_settings_are_documented() -> None:
    listed = {
        name
        for section in sections("Variables that are not settings")
        for row in table_rows(section)
        for name in re.findall(r"`(DCFORGE_[A-Z0-9_]+)`", row[0])
    }
    assert listed == settings.ENV_ONLY


def test_every_documented_variable_is_one_dcforge_reads() -> None:
    """A ``DCFORGE_*`` name in README.md, docs/ or SECRETS.md is a setting's variable, one of
    the variables that are not settings, a secret or variable the workflows hand on, or one
    a workflow sets for all its jobs (the reusable workflow's DCFORGE_VERSION)."""
    files = sorted((ROOT / ".github/workflows").glob("*.yml"))
    workflows = " ".join(p.read_text() for p in files)
    known = {f"DCFORGE_{name.upper()}" for name in _fields()} | settings.ENV_ONLY
    known |= set(re.findall(r"\b(?:vars|secrets)\.(DCFORGE_[A-Z0-9_]+)", workflows))
    known |= {k for p in files for k in yaml.safe_load(p.read_text()).get("env") or {}}
    for page in [*pages(), ROOT / "SECRETS.md"]:
        named = set(re.findall(r"\bDCFORGE_[A-Z0-9_]*[A-Z0-9]", page.read_text()))
        assert not named - known, f"{page.name}: dcforge reads no {sorted(named - known)}"
