"""Permutation files: YAML → schema → matrix expansion → frozen :class:`Permutation`.

One YAML file per image family. Every problem is a :class:`ConfigError` that names the
file, the field and the fix, and is raised before anything is built or written.
"""

from __future__ import annotations

import itertools
import json
import re
import string
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from dcforge.core import devcontainer
from dcforge.core.errors import ConfigError, did_you_mean
from dcforge.core.files import inside

NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,95}$")
TAG_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
REPO_RE = re.compile(
    r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$"
)
MAX_FILE_BYTES = 1_000_000
MAX_PERMUTATIONS_PER_FILE = 4096


@dataclass(frozen=True)
class Permutation:
    """One buildable image, fully expanded."""

    name: str
    family: str
    source: Path
    repository: str  # fully qualified, e.g. localhost:5000/dcforge/python
    context: Path
    dockerfile: Path
    base_ref: str
    build_args: tuple[tuple[str, str], ...]
    platforms: tuple[str, ...]
    floating_tags: tuple[str, ...]  # tag names only
    smoke: tuple[str, ...]
    variables: tuple[tuple[str, str], ...]
    os_mode: str = "required"  # "none": no OS (scratch/distroless); the gate wants lang packages
    # A devcontainer.json permutation: built by the Dev Containers CLI from this file
    # (``context`` is its folder, ``dockerfile`` the file itself); "image" or "build".
    devcontainer_form: str = ""
    features: tuple[tuple[str, str], ...] = ()  # Feature → JSON of the permutation's options
    metadata: str = ""  # the devcontainer.metadata label of a Dockerfile permutation (JSON)
    test: Path | None = None  # the image test script (its folder goes into the container)
    description: str = ""  # the family's description, templated, on one line (a label)
    licenses: str = ""  # an SPDX expression: the file's 'licenses', else the project's

    @property
    def devcontainer(self) -> Path | None:
        """The devcontainer.json a Dev Containers CLI build reads (None: a Dockerfile)."""
        return self.dockerfile if self.devcontainer_form else None

    def feature_refs(self) -> list[str]:
        """Every Feature the image gets: the devcontainer.json's and the permutation's."""
        if not self.devcontainer:
            return []
        found = devcontainer.read_config(self.dockerfile).get("features") or {}
        return list(dict.fromkeys([*found, *(ref for ref, _ in self.features)]))

    def floating_refs(self) -> list[str]:
        return [f"{self.repository}:{tag}" for tag in self.floating_tags]

    def immutable_tag(self, git_sha: str) -> str:
        return f"{self.name}-{git_sha}"


_SCHEMA: dict[str, Any] | None = None


def _schema() -> dict[str, Any]:
    global _SCHEMA  # noqa: PLW0603 - loaded once, read-only afterwards
    if _SCHEMA is None:
        text = resources.files("dcforge.resources").joinpath("permutation.schema.json").read_text()
        _SCHEMA = json.loads(text)
    return _SCHEMA


def platforms() -> tuple[str, ...]:
    """Every platform a permutation may declare (the schema's list), e.g. ``linux/arm64``."""
    return tuple(_schema()["properties"]["platforms"]["items"]["enum"])


