"""Workflow checks: our own rules (pure) plus actionlint and zizmor (real binaries)."""

from __future__ import annotations

import ast
import re
import tomllib
from collections.abc import Callable, Collection, Iterator
from pathlib import Path
from typing import Any

import yaml

from dcforge.core import toolpins
from dcforge.core.errors import ConfigError, ToolError
from dcforge.infra.runner import Runner

PINNED = re.compile(r"^[^@\s]+@[0-9a-f]{40}$")
SESSION_CALL = re.compile(
    r"""(?:^|[\s"'/])(?:nox(?:==[^\s"']+)?["']?\s+-s\s+(?P<session>[a-z][a-z-]*)"""
    r"""|invoke\s+(?P<task>[a-z][a-z-]*))"""
)
UNTRUSTED = re.compile(r"\$\{\{\s*github\.event\.")
# Write tokens a compromised dependency could abuse: publish (packages), sign as the
# workflow (id-token), or start and cancel runs — a re-publish of an old release (actions).
PRIVILEGED = frozenset({"packages", "id-token", "actions"})
# The only nox sessions a job holding PRIVILEGED write tokens may run; the noxfile must
# install each from the hash lock (requirements/runtime.lock), see locked_sessions().
LOCKED_SESSIONS = frozenset({"publish", "verify", "rollback", "prune", "rescan"})
# Sessions whose every install the noxfile must take from the hash lock wherever a workflow
# calls them: the privileged ones, and gate, whose scanners' verdict decides what publish
# ships (it runs in a job without write tokens, on the same artifacts).
HASHED_SESSIONS = LOCKED_SESSIONS | {"gate"}
# nox itself, in every job that runs it: a virtualenv of the job's own with nox and its
# dependencies by hash (`pipx run "nox==V"` resolves nox's dependencies by range at run
# time, with the job's tokens in reach). This step first, then `NOX -s SESSION` lines.
NOX_LOCK = "requirements/nox.lock"
NOX = '"${RUNNER_TEMP}/nox/bin/nox"'
NOX_INSTALL = (
    'python -m venv "${RUNNER_TEMP}/nox"\n'
    f'"${{RUNNER_TEMP}}/nox/bin/pip" install -q --require-hashes -r {NOX_LOCK}\n'
)
# A call's arguments: no second command (; & | ` $( ), redirect, subshell or process
# substitution (< > ( )).
ONE_CALL_ARGS = r"(?:\s+(?:[^;&|`$<>()\n]|\$(?!\())*)?"
# One hashed nox call per line, arguments after it.
HASHED_CALL = re.compile(re.escape(NOX) + r" -s (?P<session>[a-z][a-z-]*)" + ONE_CALL_ARGS)
# A reusable workflow (dcforge.infra.reusable_workflows) runs dcforge instead, by the version
# it pins (top-level env DCFORGE_VERSION) in a virtualenv of the job's own: this step first,
# then `DCFORGE COMMAND` lines, one call a line, no second command.
DCFORGE = '"${RUNNER_TEMP}/dcforge/bin/dcforge"'
# The reusable workflow's dcforge, installed away from the caller's checkout (python -I and
# a cd: a venv.py or dcforge/ there would otherwise be imported): dcforge by version and
# hash (DCFORGE_SHA256, the published wheel's), its dependencies by hash from the lock the
# package ships (resources/runtime.lock is requirements/'s); a state folder of the job's
# own, never one the checkout holds or names.
DCFORGE_INSTALL = (
    'cd "${RUNNER_TEMP}"\n'
    'python -I -m venv "${RUNNER_TEMP}/dcforge"\n'
    'echo "DCFORGE_STATE_DIR=${RUNNER_TEMP}/dcforge-state" >> "${GITHUB_ENV}"\n'
    'printf \'dcforge==%s --hash=sha256:%s\\n\' "${DCFORGE_VERSION}" "${DCFORGE_SHA256}"'
    " > dcforge.txt\n"
    '"${RUNNER_TEMP}/dcforge/bin/pip" install -q --no-deps --require-hashes -r dcforge.txt\n'
    '"${RUNNER_TEMP}/dcforge/bin/pip" install -q --require-hashes -r "$("${RUNNER_TEMP}/dcforge'
    '/bin/python" -I -c \'import importlib.resources as r; print(r.files("dcforge") / '
    '"resources/runtime.lock")\')"\n'
)
DCFORGE_CALL = re.compile(re.escape(DCFORGE) + r" (?P<command>[a-z][a-z-]*)" + ONE_CALL_ARGS)
# A job holding PRIVILEGED write tokens runs only on the default branch: its `if:` is this
# test, alone or &&-joined (never ||). A literal: a scheduled run's payload has no
# github.event.repository.default_branch, and the signing identity names this ref anyway.
DEFAULT_REF_GUARD = "github.ref == 'refs/heads/{branch}'"
# Secrets that must be environment secrets (restricted to the default branch, SECRETS.md):
# a repository secret reaches every same-repository pull request, which can edit the
# workflow to read it. A job referencing one must run in an environment.
ENVIRONMENT_SECRETS = frozenset(
    {"DCFORGE_STAGING_PASSWORD", "DCFORGE_REGISTRY_PASSWORD", "COSIGN_KEY", "COSIGN_PASSWORD"}
)
SECRET_REF = re.compile(r"\bsecrets\.([A-Za-z_][A-Za-z0-9_]*)")
# The one concurrency group every job that changes the registry queues in (queue: max).
REGISTRY_GROUP = "registry-${{ github.repository }}"
# `${{ … github.run_id … }}`: a concurrency group no other run can share.
RUN_ID = re.compile(r"\$\{\{(?:(?!\}\}).)*\bgithub\.run_id\b")


