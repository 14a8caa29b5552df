"""Project settings: ``[tool.dcforge]`` in pyproject.toml, overridden by ``DCFORGE_*``."""

from __future__ import annotations

import ipaddress
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from dcforge.core.errors import ConfigError, did_you_mean
from dcforge.core.policy import Policy
from dcforge.core.refs import registry_host

CACHE_BACKENDS = ("local", "registry", "gha", "none")
GITHUB_MATRIX_CAP = 256


SIGNING_MODES = ("key", "keyless")
GITHUB_OIDC_ISSUER = "https://token.actions.githubusercontent.com"


@dataclass(frozen=True)
class SigningConfig:
    """How releases are signed, read once from the environment (never a secret: the key's
    password stays in the environment, for cosign alone).

    Keyless signing defaults to the public Sigstore (cosign's own defaults: Fulcio at
    fulcio.sigstore.dev, Rekor, the public-good TUF root, the ambient GitHub Actions
    token). A private or test Sigstore is named by the rest: its Fulcio URL, a token file,
    its CA root and CT log key (cosign's own SIGSTORE_* variables, passed on to each
    cosign run) and, test-only, no transparency log."""

    mode: str = "key"  # DCFORGE_SIGNING: key (a key pair) or keyless (OIDC, Rekor)
    key: str = ""  # COSIGN_KEY; empty: the local pair under the state folder
    public_key: str = ""  # COSIGN_PUBLIC_KEY
    identity: str = ""  # DCFORGE_COSIGN_IDENTITY (keyless verification)
    # With a reusable workflow many repositories sign as one identity (the workflow's):
    # DCFORGE_COSIGN_REPOSITORY / _REF pin whose run it was (owner/name, refs/heads/main).
    repository: str = ""
    source_ref: str = ""
    issuer: str = GITHUB_OIDC_ISSUER  # DCFORGE_COSIGN_ISSUER
    ci: bool = False  # CI is set: no freshly made key may sign
    fulcio_url: str = ""  # DCFORGE_COSIGN_FULCIO_URL; empty: cosign's (the public Fulcio)
    token_file: str = ""  # DCFORGE_COSIGN_TOKEN_FILE; empty: the ambient (GitHub) token
    tlog: bool = True  # DCFORGE_COSIGN_TLOG=false: no Rekor (test-only; keyless only)
    root_file: str = ""  # SIGSTORE_ROOT_FILE: the Fulcio CA root (empty: public-good TUF)
    ct_log_key_file: str = ""  # SIGSTORE_CT_LOG_PUBLIC_KEY_FILE: checks the certificate SCT

    @classmethod
    def parse(cls, env: Mapping[str, str]) -> SigningConfig:
        mode = env.get("DCFORGE_SIGNING", "key")
        if mode not in SIGNING_MODES:
            raise ConfigError(
                f"environment: DCFORGE_SIGNING={mode!r} is not one of {', '.join(SIGNING_MODES)}"
                + did_you_mean(mode, SIGNING_MODES)
            )
        if mode == "keyless":
            _check_keyless(env)
        elif keyless_only := sorted(set(KEYLESS_ONLY) & set(env)):
            raise ConfigError(
                f"environment: {keyless_only[0]} is for keyless signing, and DCFORGE_SIGNING "
                "is key — unset it, or set DCFORGE_SIGNING=keyless"
            )
        return cls(
            mode=mode,
            key=env.get("COSIGN_KEY", ""),
            public_key=env.get("COSIGN_PUBLIC_KEY", ""),
            identity=env.get("DCFORGE_COSIGN_IDENTITY", ""),
            repository=env.get("DCFORGE_COSIGN_REPOSITORY", ""),
            source_ref=env.get("DCFORGE_COSIGN_REF", ""),
            issuer=env.get("DCFORGE_COSIGN_ISSUER", GITHUB_OIDC_ISSUER),
            ci=_BOOLS.get(env.get("CI", "").strip().lower(), bool(env.get("CI"))),
            fulcio_url=env.get("DCFORGE_COSIGN_FULCIO_URL", ""),
            token_file=env.get("DCFORGE_COSIGN_TOKEN_FILE", ""),
            tlog=_coerce(
                "DCFORGE_COSIGN_TLOG", env.get("DCFORGE_COSIGN_TLOG", "true"), bool, "environment"
            ),
            root_file=env.get("SIGSTORE_ROOT_FILE", ""),
            ct_log_key_file=env.get("SIGSTORE_CT_LOG_PUBLIC_KEY_FILE", ""),
        )