class _NoAliasLoader(yaml.SafeLoader):
    """SafeLoader that refuses anchors/aliases (no alias bombs, no surprises)."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()  # type: ignore[no-untyped-call]
            raise yaml.YAMLError(f"aliases are not allowed (line {event.start_mark.line + 1})")
        return super().compose_node(parent, index)


def _field_path(path: Iterable[Any]) -> str:
    parts = [str(p) if str(p).isprintable() else repr(str(p))[1:-1] for p in path]
    return ".".join(parts) if parts else "(top level)"


def read_yaml(path: Path) -> Any:
    try:
        size = path.stat().st_size
    except OSError as err:
        raise ConfigError(f"{path}: cannot read: {err.strerror}") from None
    if not path.is_file():
        raise ConfigError(f"{path}: not a file — a permutation file is one YAML file")
    if size > MAX_FILE_BYTES:
        raise ConfigError(f"{path}: {size} bytes is too large for a permutation file (max 1 MB)")
    try:
        return yaml.load(path.read_text(encoding="utf-8"), Loader=_NoAliasLoader)  # noqa: S506
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text") from None
    except OSError as err:
        raise ConfigError(f"{path}: cannot read: {err.strerror}") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        problem = " ".join(str(getattr(err, "problem", None) or err).split())
        raise ConfigError(f"{path}{where}: malformed YAML: {problem}") from None


def _validate(path: Path, data: Any) -> None:
    """Schema errors, one line each (every one, not only the first)."""
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level (family, name, ...)")
    validator = jsonschema.Draft202012Validator(_schema())
    errors = sorted(validator.iter_errors(data), key=lambda e: list(map(str, e.absolute_path)))
    if errors:
        raise ConfigError("\n".join(_schema_error(path, err) for err in errors))


def _schema_error(path: Path, err: Any) -> str:
    where = _field_path(err.absolute_path)
    if err.validator == "additionalProperties":
        known = ", ".join(sorted(err.schema.get("properties", {}))) or "none"
        allowed = err.schema.get("properties", {})
        extra = sorted(set(err.instance) - set(allowed))
        hint = did_you_mean(str(extra[0]), allowed) if len(extra) == 1 else ""
        return (
            f"{path}: unknown key {', '.join(map(repr, extra))} in {where}{hint} — allowed: {known}"
        )
    if err.validator == "required":
        return f"{path}: {err.message} in {where} — add it"
    return f"{path}: field '{where}': {err.message}"


def _fields_in(template: str) -> list[str]:
    try:
        return [f for _, f, _, _ in string.Formatter().parse(template) if f is not None]
    except ValueError as err:
        raise ValueError(f"bad template {template!r}: {err}") from None


def _render(path: Path, where: str, template: str, variables: Mapping[str, str]) -> str:
    try:
        names = _fields_in(template)
    except ValueError as err:
        raise ConfigError(
            f"{path}: field '{where}': {err} (use {{{{ }}}} for a literal brace)"
        ) from None
    for name in names:
        if name not in variables:
            known = ", ".join(sorted(variables)) or "none"
            raise ConfigError(
                f"{path}: field '{where}': unknown template variable {{{name}}} — known: {known}"
            )
    return template.format_map(dict(variables))


def _matrix_rows(path: Path, data: Mapping[str, Any]) -> list[dict[str, str]]:
    matrix: Mapping[str, Sequence[Any]] = data.get("matrix") or {}
    keys = list(matrix)
    rows = [
        dict(zip(keys, (str(v) for v in combo), strict=True))
        for combo in itertools.product(*(matrix[k] for k in keys))
    ]
    for i, rule in enumerate(data.get("exclude") or []):
        for key in rule:
            if key not in matrix:
                raise ConfigError(
                    f"{path}: field 'exclude.{i}': '{key}' is not a matrix key — "
                    f"matrix keys: {', '.join(keys) or 'none'}"
                )
        rows = [r for r in rows if any(r[k] != str(v) for k, v in rule.items())]
    if len(rows) > MAX_PERMUTATIONS_PER_FILE:
        raise ConfigError(f"{path}: matrix expands to {len(rows)} permutations (max 4096)")
    if not rows:
        raise ConfigError(f"{path}: field 'exclude' removes every permutation")
    return rows


@dataclass(frozen=True)
class _Row:
    """One matrix row of one family file: renders its templates, names its errors."""

    path: Path
    data: Mapping[str, Any]
    variables: Mapping[str, str]

    def r(self, field: str, value: str) -> str:
        return _render(self.path, field, value, self.variables)

    def fail(self, field: str, why: str) -> ConfigError:
        sep = "" if why.startswith(":") else " "
        return ConfigError(f"{self.path}: field '{field}'{sep}{why}")


def load_family(
    path: Path, *, root: Path, registry: str, builtins: Mapping[str, str], licenses: str = ""
) -> list[Permutation]:
    """Load one family file and expand its matrix (``licenses``: the project's, for a
    family that names none)."""
    data = read_yaml(path)
    _validate(path, data)
    rows = _matrix_rows(path, data)
    return [
        _permutation(
            _Row(path, data, {**builtins, "family": data["family"], **row}),
            root,
            registry,
            row,
            licenses,
        )
        for row in rows
    ]


def _permutation(
    row: _Row, root: Path, registry: str, matrix: Mapping[str, str], licenses: str = ""
) -> Permutation:
    name = row.r("name", row.data["name"])
    if not NAME_RE.match(name):
        raise row.fail(
            "name",
            f"expands to {name!r}, not a valid permutation name (lowercase letters, digits, "
            "'.', '_', '-'; no '/')",
        )
    image = row.r("image", row.data.get("image", row.data["family"]))
    if not REPO_RE.match(image) or ".." in image:
        raise row.fail("image", f"expands to {image!r}, not a repository name")
    context, dockerfile, form = _context(row, root)
    build_args = _build_args(row)
    features = _features(row, form, context)
    if form:  # the CLI would fill these in from the runner's environment
        found = devcontainer.host_variables(
            {"build_args": dict(build_args), "features": {r: json.loads(o) for r, o in features}}
        )
        if found:
            raise row.fail(found[0], "uses a variable of the building machine (${localEnv:…}, …)")
    if form == "image" and build_args:
        raise row.fail(
            "build_args",
            "has no effect on an 'image' devcontainer.json (no Dockerfile is built) — remove it",
        )
    return Permutation(
        name=name,
        family=row.data["family"],
        source=row.path,
        repository=f"{registry}/{image}",
        context=context,
        dockerfile=dockerfile,
        base_ref=row.r("base", row.data["base"]),
        build_args=build_args,
        platforms=tuple(row.data.get("platforms", ["linux/amd64"])),
        floating_tags=_tags(row),
        smoke=tuple(row.r(f"smoke.{i}", c) for i, c in enumerate(row.data.get("smoke", []))),
        variables=tuple(sorted(matrix.items())),
        os_mode=row.data.get("os", "required"),
        devcontainer_form=form,
        features=features,
        metadata=_metadata(row, form),
        test=_test(row, root),
        description=" ".join(row.r("description", row.data.get("description", "")).split()),
        licenses=_licenses(row, licenses),
    )


def _licenses(row: _Row, project: str) -> str:
    """The file's 'licenses' (templated; an empty one: none at all), else the project's."""
    return row.r("licenses", row.data["licenses"]).strip() if "licenses" in row.data else project


def _features(row: _Row, form: str, folder: Path) -> tuple[tuple[str, str], ...]:
    """The permutation's Feature options (templated); only for devcontainer.json ones."""
    raw = row.data.get("features") or {}
    if raw and not form:
        raise row.fail(
            "features", "needs a devcontainer.json permutation ('devcontainer'), not a Dockerfile"
        )
    out = []
    for ref, options in sorted(raw.items(), key=lambda item: str(item[0])):
        devcontainer.check_feature_ref(row.path, f"features.{ref}", ref)
        if devcontainer.is_local_feature(ref):
            devcontainer.check_local_feature(row.path, folder, ref)
        rendered = {
            k: row.r(f"features.{ref}.{k}", v) if isinstance(v, str) else v
            for k, v in sorted(options.items())
        }
        out.append((ref, json.dumps(rendered, sort_keys=True)))
    return tuple(out)