def load(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: not valid YAML ({' '.join(str(err).split())})") from None
    if not isinstance(data, dict) or not isinstance(data.get("jobs", {}), dict):
        raise ConfigError(f"{path}: not a workflow")
    # YAML 1.1 reads the key `on` as True.
    if True in data and "on" not in data:
        data["on"] = data.pop(True)
    return data


def problems(path: Path, commands: Collection[str] = ()) -> list[str]:
    """dcforge's rules: parity with the sessions, SHA pins, no injection, least privilege.

    A reusable workflow runs dcforge's ``commands`` (the CLI's, handed in; none by default)
    instead of sessions, and a job that calls one is held to rules of its own: both in
    :mod:`dcforge.infra.reusable_workflows`.
    """
    from dcforge.infra import reusable_workflows as reusable  # which builds on this module

    wf = load(path)
    out = []
    events = wf.get("on") or {}
    names = [events] if isinstance(events, str) else list(events)
    if "pull_request_target" in names:
        out.append(f"{path.name}: pull_request_target is not allowed")
    if wf.get("permissions") not in ({"contents": "read"}, {}):
        out.append(f"{path.name}: top-level permissions must be contents: read")
    called = reusable.is_reusable(wf)
    if called:
        out += reusable.env_problems(path, wf) + reusable.step_problems(path, wf)
    guard = DEFAULT_REF_GUARD.format(branch=_default_branch(path))
    for job_name, job in (wf.get("jobs") or {}).items():
        if "uses" in job:
            out += reusable.caller_problems(path, job_name, job, guard)
            continue
        out += _job_problems(path, job_name, job, guard)
        privileged = bool(_writes(job) & PRIVILEGED)
        if called:
            out += reusable.job_problems(path, job_name, job, commands, privileged)
        else:
            out += _session_problems(path, job_name, job, privileged)
        out += _step_problems(path, job_name, job, sessions=not called)
    return out + _concurrency_problems(path, wf)


def _writes(job: dict[str, Any]) -> set[str]:
    perms = job.get("permissions") or {}
    return {k for k, v in perms.items() if v == "write"} if isinstance(perms, dict) else set()


def _job_problems(path: Path, job_name: str, job: dict[str, Any], guard: str) -> list[str]:
    """A job's rights: write tokens only where it publishes, and only on the default branch;
    environment secrets only in an environment; the whole history where publish runs."""
    out, writes = [], _writes(job)
    if (
        writes & {"packages", "id-token"}
        and "publish" not in job_name
        and job_name not in ("republish", "rollback", "retention")
    ):
        out.append(f"{path.name}: job {job_name} has {sorted(writes)} but does not publish")
    if writes & PRIVILEGED and not guarded(job.get("if"), guard):
        out.append(
            f"{path.name}: job {job_name} has {sorted(writes & PRIVILEGED)} but may run off"
            f" the default branch: give it if: {guard} (alone or &&-joined, no ||)"
        )
    out += _environment_secret_problems(path, job_name, job)
    return out + _history_problems(path, job_name, job)


def _session_problems(
    path: Path, job_name: str, job: dict[str, Any], privileged: bool
) -> list[str]:
    """What a job of any other workflow runs: nox sessions (and invoke tasks), hash-locked
    where write tokens or the gate's verdict are at stake."""
    out = []
    if privileged:
        out += _lock_problems(path, job_name, sorted(_writes(job) & PRIVILEGED), _job_calls(job))
    out += _nox_problems(path, job_name, job, privileged=privileged)
    return out + _hashed_session_problems(path, job_name, _job_calls(job))


def _step_problems(path: Path, job_name: str, job: dict[str, Any], sessions: bool) -> list[str]:
    """Each step: actions pinned, credentials not kept, tools at dcforge's pins, no
    expression inside ``run:`` and (``sessions``) every ``run:`` a session or task."""
    out = []
    for i, step in enumerate(job.get("steps") or []):
        where = f"{path.name}: {job_name} step {i + 1}"
        uses = step.get("uses")
        if uses and not uses.startswith("./") and not PINNED.match(uses):
            out.append(f"{where}: {uses} is not pinned to a full commit SHA")
        with_ = step.get("with") or {}
        out += _tool_version_problems(where, uses or "", with_)
        if (uses or "").startswith("actions/checkout@") and with_.get(
            "persist-credentials"
        ) is not False:
            out.append(f"{where}: checkout without persist-credentials: false")
        run = step.get("run")
        if run is None:
            continue
        if UNTRUSTED.search(run) or "${{" in run:
            out.append(f"{where}: expression expanded inside run: (pass it through env)")
        if sessions and not SESSION_CALL.search(run) and not is_nox_install(run):
            out.append(f"{where}: run: must call a nox session or invoke task")
    return out


def _job_calls(job: dict[str, Any]) -> list[tuple[str, str]]:
    found = []
    for step in job.get("steps") or []:
        for m in SESSION_CALL.finditer(step.get("run") or ""):
            found.append(("nox", m["session"]) if m["session"] else ("invoke", m["task"]))
    return found


def pyproject(path: Path) -> dict[str, Any]:
    """The pyproject.toml of the checkout the workflow sits in ({} when unreadable)."""
    try:
        return tomllib.loads((checkout(path) / "pyproject.toml").read_text())
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError):
        return {}