KEYLESS_ONLY = (
    "DCFORGE_COSIGN_FULCIO_URL",
    "DCFORGE_COSIGN_TOKEN_FILE",
    "DCFORGE_COSIGN_TLOG",
    "DCFORGE_COSIGN_REPOSITORY",
    "DCFORGE_COSIGN_REF",
)


def _check_keyless(env: Mapping[str, str]) -> None:
    """What keyless signing and verification need, checked before anything runs."""
    if not env.get("DCFORGE_COSIGN_IDENTITY"):
        raise ConfigError(
            "environment: DCFORGE_SIGNING=keyless needs DCFORGE_COSIGN_IDENTITY (the "
            "certificate identity verification requires, e.g. the workflow's URL)"
        )
    if not env.get("DCFORGE_COSIGN_ISSUER", GITHUB_OIDC_ISSUER).strip():
        raise ConfigError(
            "environment: DCFORGE_COSIGN_ISSUER is empty — verification pins the issuer too "
            f"(unset it for GitHub Actions' {GITHUB_OIDC_ISSUER})"
        )
    fulcio = env.get("DCFORGE_COSIGN_FULCIO_URL", "")
    if fulcio and not fulcio.startswith(("https://", "http://")):
        raise ConfigError(
            f"environment: DCFORGE_COSIGN_FULCIO_URL={fulcio!r} is not an http(s) URL"
        )
    for name in ("DCFORGE_COSIGN_TOKEN_FILE", "SIGSTORE_ROOT_FILE",
                 "SIGSTORE_CT_LOG_PUBLIC_KEY_FILE"):  # fmt: skip
        path = env.get(name, "")
        if path and not Path(path).is_file():
            raise ConfigError(f"environment: {name}={path}: no such file")


