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

from dcforge.core.errors import ConfigError
from dcforge.core.files import inside

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


# An OCI reference with a registry host: host[:port]/path[:tag|@sha256:…], lowercase path.
_REF = re.compile(
    r"^[a-z0-9]([a-z0-9.-]*[a-z0-9])?(:[0-9]+)?"
    r"(/[a-z0-9]+([._-]+[a-z0-9]+)*)+"
    r"(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}|@sha256:[0-9a-f]{64})?$"
)
_LOCAL = re.compile(r"^\.\.?/[A-Za-z0-9._/-]+$")


def check_feature_ref(source: Path, where: str, ref: Any) -> None:
    """A Feature a build can pin: a local folder (checked by the caller) or an OCI
    reference with a registry host; tarball URLs and GitHub shorthands are refused."""
    if not isinstance(ref, str):
        raise ConfigError(f"{source}: field '{where}': a Feature is named by a string")
    if is_local_feature(ref):
        if not _LOCAL.match(ref):
            raise ConfigError(f"{source}: field '{where}': {ref!r} is not a folder path")
        return
    if ref.lower().startswith(("http://", "https://")):
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
    if not _REF.match(ref):
        raise ConfigError(
            f"{source}: field '{where}': Feature {ref!r} is not an OCI reference "
            "(lowercase REGISTRY/NAMESPACE/FEATURE[:TAG|@sha256:…], no spaces)"
        )


# devcontainer.json variables the CLI fills in from the machine that builds: the image
# would depend on (and could carry) the runner's environment, which input_hash never sees.
_HOST_VARIABLE = re.compile(r"\$\{(localEnv|env|localWorkspaceFolder\w*|devcontainerId)\b")
# What a devcontainer.json may say about the build: anything else (dockerFile, context,
# build.options, build.cacheFrom, build.target, …) would build something dcforge does not
# pin, hash or label.
BUILD_KEYS = frozenset({"dockerfile", "context", "args"})
REFUSED_KEYS = ("dockerFile", "context", "dockerComposeFile", "service", "runServices")


def host_variables(value: Any, where: str = "") -> list[str]:
    """Where a value (recursively) uses a variable filled from the building machine."""
    if isinstance(value, str):
        return [where or "(value)"] if _HOST_VARIABLE.search(value) else []
    if isinstance(value, dict):
        return [w for k, v in value.items() for w in host_variables(v, _at(where, k))]
    if isinstance(value, list):
        return [w for i, v in enumerate(value) for w in host_variables(v, _at(where, i))]
    return []


def _at(where: str, key: object) -> str:
    return f"{where}.{key}" if where else str(key)


@dataclass(frozen=True)
class Shape:
    """What dcforge needs to know of a devcontainer.json: its form and its Features."""

    form: str  # "image" | "build"
    features: tuple[str, ...]  # the references, as written


def check_config(path: Path, data: Mapping[str, Any]) -> Shape:
    """Refuse what dcforge cannot build into one pinned image; the Features it names."""
    folder = path.parent
    _check_keys(path, data)
    build = data.get("build")
    if build is not None:
        _check_build(path, folder, build)
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
    read_lock(path)  # a bad lock is refused now, not when planning
    return Shape(form, tuple(features))


def _check_keys(path: Path, data: Mapping[str, Any]) -> None:
    if "dockerComposeFile" in data:
        raise ConfigError(
            f"{path}: a Docker Compose devcontainer.json is not an image — use 'image' or "
            "'build' (dcforge builds one image per permutation)"
        )
    for key in REFUSED_KEYS:
        if key in data:
            raise ConfigError(
                f"{path}: field '{key}': not for a dcforge build — use 'image' or "
                "'build': {dockerfile, context, args} (the legacy top-level form is refused)"
            )
    found = host_variables(data)
    if found:
        raise ConfigError(
            f"{path}: field '{found[0]}': uses a variable of the building machine "
            "(${localEnv:…}, ${localWorkspaceFolder}, …) — the image would depend on the "
            "runner (and could carry its secrets); write the value, or set it from the "
            "permutation (build_args, features)"
        )


def _check_build(path: Path, folder: Path, build: Any) -> None:
    if not isinstance(build, dict) or not isinstance(build.get("dockerfile"), str):
        raise ConfigError(f"{path}: field 'build.dockerfile': a Dockerfile path is required")
    extra = sorted(set(build) - BUILD_KEYS)
    if extra:
        raise ConfigError(
            f"{path}: field 'build.{extra[0]}': not for a dcforge build (cache, target "
            "and buildx options are dcforge's) — allowed: args, context, dockerfile"
        )
    if not isinstance(build.get("args", {}), dict):
        raise ConfigError(f"{path}: field 'build.args': must be an object (name → value)")
    for key in ("dockerfile", "context"):
        rel = build.get(key, ".")
        if not isinstance(rel, str) or not inside(folder, folder / rel):
            raise ConfigError(
                f"{path}: field 'build.{key}': {rel!r} must stay inside {folder} (dcforge "
                "hashes and copies that folder as the build's context)"
            )
    if not (folder / build["dockerfile"]).is_file():
        raise ConfigError(
            f"{path}: field 'build.dockerfile': {folder / build['dockerfile']} does not exist"
        )