def _default_branch(path: Path) -> str:
    """[tool.dcforge].default_branch of the checkout the workflow sits in ("main")."""
    tool = pyproject(path).get("tool", {})
    branch = (tool.get("dcforge") or {}).get("default_branch") if isinstance(tool, dict) else None
    return branch if isinstance(branch, str) and branch else "main"


def guarded(condition: Any, guard: str) -> bool:
    """Whether a job's ``if:`` is ``guard`` (the default-branch test) or &&-joins it."""
    text = str(condition or "").strip()
    m = re.fullmatch(r"\$\{\{(.*)\}\}", text, re.S)
    text = " ".join((m.group(1) if m else text).split())
    if not text or "||" in text or "!" in text.replace("!=", ""):
        return False  # an || or a negation can turn the guard around
    return any(part.strip().strip("()").strip() == guard for part in text.split("&&"))


def _environment_secret_problems(path: Path, job_name: str, job: dict[str, Any]) -> list[str]:
    named = sorted(set(SECRET_REF.findall(yaml.safe_dump(job))) & ENVIRONMENT_SECRETS)
    if not named or job.get("environment"):
        return []
    return [
        f"{path.name}: job {job_name} reads secrets.{name} outside an environment: keep it an"
        " environment secret of one allowed only on the default branch (SECRETS.md) — a"
        " repository secret reaches every same-repository pull request"
        for name in named
    ]