@dataclass(frozen=True)
class Settings:
    """Everything project-wide. Secrets are never settings: they stay in the environment."""

    root: Path
    registry: str = "localhost:5000/dcforge"
    base_registry: str = "localhost:5000/library"
    permutations: str = "permutations"
    dist: str = "dist"
    state_dir: str = ".dcforge"
    cache_backend: str = "local"
    cache_registry: str = ""
    default_branch: str = "main"
    insecure_registries: str = "localhost,127.0.0.1"
    jobs: int = 0
    trivy_db_repository: str = ""
    trivy_db_digest: str = ""
    blocking_severities: str = "CRITICAL,HIGH"
    max_db_age_hours: int = 168
    waivers: str = "waivers.yaml"
    max_waiver_days: int = 90
    ignore_unfixed: bool = False
    scan_skip_dirs: str = ""
    image_retention_days: int = 90
    artifact_retention_days: int = 30
    keep_releases: int = 5
    build_timeout: int = 3600
    scan_timeout: float = 1200.0
    # CI runners by platform ("linux/amd64=ubuntu-24.04,linux/arm64=ubuntu-24.04-arm"): a
    # multi-platform permutation whose every platform has one is built as platform parts,
    # each natively on its runner, merged by digest; otherwise on one runner, emulated.
    native_runners: str = ""
    # The buildx builder every build uses: a docker context's (another engine), or a
    # docker-container / remote BuildKit / kubernetes builder; empty: the current one.
    builder: str = ""
    # A registry namespace for the staging path (dcforge.core.staging): builds push their
    # archives there by digest instead of handing tarballs to the next job; empty: off.
    staging_registry: str = ""
    # Where pull requests (and any other ref but the default branch) stage instead, with a
    # credential of their own (SECRETS.md): publish refuses to read staged images from it.
    pr_staging_registry: str = ""
    max_matrix_jobs: int = 256  # GitHub's cap on one job matrix: more permutations are grouped
    # The images' org.opencontainers.image.licenses (an SPDX expression, e.g. "MIT"); a
    # permutation file's own 'licenses' overrides it; empty: no such label.
    licenses: str = ""
    signing: SigningConfig = field(default_factory=SigningConfig, compare=False)
    # Parsed once from the fields above (never settings of their own).
    insecure_hosts: frozenset[str] = field(init=False, repr=False)
    gate_policy: Policy = field(init=False, repr=False)
    runner_labels: Mapping[str, str] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "runner_labels", _runner_labels(self.native_runners))
        hosts = frozenset(h.strip() for h in self.insecure_registries.split(",") if h.strip())
        object.__setattr__(self, "insecure_hosts", hosts)
        policy = Policy.parse(
            self.blocking_severities,
            self.max_db_age_hours,
            max_waiver_days=self.max_waiver_days,
            ignore_unfixed=self.ignore_unfixed,
            skip_dirs=self.scan_skip_dirs,
            db_digest=self.trivy_db_digest,
        )
        object.__setattr__(self, "gate_policy", policy)

    @property
    def permutations_dir(self) -> Path:
        return self.root / self.permutations

    @property
    def dist_dir(self) -> Path:
        return self.root / self.dist

    @property
    def state_root(self) -> Path:
        return self.root / self.state_dir

    @property
    def effective_jobs(self) -> int:
        return self.jobs if self.jobs > 0 else (os.cpu_count() or 1)


def _runner_labels(raw: str) -> dict[str, str]:
    labels: dict[str, str] = {}
    for item in (i.strip() for i in raw.split(",")):
        if not item:
            continue
        platform, sep, label = (x.strip() for x in item.partition("="))
        if not sep or not label or platform.count("/") not in (1, 2) or platform in labels:
            raise ConfigError(
                f"native_runners ([tool.dcforge] or DCFORGE_NATIVE_RUNNERS): {item!r} is not "
                "'os/arch=runner-label' (one per platform), "
                "e.g. 'linux/amd64=ubuntu-24.04,linux/arm64=ubuntu-24.04-arm'"
            )
        labels[platform] = label
    return labels


def is_loopback(reference: str) -> bool:
    """True when the registry of ``reference`` is this machine by its very name, so that
    nothing sent to it leaves the machine (plain HTTP, a sample or local Trivy DB are then
    acceptable): ``localhost``, 127.0.0.0/8, ``::1`` and 127/8 written IPv4-mapped
    (``[::ffff:127.0.0.1]``, which the kernel routes to 127.0.0.1).

    Never ``0.0.0.0`` or ``::`` (see :func:`unspecified`): Linux happens to connect them to
    this host, but they name no destination — they are listen-everywhere addresses, mostly
    copied from a server's config, and other systems (and Docker's insecure-registry rule,
    127.0.0.0/8 only) do not treat them as loopback. Nor ``localhost.`` or ``127.1``: only the
    canonical spellings are trusted.
    """
    host = registry_host(reference).lower()
    if host == "localhost":
        return True
    address = _address(host)
    return address is not None and address.is_loopback


def unspecified(reference: str) -> bool:
    """True when the registry host of ``reference`` is ``0.0.0.0`` or ``::`` (or ``::`` with
    an IPv4-mapped 0.0.0.0): an address to listen on, not one to reach."""
    address = _address(registry_host(reference).lower())
    return address is not None and address.is_unspecified


def _address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The IP address ``host`` spells (IPv4-mapped IPv6 as its IPv4 address), else None."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


_BOOLS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}