def _metadata(row: _Row, form: str) -> str:
    """The devcontainer.metadata label: from 'metadata' (or a DEVCONTAINER_METADATA build
    arg), checked against the spec now, one line per problem."""
    if "metadata" in row.data:
        if form:
            raise row.fail(
                "metadata",
                "the Dev Containers CLI writes a devcontainer.json image's metadata — put it "
                "in the devcontainer.json",
            )
        value = _render_json(row, "metadata", row.data["metadata"])
        where = "metadata"
    elif "DEVCONTAINER_METADATA" in row.data.get("build_args", {}):
        where = "build_args.DEVCONTAINER_METADATA"
        text = row.r(where, str(row.data["build_args"]["DEVCONTAINER_METADATA"]))
        try:
            value = json.loads(text)
        except json.JSONDecodeError as err:
            raise row.fail(where, f"is not JSON ({err.msg} at {err.pos})") from None
    else:
        return ""
    problems = devcontainer.metadata_errors(value)
    if problems:
        raise ConfigError(
            "\n".join(
                f"{row.path}: field '{'.'.join(filter(None, (where, loc)))}': {why}"
                for loc, why in problems
            )
        )
    return devcontainer.metadata_label(value)


def _render_json(row: _Row, where: str, value: Any) -> Any:
    """Matrix variables filled into every string of a YAML value."""
    if isinstance(value, str):
        return row.r(where, value)
    if isinstance(value, list):
        return [_render_json(row, f"{where}.{i}", v) for i, v in enumerate(value)]
    if isinstance(value, dict):
        return {k: _render_json(row, f"{where}.{k}", v) for k, v in value.items()}
    return value


def _test(row: _Row, root: Path) -> Path | None:
    if "test" not in row.data:
        return None
    script = (row.path.parent / row.r("test", row.data["test"])).resolve()
    if not inside(root, script):
        raise row.fail("test", f"({script}) is outside the project {root}")
    if not script.is_file():
        raise row.fail("test", f": {script} does not exist — create it or fix the path")
    return script