def _history_problems(path: Path, job_name: str, job: dict[str, Any]) -> list[str]:
    """A job that publishes checks out the whole history: publish refuses a commit it cannot
    show descends from the pinned release, and actions/checkout fetches one commit by
    default (fetch-depth: 1)."""
    if ("nox", "publish") not in _job_calls(job) and "publish" not in dcforge_calls(job):
        return []
    checkouts = [
        step.get("with") or {}
        for step in job.get("steps") or []
        if str(step.get("uses") or "").startswith("actions/checkout@")
    ]
    if checkouts and all(str(w.get("fetch-depth")) == "0" for w in checkouts):
        return []
    return [
        f"{path.name}: job {job_name} publishes but does not check out with fetch-depth: 0 —"
        " publish must see that the commit descends from the pinned release"
    ]


def is_nox_install(run: str) -> bool:
    return " ".join(run.split()) == " ".join(NOX_INSTALL.split())


def is_dcforge_install(run: str) -> bool:
    return " ".join(run.split()) == " ".join(DCFORGE_INSTALL.split())


def dcforge_calls(job: dict[str, Any]) -> list[str]:
    """The dcforge commands a job's ``run:`` lines call (:data:`DCFORGE_CALL`), in order."""
    return [
        m["command"]
        for step in job.get("steps") or []
        for line in str(step.get("run") or "").splitlines()
        if (m := DCFORGE_CALL.fullmatch(line.strip()))
    ]


def run_steps(
    path: Path, job_name: str, job: dict[str, Any], is_install: Callable[[str], bool]
) -> Iterator[tuple[str, list[str], bool]]:
    """Each ``run:`` step of a job but its install steps (``is_install``): where it is, its
    non-blank lines, and whether an install step came before it."""
    installed = False
    for i, step in enumerate(job.get("steps") or []):
        run = step.get("run")
        if run is None:
            continue
        if is_install(str(run)):
            installed = True
            continue
        where = f"{path.name}: job {job_name} step {i + 1} ({step.get('name') or 'run'})"
        yield where, [line.strip() for line in str(run).splitlines() if line.strip()], installed


def _nox_problems(path: Path, job_name: str, job: dict[str, Any], privileged: bool) -> list[str]:
    """nox comes from its hash lock: the NOX_INSTALL step, then ``NOX -s …`` lines only. In a
    job holding PRIVILEGED write tokens every line of every ``run:`` is one or the other."""
    out = []
    for where, lines, installed in run_steps(path, job_name, job, is_nox_install):
        bad = [
            line
            for line in lines
            if (privileged or SESSION_CALL.search(line)) and not HASHED_CALL.fullmatch(line)
        ]
        if bad:
            rule = "runs only" if privileged else "runs nox only as"
            out.append(
                f"{where}: {bad[0][:60]!r}: this job {rule} {NOX} -s SESSION, one call a"
                f" line (nox installed from {NOX_LOCK} by an earlier step)"
            )
        elif any(HASHED_CALL.fullmatch(line) for line in lines) and not installed:
            out.append(
                f"{where}: calls {NOX} before a step installs it from {NOX_LOCK}: run first"
                f" {NOX_INSTALL!r}"
            )
    return out


def checkout(path: Path) -> Path:
    """.github/workflows/X.yml → the checkout it sits in"""
    return path.resolve().parent.parent.parent


def _noxfile(path: Path) -> Path:
    """.github/workflows/X.yml → the checkout's noxfile.py"""
    return checkout(path) / "noxfile.py"


def _hashed_session_problems(path: Path, job_name: str, called: list[tuple[str, str]]) -> list[str]:
    """The sessions in HASHED_SESSIONS a job calls install from the hash lock only."""
    wanted = {name for kind, name in called if kind == "nox" and name in HASHED_SESSIONS}
    if not wanted:
        return []
    where = f"{path.name}: job {job_name}"
    noxfile = _noxfile(path)
    if not noxfile.is_file():
        return [f"{where}: noxfile.py not found at {noxfile}, cannot check its hash lock"]
    return [
        f"{where}: noxfile.py does not install session {name} from a hash lock"
        " (--require-hashes -r LOCK, then --no-deps --no-build-isolation -e .)"
        for name in sorted(wanted - locked_sessions(noxfile))
    ]