def check_local_feature(source: Path, folder: Path, ref: str) -> None:
    feature = folder / ref
    if not inside(folder, feature):
        raise ConfigError(
            f"{source}: Feature {ref!r}: a local Feature must be a folder inside {folder} "
            "(the spec's rule; the CLI refuses others)"
        )
    for needed in ("devcontainer-feature.json", "install.sh"):
        if not (feature / needed).is_file():
            raise ConfigError(f"{source}: Feature {ref!r}: {feature / needed} does not exist")


def lock_file(config: Path) -> Path:
    """The lock next to a devcontainer.json (``.devcontainer-lock.json`` for a
    ``.devcontainer.json``, as the CLI names it)."""
    return config.with_name(("." if config.name.startswith(".") else "") + LOCK_FILE)


def read_lock(config: Path) -> dict[str, str]:
    """Feature → ``repository@sha256:…`` from the committed lock of ``config``."""
    path = lock_file(config)
    if not path.is_file():
        return {}
    data = read_config(path)
    features = data.get("features", {})
    features = {} if features is None else features
    if not isinstance(features, dict):
        raise ConfigError(f"{path}: field 'features': must be an object (Feature → entry)")
    out: dict[str, str] = {}
    for ref, entry in features.items():
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
            options = {**_options(options), **feature_options[ref]}
        features[pins.get(ref, ref)] = options
    out["features"] = features
    return out


def _options(value: Any) -> dict[str, Any]:
    """A Feature's options as an object: ``"18"`` is the spec's shorthand for a version,
    ``true``/``{}`` for the defaults."""
    if isinstance(value, dict):
        return dict(value)
    if isinstance(value, str):
        return {"version": value}
    return {}


def unpinned_features(label: str, pinned: Mapping[str, str], base_label: str = "") -> list[str]:
    """Features the image's devcontainer.metadata label says were installed that are
    neither local nor pinned by dcforge: a ``dependsOn`` the CLI resolved itself, by tag.
    The base image's own entries (``base_label``) come first in the merged label: they are
    the base's, and left out when the label starts with exactly them."""
    try:
        entries = json.loads(label) if label else []
        base = json.loads(base_label) if base_label else []
    except json.JSONDecodeError:
        return ["(a devcontainer.metadata label is not JSON)"]
    entries = entries if isinstance(entries, list) else [{"id": "(not a list)"}]
    if isinstance(base, list) and base and entries[: len(base)] == base:
        entries = entries[len(base) :]
    ids = [str(e["id"]) for e in entries if isinstance(e, dict) and "id" in e]
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


def _marked_checks(output: str, nonce: str) -> list[dict[str, Any]] | None:
    prefix = f"dcforge-check {nonce} "
    lines = [
        ln.strip()[len(prefix) :] for ln in output.splitlines() if ln.strip().startswith(prefix)
    ]
    if not lines:
        return None
    checks: list[dict[str, Any]] = []
    open_checks: list[str] = []
    for line in lines:
        what, _, name = line.partition(" ")
        if what == "start":
            open_checks.append(name)
        elif what in ("pass", "fail") and name in open_checks:
            open_checks.remove(name)
            checks.append({"name": name, "passed": what == "pass"})
    checks += [{"name": name, "passed": False} for name in open_checks]
    return checks


_TESTING = re.compile(r"^🧪 Testing (.+?)\.?$")
_PASSED = re.compile(r"^✅ +Passed!?$")
_FAILED = re.compile(r"^❌ (.+) check failed\.$")


def parse_checks(output: str, nonce: str = "") -> list[dict[str, Any]]:
    """The checks an image test ran. dcforge's test-utils.sh prints ``dcforge-check NONCE
    start|pass|fail NAME`` (the nonce is new for every run): when such lines are there,
    only they count. Otherwise (a test bringing the reference repo's test-utils.sh), the
    lines its ``check`` prints: ``🧪 Testing NAME``, then ``✅  Passed!`` or ``❌ NAME check
    failed.``. Either way a check that started and did not end (the test died in it) is
    failed."""
    marked = _marked_checks(output, nonce) if nonce else None
    if marked is not None:
        return marked
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