def _context(row: _Row, root: Path) -> tuple[Path, Path, str]:
    """(context, Dockerfile or devcontainer.json, devcontainer.json form or "")."""
    has_context, has_config = "context" in row.data, "devcontainer" in row.data
    if has_context == has_config:
        raise row.fail(
            "context",
            "name either 'context' (a Dockerfile build) or 'devcontainer' (a devcontainer.json "
            "built by the Dev Containers CLI), not both, not neither",
        )
    if has_config:
        config = (row.path.parent / row.r("devcontainer", row.data["devcontainer"])).resolve()
        if not inside(root, config):
            raise row.fail("devcontainer", f"({config}) is outside the project {root}")
        if not config.is_file():
            raise row.fail("devcontainer", f": {config} does not exist — create it or fix the path")
        if "dockerfile" in row.data:
            raise row.fail(
                "dockerfile", "is the devcontainer.json's 'build.dockerfile' — remove it"
            )
        if config.parent == root.resolve():
            raise row.fail(
                "devcontainer",
                f"({config}) is in the project's root, which would be its whole build "
                "context — put it in a folder of its own (.devcontainer/devcontainer.json)",
            )
        shape = devcontainer.check_config(config, devcontainer.read_config(config))
        return config.parent, config, shape.form
    context = (row.path.parent / row.r("context", row.data["context"])).resolve()
    if not inside(root, context):
        raise row.fail(
            "context",
            f"({context}) is outside the project {root} — keep build contexts inside the "
            "repository",
        )
    if not context.is_dir():
        raise row.fail("context", f": directory {context} does not exist")
    dockerfile = (context / row.r("dockerfile", row.data.get("dockerfile", "Dockerfile"))).resolve()
    if not inside(context, dockerfile):
        raise row.fail("dockerfile", f"must stay inside the context {context}")
    if not dockerfile.is_file():
        raise row.fail("dockerfile", f": {dockerfile} does not exist — create it or fix the path")
    return context, dockerfile, ""


def _tags(row: _Row) -> tuple[str, ...]:
    tags = []
    for i, template in enumerate(row.data.get("tags", [])):
        tag = row.r(f"tags.{i}", template)
        if not TAG_RE.match(tag):
            raise row.fail(
                f"tags.{i}",
                f"expands to {tag!r}, not a valid tag (letters, digits, '_', '.', '-'; at most "
                "128; no ':' or '/')",
            )
        tags.append(tag)
    return tuple(tags)


def _build_args(row: _Row) -> tuple[tuple[str, str], ...]:
    raw = sorted(row.data.get("build_args", {}).items())
    args = tuple((k, row.r(f"build_args.{k}", str(v))) for k, v in raw)
    if any(k == "BASE_IMAGE" for k, _ in args):
        raise row.fail("build_args.BASE_IMAGE", "is reserved — dcforge sets it from 'base'")
    if any(k == "SOURCE_DATE_EPOCH" for k, _ in args):
        raise row.fail(
            "build_args.SOURCE_DATE_EPOCH", "is reserved — dcforge sets it to the commit's time"
        )
    return args


def load_all(
    directory: Path, *, root: Path, registry: str, builtins: Mapping[str, str], licenses: str = ""
) -> list[Permutation]:
    """Load every ``*.yaml``/``*.yml`` family in ``directory``; names and tags must be unique.
    ``licenses``: the project's SPDX expression, for the families that name none."""
    if not directory.is_dir():
        raise ConfigError(
            f"{directory}: no permutations directory — create it with one YAML per family"
        )
    files = sorted([*directory.glob("*.yaml"), *directory.glob("*.yml")])
    if not files:
        raise ConfigError(f"{directory}: no permutation files (*.yaml)")
    perms: list[Permutation] = []
    by_name: dict[str, Permutation] = {}
    by_tag: dict[str, Permutation] = {}
    for path in files:
        for perm in load_family(
            path, root=root, registry=registry, builtins=builtins, licenses=licenses
        ):
            if perm.name in by_name:
                other = by_name[perm.name]
                raise ConfigError(
                    f"{path}: duplicate permutation name '{perm.name}' (also in {other.source})"
                    " — make 'name' unique, e.g. include every matrix variable"
                )
            by_name[perm.name] = perm
            for ref in perm.floating_refs():
                if ref in by_tag:
                    other = by_tag[ref]
                    raise ConfigError(
                        f"{path}: tag '{ref}' is claimed by both '{other.name}' and '{perm.name}'"
                        " — each floating tag must belong to one permutation"
                    )
                by_tag[ref] = perm
            perms.append(perm)
    return perms


def select(perms: Sequence[Permutation], names: Sequence[str]) -> list[Permutation]:
    """The permutations named (all when ``names`` is empty); unknown names are an error."""
    # A CI job of a grouped matrix names its group as one comma-separated value.
    names = [n.strip() for name in names for n in name.split(",") if n.strip()]
    if not names:
        return list(perms)
    known = {p.name: p for p in perms}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ConfigError(
            f"unknown permutation {', '.join(map(repr, unknown))} — "
            f"known: {', '.join(sorted(known))}"
        )
    return [known[n] for n in dict.fromkeys(names)]