def _lock_problems(
    path: Path, job_name: str, writes: list[str], called: list[tuple[str, str]]
) -> list[str]:
    """A job holding write tokens for packages or OIDC runs only hash-locked sessions."""
    where = f"{path.name}: job {job_name} has {writes}"
    return [
        f"{where} but calls {kind} {'session' if kind == 'nox' else 'task'} {name}:"
        f" only {sorted(LOCKED_SESSIONS)} (installed from the hash lock) may run there"
        for kind, name in called
        if kind != "nox" or name not in LOCKED_SESSIONS
    ]


def locked_sessions(noxfile: Path) -> set[str]:
    """The noxfile's sessions whose every install (helpers followed) is hash-locked.

    A locked install is either `--require-hashes -r FILE` with FILE present, or
    `--no-deps --no-build-isolation` of the checkout only (`.`, `-e .`); at least one must be
    the former. Anything not a literal (f-strings, *extras) counts as unlocked.
    """
    reader = _NoxInstalls(ast.parse(noxfile.read_text()))
    locked = set()
    for name, fn in reader.funcs.items():
        if not any("session" in ast.unparse(d) for d in fn.decorator_list):
            continue
        found = reader.installs(fn, frozenset({name}))
        hashed = [_hashed(args, noxfile.parent) for args in found]
        if any(hashed) and all(h or _checkout_only(a) for h, a in zip(hashed, found, strict=True)):
            locked.add(name)
    return locked


class _NoxInstalls:
    """The literal arguments of every install a noxfile function makes (helpers followed)."""

    def __init__(self, tree: ast.Module) -> None:
        self.consts = {
            target.id: node.value.value
            for node in tree.body
            if isinstance(node, ast.Assign)
            and isinstance(node.value, ast.Constant)
            and isinstance(node.value.value, str)
            for target in node.targets
            if isinstance(target, ast.Name)
        }
        self.funcs = {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}

    def literal(self, arg: ast.expr) -> str | None:
        if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
            return arg.value
        return self.consts.get(arg.id) if isinstance(arg, ast.Name) else None

    def installs(self, fn: ast.FunctionDef, seen: frozenset[str]) -> list[list[str | None]]:
        found: list[list[str | None]] = []
        for node in ast.walk(fn):
            if not isinstance(node, ast.Call):
                continue
            f = node.func
            args = [self.literal(a) for a in node.args]
            if isinstance(f, ast.Attribute) and f.attr in ("install", "run_install"):
                found.append(args)
            elif isinstance(f, ast.Attribute) and f.attr in ("run", "run_always"):
                if "pip" in args[:3] and "install" in args[:4]:
                    found.append(args[args.index("install") + 1 :])
            elif isinstance(f, ast.Name) and f.id in self.funcs and f.id not in seen:
                found += self.installs(self.funcs[f.id], seen | {f.id})
        return found


def _hashed(args: list[str | None], root: Path) -> bool:
    if "--require-hashes" not in args or "-r" not in args[:-1]:
        return False
    lock = args[args.index("-r") + 1]
    return lock is not None and (root / lock).is_file()


def _checkout_only(args: list[str | None]) -> bool:
    targets = [a for a in args if a is None or not a.startswith("-")]
    return (
        {"--no-deps", "--no-build-isolation"} <= set(args)
        and bool(targets)
        and all(t in (".", "./") for t in targets)
    )


def _group(holder: dict[str, Any]) -> str | None:
    concurrency = holder.get("concurrency")
    if isinstance(concurrency, dict):
        concurrency = concurrency.get("group")
    return None if concurrency is None else str(concurrency)


# Actions that install a pinned tool: (action, its version input, tool, prefix of the value).
TOOL_ACTIONS = (
    ("oras-project/setup-oras@", "version", "oras", ""),
    ("sigstore/cosign-installer@", "cosign-release", "cosign", "v"),
)