def _coerce(name: str, raw: Any, kind: type, source: str) -> Any:
    if kind is bool:
        if isinstance(raw, bool):
            return raw
        if isinstance(raw, str) and raw.strip().lower() in _BOOLS:
            return _BOOLS[raw.strip().lower()]
        raise ConfigError(f"{source}: '{name}' must be true or false, got {raw!r}")
    if kind is int:
        if isinstance(raw, bool):
            raise ConfigError(f"{source}: '{name}' must be an integer, got {raw!r}")
        try:
            return int(raw)
        except (TypeError, ValueError):
            raise ConfigError(f"{source}: '{name}' must be an integer, got {raw!r}") from None
    if kind is float:
        try:
            return float(raw)
        except (TypeError, ValueError):
            raise ConfigError(f"{source}: '{name}' must be a number, got {raw!r}") from None
    if not isinstance(raw, str):
        raise ConfigError(f"{source}: '{name}' must be a string, got {raw!r}")
    return raw


def find_root(start: Path) -> Path:
    """The nearest directory at or above ``start`` that holds a pyproject.toml."""
    for candidate in (start, *start.parents):
        if (candidate / "pyproject.toml").is_file():
            return candidate
    return start


# DCFORGE_* variables that are not settings: credentials, signing mode and identity, the
# build's commit, test and bootstrap knobs. Any other DCFORGE_* is a typo, and refused.
ENV_ONLY = frozenset(
    {
        "DCFORGE_REGISTRY_USERNAME",
        "DCFORGE_REGISTRY_PASSWORD",
        "DCFORGE_STAGING_USERNAME",
        "DCFORGE_STAGING_PASSWORD",
        "DCFORGE_SIGNING",
        "DCFORGE_COSIGN_IDENTITY",
        "DCFORGE_COSIGN_ISSUER",
        "DCFORGE_COSIGN_REPOSITORY",
        "DCFORGE_COSIGN_REF",
        "DCFORGE_COSIGN_FULCIO_URL",
        "DCFORGE_COSIGN_TOKEN_FILE",
        "DCFORGE_COSIGN_TLOG",
        "DCFORGE_GIT_SHA",
        "DCFORGE_RETENTION_BACKEND",
        "DCFORGE_RELIABILITY_REPORT",
        "DCFORGE_REGISTRY_ADDR",
        "DCFORGE_DEBIAN_MIRROR",
        "DCFORGE_VERSION",
        "DCFORGE_SHA256",
    }
)
NOT_SETTINGS = frozenset({"root", "signing"})  # Settings fields that are not config keys
REGISTRY_SETTINGS = (
    "registry",
    "base_registry",
    "cache_registry",
    "staging_registry",
    "pr_staging_registry",
)
_KINDS: dict[object, type] = {
    "int": int,
    int: int,
    "float": float,
    float: float,
    "bool": bool,
    bool: bool,
}


def _types() -> dict[str, type]:
    """Setting name → its type (the parsed, derived fields are not settings)."""
    return {
        f.name: _KINDS.get(f.type, str)
        for f in fields(Settings)
        if f.init and f.name not in NOT_SETTINGS
    }


def load(root: Path, env: Mapping[str, str]) -> Settings:
    """Read pyproject's ``[tool.dcforge]`` then apply ``DCFORGE_<NAME>`` overrides, parsed once
    into typed values; an unknown key or ``DCFORGE_*`` variable is refused with a hint."""
    types = _types()
    values = _from_pyproject(root / "pyproject.toml", types)
    env_names = {f"DCFORGE_{key.upper()}": key for key in types}
    for name in sorted(n for n in env if n.startswith("DCFORGE_")):
        if name in env_names:
            key = env_names[name]
            values[key] = _coerce(key, env[name], types[key], f"environment {name}")
        elif name not in ENV_ONLY:
            raise ConfigError(
                f"environment: {name} is not a dcforge setting"
                + (did_you_mean(name, [*env_names, *ENV_ONLY]) or " — unset it")
            )
    for key in REGISTRY_SETTINGS:
        if key in values:  # image references are lowercase (GHCR: ${{ github.repository }})
            values[key] = str(values[key]).lower()
    return _checked(Settings(root=root, signing=SigningConfig.parse(env), **values))


