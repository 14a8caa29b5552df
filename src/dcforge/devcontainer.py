"""Dev Container specifics, pure: devcontainer.json permutations, Feature references and
their digest pins, and the ``devcontainer.metadata`` image label.

A devcontainer.json permutation is built by the Dev Containers CLI from a rendered copy of
its folder: ``image`` (or the ``BASE_IMAGE`` build arg of the ``build`` form) set to the
permutation's base pinned by digest, every registry Feature rewritten to
``repository@sha256:…`` (the digest planning resolved, or the one a committed
``devcontainer-lock.json`` names), and the permutation's Feature options and build args
merged in. What the CLI builds is therefore exactly what the manifest records.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import json5

from dcforge.errors import ConfigError

LOCK_FILE = "devcontainer-lock.json"
MAX_CONFIG_BYTES = 1_000_000

# The image metadata properties of the Dev Container spec (devcontainer.metadata label:
# "Metadata in image labels"). ``id`` is a Feature's and only a Feature's.
METADATA_KEYS = frozenset(
    {
        "init", "privileged", "capAdd", "securityOpt", "entrypoint", "mounts",
        "customizations", "onCreateCommand", "updateContentCommand", "postCreateCommand",
        "postStartCommand", "postAttachCommand", "waitFor", "remoteUser", "containerUser",
        "userEnvProbe", "remoteEnv", "containerEnv", "overrideCommand", "portsAttributes",
        "otherPortsAttributes", "forwardPorts", "shutdownAction", "updateRemoteUserUID",
        "hostRequirements",
    }
)  # fmt: skip
_METADATA_TYPES: dict[str, tuple[type, ...]] = {
    "init": (bool,), "privileged": (bool,), "overrideCommand": (bool,),
    "updateRemoteUserUID": (bool,), "remoteUser": (str,), "containerUser": (str,),
    "userEnvProbe": (str,), "shutdownAction": (str,), "waitFor": (str,), "entrypoint": (str,),
    "capAdd": (list,), "securityOpt": (list,), "mounts": (list,), "forwardPorts": (list,),
    "customizations": (dict,), "remoteEnv": (dict,), "containerEnv": (dict,),
    "portsAttributes": (dict,), "otherPortsAttributes": (dict,), "hostRequirements": (dict,),
}  # fmt: skip
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")


def metadata_errors(value: Any) -> list[tuple[str, str]]:
    """Every problem of a ``devcontainer.metadata`` value (a JSON array of objects as the
    spec says), one line each: not an array of objects, an ``id`` (a Feature's), an
    unknown property, a property of the wrong type."""
    if not isinstance(value, list) or not value:
        return [("", "must be a non-empty list of objects (the devcontainer.metadata JSON array)")]
    errors: list[tuple[str, str]] = []
    for i, item in enumerate(value):
        if not isinstance(item, dict):
            errors.append((f"{i}", f"must be an object, not {type(item).__name__}"))
            continue
        for key in sorted(item):
            if key == "id":
                errors.append(
                    (f"{i}.id", "an image's metadata carries no id (ids name Features) — remove it")
                )
            elif key not in METADATA_KEYS:
                errors.append(
                    (
                        f"{i}.{key}",
                        "not a devcontainer.metadata property — known: "
                        f"{', '.join(sorted(METADATA_KEYS))}",
                    )
                )
            elif key in _METADATA_TYPES and not isinstance(item[key], _METADATA_TYPES[key]):
                want = " or ".join(t.__name__ for t in _METADATA_TYPES[key])
                errors.append((f"{i}.{key}", f"must be a {want}"))
    return errors


def metadata_label(value: Any) -> str:
    """The label text of a validated metadata value (compact JSON, keys sorted)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def read_config(path: Path) -> dict[str, Any]:
    """A devcontainer.json (JSON with comments and trailing commas), as a mapping."""
    try:
        if path.stat().st_size > MAX_CONFIG_BYTES:
            raise ConfigError(f"{path}: too large for a devcontainer.json (max 1 MB)")
        data = json5.loads(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise ConfigError(f"{path}: cannot read: {err.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text") from None
    except ValueError as err:
        raise ConfigError(f"{path}: not valid devcontainer.json (JSONC): {err}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a JSON object at the top level")
    return data


def is_local_feature(ref: str) -> bool:
    return ref.startswith(("./", "../"))


def feature_repository(ref: str) -> str:
    """``host/path/id:1`` or ``host/path/id@sha256:…`` → ``host/path/id``."""
    name = ref.split("@", 1)[0]
    last = name.rsplit("/", 1)[-1]
    return name[: len(name) - len(last)] + last.split(":", 1)[0]


def check_feature_ref(source: Path, where: str, ref: str) -> None:
    """A Feature a build can pin: a local folder (checked by the caller) or an OCI
    reference with a registry host; tarball URLs and GitHub shorthands are refused."""
    if is_local_feature(ref):
        return
    if ref.startswith(("http://", "https://")):
        raise ConfigError(
            f"{source}: field '{where}': Feature {ref!r} is a tarball URL, which cannot be "
            "pinned by digest — publish it to an OCI registry (devcontainer features publish)"
        )
    host = ref.split("/", 1)[0]
    if "/" not in ref or not ("." in host or ":" in host or host == "localhost"):
        raise ConfigError(
            f"{source}: field '{where}': Feature {ref!r} names no registry — use "
            "REGISTRY/NAMESPACE/FEATURE[:TAG] (e.g. ghcr.io/devcontainers/features/git:1) "
            "or a local folder './name'"
        )
    if "@" in ref and not _DIGEST.match(ref.split("@", 1)[1]):
        raise ConfigError(f"{source}: field '{where}': Feature {ref!r}: not a sha256 digest")


@dataclass(frozen=True)
class Shape:
    """What dcforge needs to know of a devcontainer.json: its form and its Features."""

    form: str  # "image" | "build"
    features: tuple[str, ...]  # the references, as written


def check_config(path: Path, data: Mapping[str, Any]) -> Shape:
    """Refuse what dcforge cannot build into one pinned image; the Features it names."""
    folder = path.parent
    if "dockerComposeFile" in data:
        raise ConfigError(
            f"{path}: a Docker Compose devcontainer.json is not an image — use 'image' or "
            "'build' (dcforge builds one image per permutation)"
        )
    build = data.get("build")
    if build is not None:
        if not isinstance(build, dict) or not isinstance(build.get("dockerfile"), str):
            raise ConfigError(f"{path}: field 'build.dockerfile': a Dockerfile path is required")
        for key in ("dockerfile", "context"):
            rel = build.get(key, ".")
            if not isinstance(rel, str) or not _inside(folder, folder / rel):
                raise ConfigError(
                    f"{path}: field 'build.{key}': {rel!r} must stay inside {folder} (dcforge "
                    "hashes and copies that folder as the build's context)"
                )
        if not (folder / build["dockerfile"]).is_file():
            raise ConfigError(
                f"{path}: field 'build.dockerfile': {folder / build['dockerfile']} does not exist"
            )
        form = "build"
    elif isinstance(data.get("image"), str):
        form = "image"
    else:
        raise ConfigError(f"{path}: needs 'image' or 'build.dockerfile' — add one")
    features = data.get("features") or {}
    if not isinstance(features, dict):
        raise ConfigError(f"{path}: field 'features': must be an object (Feature → options)")
    for ref in features:
        check_feature_ref(path, f"features.{ref}", ref)
        if is_local_feature(ref):
            check_local_feature(path, folder, ref)
    return Shape(form, tuple(features))


def check_local_feature(source: Path, folder: Path, ref: str) -> None:
    feature = folder / ref
    if not _inside(folder, feature):
        raise ConfigError(
            f"{source}: Feature {ref!r}: a local Feature must be a folder inside {folder} "
            "(the spec's rule; the CLI refuses others)"
        )
    for needed in ("devcontainer-feature.json", "install.sh"):
        if not (feature / needed).is_file():
            raise ConfigError(f"{source}: Feature {ref!r}: {feature / needed} does not exist")


def read_lock(folder: Path) -> dict[str, str]:
    """Feature → ``repository@sha256:…`` from a committed devcontainer-lock.json."""
    path = folder / LOCK_FILE
    if not path.is_file():
        return {}
    data = read_config(path)
    out: dict[str, str] = {}
    for ref, entry in (data.get("features") or {}).items():
        resolved = entry.get("resolved", "") if isinstance(entry, dict) else ""
        repo, _, digest = str(resolved).partition("@")
        if repo != feature_repository(ref) or not _DIGEST.match(digest):
            raise ConfigError(
                f"{path}: field 'features.{ref}.resolved': {resolved!r} is not "
                f"{feature_repository(ref)}@sha256:… — regenerate the lock "
                "(devcontainer upgrade) or delete it"
            )
        out[ref] = str(resolved)
    return out


def render(
    data: Mapping[str, Any],
    shape: Shape,
    *,
    base: str,
    build_args: Mapping[str, str],
    feature_options: Mapping[str, Mapping[str, Any]],
    pins: Mapping[str, str],
) -> dict[str, Any]:
    """The devcontainer.json the CLI builds: base and Features pinned by digest."""
    out = dict(data)
    if shape.form == "image":
        out["image"] = base
    else:
        build = dict(out["build"])
        build["args"] = {**(build.get("args") or {}), **build_args, "BASE_IMAGE": base}
        out["build"] = build
    features: dict[str, Any] = {}
    declared = dict(data.get("features") or {})
    for ref in [*declared, *(r for r in feature_options if r not in declared)]:
        options = declared.get(ref, {})
        if ref in feature_options:  # the permutation's options win, key by key
            options = {**(options if isinstance(options, dict) else {}), **feature_options[ref]}
        features[pins.get(ref, ref)] = options
    out["features"] = features
    return out


def _inside(root: Path, candidate: Path) -> bool:
    try:
        candidate.resolve().relative_to(root.resolve())
    except ValueError:
        return False
    return True


def unpinned_features(label: str, pinned: Mapping[str, str]) -> list[str]:
    """Features the image's devcontainer.metadata label says were installed that are
    neither local nor pinned by dcforge: a ``dependsOn`` the CLI resolved itself, by tag."""
    try:
        entries = json.loads(label) if label else []
    except json.JSONDecodeError:
        return ["(the devcontainer.metadata label is not JSON)"]
    ids = [
        str(e["id"])
        for e in (entries if isinstance(entries, list) else [])
        if isinstance(e, dict) and "id" in e
    ]
    allowed = set(pinned.values())
    return [i for i in ids if not is_local_feature(i) and i not in allowed]


def remote_user(label: str) -> str:
    """The user a devcontainer.metadata label says tools run as: the last ``remoteUser``,
    else the last ``containerUser`` (later entries win, as in the spec's merge)."""
    try:
        entries = json.loads(label) if label else []
    except json.JSONDecodeError:
        return ""
    entries = [e for e in entries if isinstance(e, dict)] if isinstance(entries, list) else []
    for key in ("remoteUser", "containerUser"):
        found = [str(e[key]) for e in entries if isinstance(e.get(key), str) and e[key]]
        if found:
            return found[-1]
    return ""


_TESTING = re.compile(r"^🧪 Testing (.+?)\.?$")
_PASSED = re.compile(r"^✅ +Passed!?$")
_FAILED = re.compile(r"^❌ (.+) check failed\.$")


def parse_checks(output: str) -> list[dict[str, Any]]:
    """The checks an image test ran, from the lines devcontainers/images' ``check``
    prints: ``🧪 Testing NAME``, then ``✅  Passed!`` or ``❌ NAME check failed.``. A check
    that started and printed neither (the test died in it) is failed."""
    checks: list[dict[str, Any]] = []
    current = ""
    for raw in output.splitlines():
        line = raw.strip()
        if m := _TESTING.match(line):
            if current:
                checks.append({"name": current, "passed": False})
            current = m.group(1)
        elif _PASSED.match(line) and current:
            checks.append({"name": current, "passed": True})
            current = ""
        elif m := _FAILED.match(line):
            checks.append({"name": m.group(1), "passed": False})
            current = ""
    if current:
        checks.append({"name": current, "passed": False})
    return checks