def _tool_version_problems(where: str, uses: str, with_: dict[str, Any]) -> list[str]:
    """The workflows install oras and cosign at dcforge's pins, never at versions of their
    own (one place for pins: resources/toolchain.toml)."""
    for action, key, tool, prefix in TOOL_ACTIONS:
        if uses.startswith(action):
            want = prefix + toolpins.debian_pin(tool)
            if str(with_.get(key, "")) != want:
                return [
                    f"{where}: {tool} {with_.get(key)!r} differs from the pin in {toolpins.WHERE} "
                    f"({want}) — set {key}: {want}"
                ]
    return []


def _writes_registry(job: dict[str, Any]) -> bool:
    called = {s for _, s in _job_calls(job)} | set(dcforge_calls(job))
    return bool(_writes(job) & {"packages", "id-token"}) or bool(
        called & {"rollback", "publish", "prune"}
    )


def _concurrency_problems(path: Path, wf: dict[str, Any]) -> list[str]:
    """Every job that changes the registry queues in ONE group, and no queued run is dropped.

    GitHub keeps one running and, by default, one pending run per group, cancelling the
    pending one when another queues — a queued rollback would vanish behind a publish.
    With ``queue: max`` (and cancel-in-progress false) a group keeps every queued run and
    runs them in order, across runners: publish, re-publish, rollback and retention all
    queue in :data:`REGISTRY_GROUP`. A workflow-level group around such a job must not
    drop it either (``queue: max``, or a group unique to the run: ``github.run_id``). A job
    calling a reusable workflow need not queue in the group itself — the called workflow's
    jobs that change the registry do (where that workflow is linted) — but the second rule
    holds for it.
    """
    out = []
    wf_conc = wf.get("concurrency")
    for job_name, job in (wf.get("jobs") or {}).items():
        if not isinstance(job, dict) or not _writes_registry(job):
            continue
        where = f"{path.name}: job {job_name}"
        conc = job.get("concurrency")
        if "uses" in job:
            pass
        elif not isinstance(conc, dict) or conc.get("group") != REGISTRY_GROUP:
            out.append(
                f"{where} changes the registry outside the concurrency group {REGISTRY_GROUP!r}"
            )
        elif conc.get("queue") != "max" or conc.get("cancel-in-progress") not in (None, False):
            out.append(
                f"{where}: its concurrency group needs queue: max and cancel-in-progress: false"
                " (GitHub otherwise cancels a pending run when another queues)"
            )
        if wf_conc is not None and not _keeps_pending(wf_conc):
            out.append(
                f"{where} sits in a workflow-level concurrency group that can drop it while "
                "pending: add queue: max or make the group unique to the run (github.run_id)"
            )
    return out


def _keeps_pending(conc: Any) -> bool:
    if isinstance(conc, dict):
        if conc.get("queue") == "max" and conc.get("cancel-in-progress") in (None, False):
            return True
        conc = conc.get("group")
    return bool(RUN_ID.search(str(conc)))


def lint(
    runner: Runner, directory: Path, config: Path | None, commands: Collection[str] = ()
) -> list[str]:
    """dcforge's rules (a reusable workflow's jobs may call ``commands``), actionlint and
    zizmor (``config``: its configuration) over the workflows in ``directory``."""
    files = sorted([*directory.glob("*.yml"), *directory.glob("*.yaml")])
    if not files:
        raise ConfigError(f"{directory}: no workflow files")
    found = [p for f in files for p in problems(f, commands)]
    for argv in (
        ["actionlint", "-no-color", *map(str, files)],
        [
            "zizmor",
            "--offline",
            "--no-progress",
            *(["--config", str(config)] if config else []),
            str(directory),
        ],
    ):
        result = runner.run(argv, timeout=300, check=False, mutates=False)
        if result.returncode != 0:
            text = (result.stdout + result.stderr).strip()
            if result.returncode not in (1, 10, 11, 12, 13, 14):
                raise ToolError(f"{argv[0]} exited {result.returncode}: {text[-300:]}")
            found.append(f"{argv[0]}: {text}")
    return found