def _from_pyproject(pyproject: Path, types: Mapping[str, type]) -> dict[str, Any]:
    if not pyproject.is_file():
        return {}
    try:
        tool = tomllib.loads(pyproject.read_text(encoding="utf-8")).get("tool", {})
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise ConfigError(f"{pyproject}: not valid TOML: {err}") from None
    table = tool.get("dcforge", {}) if isinstance(tool, dict) else None
    if not isinstance(table, dict):
        raise ConfigError(f"{pyproject}: [tool.dcforge] must be a table")
    values = {}
    for key, raw in table.items():
        if key not in types:
            hint = did_you_mean(key, types) or f" — known keys: {', '.join(sorted(types))}"
            raise ConfigError(f"{pyproject}: unknown key [tool.dcforge].{key}{hint}")
        values[key] = _coerce(key, raw, types[key], f"{pyproject} [tool.dcforge]")
    return values


POSITIVE = (
    "image_retention_days",
    "artifact_retention_days",
    "build_timeout",
    "scan_timeout",
    "max_matrix_jobs",
)
NON_NEGATIVE = ("keep_releases", "jobs")


def _check_tlog(settings: Settings) -> None:
    how = settings.signing
    if how.mode == "keyless" and not how.tlog and not is_loopback(settings.registry):
        raise ConfigError(
            "environment: DCFORGE_COSIGN_TLOG=false is for tests against a loopback "
            f"registry, not {settings.registry}: without a transparency log a keyless "
            "signature stops verifying when its certificate expires (minutes)"
        )


def _checked(settings: Settings) -> Settings:
    _check_tlog(settings)
    for name in POSITIVE:
        if not getattr(settings, name) > 0:
            raise ConfigError(f"{name} must be positive, got {getattr(settings, name)!r}")
    for name in NON_NEGATIVE:
        if getattr(settings, name) < 0:
            raise ConfigError(f"{name} must not be negative, got {getattr(settings, name)!r}")
    if settings.max_matrix_jobs > GITHUB_MATRIX_CAP:
        raise ConfigError(
            f"max_matrix_jobs {settings.max_matrix_jobs} is above GitHub's cap of "
            f"{GITHUB_MATRIX_CAP} jobs per matrix"
        )
    if settings.cache_backend not in CACHE_BACKENDS:
        raise ConfigError(
            f"cache_backend '{settings.cache_backend}' is not one of {', '.join(CACHE_BACKENDS)}"
            " — set [tool.dcforge].cache_backend or DCFORGE_CACHE_BACKEND"
        )
    if settings.cache_backend == "registry" and not settings.cache_registry:
        raise ConfigError(
            "cache_backend 'registry' needs cache_registry (e.g. localhost:5000/dcforge-cache)"
        )
    for key in REGISTRY_SETTINGS:
        if unspecified(getattr(settings, key)):
            raise ConfigError(
                f"{key} {getattr(settings, key)}: {registry_host(getattr(settings, key))} is an "
                "address to listen on, not a registry to reach — use localhost or 127.0.0.1"
            )
    release = settings.registry.rstrip("/")
    for key in ("staging_registry", "pr_staging_registry"):
        stage = getattr(settings, key).rstrip("/")
        if stage and namespaces_overlap(stage, release):
            raise ConfigError(
                f"{key} {stage} overlaps the release registry {release}: staged images "
                "would sit among releases (and retention would take them for releases) — use "
                f"a namespace of its own, e.g. {release}-staging"
            )
    return settings


def namespaces_overlap(a: str, b: str) -> bool:
    """Whether one registry namespace is, or holds, the other (``x/y`` and ``x/y/z``)."""
    a, b = a.rstrip("/"), b.rstrip("/")
    return bool(a and b) and (a == b or a.startswith(b + "/") or b.startswith(a + "/"))
