"""dcforge's sessions. Bare ``nox`` is the main job against the local registry."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import nox

nox.options.default_venv_backend = "venv"
nox.options.reuse_existing_virtualenvs = True
nox.options.sessions = ["main"]
nox.options.error_on_missing_interpreters = True

# Sessions run on the interpreter nox runs on (any supported Python, >= 3.11): pinning one
# version made every session fail on hosts that have only a newer one.
PYTHON: str | None = None

# The sessions GitHub runs in jobs holding `id-token: write` or `packages: write`
# (dcforge.infra.workflows.LOCKED_SESSIONS), and gate, install only from this lock
# (dcforge.infra.workflows.HASHED_SESSIONS): every runtime dependency,
# the pinned scanner wheels and setuptools (the build backend) by version and sha256.
# Regenerate with the command in its header (see requirements/README.md).
LOCK = "requirements/runtime.lock"


# pip compiles the modules it installs, but an editable install leaves dcforge's own as
# source: where PYTHONDONTWRITEBYTECODE is set (many container images set it) every command
# compiled them all again, 0.1 s of each start. Compiled once here, Python reads them.
def _compile(python: str, root: Path = Path()) -> list[str]:
    """The command that compiles dcforge's modules under ``root`` with ``python``."""
    return [python, "-m", "compileall", "-q", str(root / "src" / "dcforge")]


def _install(session: nox.Session, *extras: str) -> None:
    spec = f".[{','.join(extras)}]" if extras else "."
    session.install("-q", "-e", spec)
    session.run(*_compile("python"), silent=True)


def _install_locked(session: nox.Session) -> None:
    """Dependencies by hash from LOCK, then dcforge itself: no deps, no build isolation."""
    session.install("-q", "--require-hashes", "-r", LOCK)
    # Without isolation pip builds with the locked setuptools instead of fetching one unhashed.
    session.install("-q", "--no-deps", "--no-build-isolation", "-e", ".")
    session.run(*_compile("python"), silent=True)


# Bare `nox` leaves `invoke` usable: a virtualenv in the checkout (git-ignored) with dcforge
# (editable) and its dependencies from LOCK, as the locked sessions install them.
VENV = ".venv"
VENV_STAMP = "dcforge-install.sha256"  # in the venv: what was installed, to skip it next time


def project_venv(
    root: Path, run: Callable[[Sequence[str]], object], venv: Path | None = None
) -> bool:
    """Make (or refresh) ``root/.venv`` with dcforge and invoke; True when it installed.

    ``run`` runs one command and fails loudly. A second run installs nothing while LOCK and
    pyproject.toml are unchanged (a stamp in the venv) and dcforge there is this checkout's.
    A working virtualenv already there is kept (never cleared); a broken one is made anew.
    """
    venv = venv or root / VENV
    python, stamp, wanted = venv / "bin" / "python", venv / VENV_STAMP, _install_digest(root)
    found = _dcforge_origin(python)
    if found is None:  # no working interpreter there
        if venv.is_dir() and any(venv.iterdir()) and not (venv / "pyvenv.cfg").is_file():
            raise RuntimeError(f"{venv} is not a virtualenv: move it away and run nox again")
        run([sys.executable, "-m", "venv", "--clear", str(venv)])
    elif (
        found
        and Path(found).resolve() == (root / "src" / "dcforge" / "__init__.py").resolve()
        and (venv / "bin" / "invoke").is_file()
        and stamp.is_file()
        and stamp.read_text() == wanted
    ):
        return False
    pip = [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    run([*pip, "--require-hashes", "-r", str(root / LOCK)])
    run([*pip, "--no-deps", "--no-build-isolation", "-e", str(root)])
    run(_compile(str(python), root))
    unmet = _unmet_requirements(python)
    if unmet:
        problems = "; ".join(line.rstrip(".") for line in unmet)
        raise RuntimeError(f"{venv}: {problems}: is {LOCK} older than pyproject.toml?")
    stamp.write_text(wanted)
    return True


def _install_digest(root: Path) -> str:
    """What an install into the project venv depends on: the lock and pyproject.toml."""
    digest = hashlib.sha256()
    for name in (LOCK, "pyproject.toml"):
        digest.update((root / name).read_bytes() + b"\0")
    return digest.hexdigest()


def _dcforge_origin(python: Path) -> str | None:
    """Where ``python`` imports dcforge from ("" when it does not); None when it cannot run."""
    probe = "import importlib.util as u; s = u.find_spec('dcforge'); print(s.origin if s else '')"
    try:
        out = subprocess.run(
            [str(python), "-c", probe], capture_output=True, text=True, timeout=120, check=False
        )
    except OSError:
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def _unmet_requirements(python: Path) -> list[str]:
    """dcforge's requirements that ``python``'s environment lacks (``pip check``)."""
    out = subprocess.run(
        [str(python), "-m", "pip", "check", "--disable-pip-version-check"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    return [line for line in out.stdout.splitlines() if line.startswith("dcforge ")]


def _stack(session: nox.Session) -> None:
    session.run("scripts/bootstrap", external=True)
    session.run("scripts/base-images", external=True)


@nox.session(python=PYTHON)
def main(session: nox.Session) -> None:
    """Main job: bootstrap, build, gate, publish and verify every shipped permutation."""
    _install(session)
    _project_venv(session)
    _stack(session)
    session.run("python", "-m", "dcforge", "build", *session.posargs)
    session.run("python", "-m", "dcforge", "gate", "--self-test")
    session.run("python", "-m", "dcforge", "gate")
    session.run("python", "-m", "dcforge", "publish")
    session.run("python", "-m", "dcforge", "verify")
    session.log(
        f"invoke is ready: `{VENV}/bin/invoke --list` here, or `. {VENV}/bin/activate` to put"
        " invoke and dcforge on PATH (e.g. `invoke rollback --sha X`)"
    )


def _project_venv(session: nox.Session) -> None:
    """.venv/ with invoke and dcforge (project_venv), made first: a failed step leaves it."""
    root = Path(__file__).resolve().parent
    try:
        if not project_venv(root, lambda argv: session.run(*argv, external=True)):
            session.log(f"{VENV}/: dcforge and invoke already installed from {LOCK}")
    except RuntimeError as err:
        session.error(str(err))


@nox.session(python=PYTHON)
def gate(session: nox.Session) -> None:
    """Scan + SBOM every permutation in dist/manifest.json; block per policy (--self-test)."""
    _install_locked(session)  # its verdict decides what publish ships: scanners by hash
    session.run("scripts/bootstrap", external=True)
    session.run("python", "-m", "dcforge", "gate", *session.posargs)


@nox.session(python=PYTHON)
def rescan(session: nox.Session) -> None:
    """Scan what is live with today's DB; non-zero when a rebuild could fix a new finding."""
    _install_locked(session)
    session.run("scripts/bootstrap", external=True)
    session.run("python", "-m", "dcforge", "rescan", *session.posargs)


@nox.session(python=PYTHON)
def publish(session: nox.Session) -> None:
    """Push by digest, sign, attest, store the release record, then move floating tags."""
    _install_locked(session)
    session.run("scripts/bootstrap", external=True)
    session.run("python", "-m", "dcforge", "publish", *session.posargs)


@nox.session(python=PYTHON)
def verify(session: nox.Session) -> None:
    """Verify a published release (default: last-known-good; --sha GIT_SHA)."""
    _install_locked(session)
    session.run("scripts/bootstrap", external=True)
    session.run("python", "-m", "dcforge", "verify", *session.posargs)


@nox.session(python=PYTHON)
def rollback(session: nox.Session) -> None:
    """Move floating tags back to a verified release (-- --sha X | --last-known-good)."""
    _install_locked(session)
    session.run("scripts/bootstrap", external=True)
    session.run("python", "-m", "dcforge", "rollback", *session.posargs)


@nox.session(python=PYTHON)
def merge(session: nox.Session) -> None:
    """Merge partial manifests from CI matrix jobs (-- DIR …) into dist/manifest.json."""
    _install(session)
    session.run("python", "-m", "dcforge", "merge-manifests", *session.posargs)


@nox.session(python=PYTHON)
def plan(session: nox.Session) -> None:
    """Print the resolved permutation matrix (--json for a CI matrix)."""
    _install(session)
    session.run("python", "-m", "dcforge", "plan", *session.posargs)


@nox.session(python=PYTHON)
def build(session: nox.Session) -> None:
    """Build permutations (--permutation NAME, --jobs N) into dist/ + manifest.json."""
    _install(session)
    _stack(session)
    session.run("python", "-m", "dcforge", "build", *session.posargs)


@nox.session(python=PYTHON)
def reproduce(session: nox.Session) -> None:
    """Build twice with the build cache bypassed; every digest must match (which files don't)."""
    _install(session)
    _stack(session)
    session.run("python", "-m", "dcforge", "build", "--check-reproducible", *session.posargs)


@nox.session(python=PYTHON)
def prune(session: nox.Session) -> None:
    """Runner hygiene (--runner); retention (--registry, --artifacts; deletes only with --yes)."""
    _install_locked(session)
    session.run("python", "-m", "dcforge", "prune", *session.posargs)


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    """Unit + integration tests; brings the local stack up first (scripts/bootstrap)."""
    _install(session, "test")
    session.run("pytest", "tests/unit", "-q", *session.posargs)
    _stack(session)
    _integration_tests(session)
    _unit_tests_on_newest_python(session)


# The integration tests mostly wait (on dockerd, the registry, a tool's start-up): most run
# in workers side by side, files kept whole (their fixtures are set up once); those marked
# `alone` (they stop dockerd or empty what every test shares) run after, one at a time.
INTEGRATION = ("pytest", "tests/integration", "--timeout=900", "-o", "console_output_style=times")


def _integration_tests(session: nox.Session) -> None:
    workers = str(min(4, max(2, os.cpu_count() or 1)))
    # A filter of the caller's (-k, a file) may leave one pass with nothing to run (5).
    codes = [0, 5] if session.posargs else [0]
    # In collection order (slow files first), not xdist's default of the most tests first.
    side_by_side = ["-n", workers, "--dist", "loadfile", "--no-loadscope-reorder"]
    side_by_side += ["-m", "not alone", "--durations=15"]
    session.run(*INTEGRATION, *side_by_side, *session.posargs, success_codes=codes)
    session.run(*INTEGRATION, "-m", "alone", "--durations=5", *session.posargs, success_codes=codes)


NEWER_PYTHONS = ("3.14", "3.13", "3.12")


def _newest_python() -> str | None:
    """The newest interpreter on this machine newer than the session's (PATH, then pyenv)."""
    import glob
    import subprocess

    for version in NEWER_PYTHONS:
        candidates = [shutil.which(f"python{version}") or ""]
        candidates += sorted(
            glob.glob(os.path.expanduser(f"~/.pyenv/versions/{version}*/bin/python3"))
        )
        for exe in filter(None, candidates):
            ok = subprocess.run([exe, "--version"], capture_output=True, check=False)
            if ok.returncode == 0:
                return exe
    return None


def _unit_tests_on_newest_python(session: nox.Session) -> None:
    """Every supported Python: the unit tests again on the newest one found here."""
    exe = _newest_python()
    if exe is None:
        session.log(
            f"no Python newer than this one ({', '.join(NEWER_PYTHONS)}): unit tests ran once"
        )
        return
    venv = os.path.join(".nox", "unit-newest")
    python = os.path.join(venv, "bin", "python")
    session.run(exe, "-m", "venv", venv, external=True)
    session.run(python, "-m", "pip", "install", "-q", "-e", ".[test]", external=True)
    session.run(python, "-m", "pytest", "tests/unit", "-q", external=True)


@nox.session(python=PYTHON)
def reliability(session: nox.Session) -> None:
    """Faults, hostile input, secrets: run them and write dist/reports/reliability.md."""
    _install(session, "test")
    _stack(session)
    session.run(
        "pytest",
        "-m",
        "reliability",
        "tests/unit",
        "tests/integration",
        "-q",
        "--timeout=900",
        *session.posargs,
        env={"DCFORGE_RELIABILITY_REPORT": "dist/reports/reliability.md"},
    )


@nox.session(python=PYTHON)
def bench(session: nox.Session) -> None:
    """Benchmarks vs buildx bake and plain scripts (-- --full: N = 1, 4, 16, 64); dist/bench/."""
    _install(session, "bench")
    _stack(session)
    session.run("python", "benchmarks/bench.py", *session.posargs)


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    """ruff, mypy (strict), shellcheck, and actionlint + zizmor over the workflows (and the
    one `dcforge init` writes)."""
    _install(session, "lint", "test")
    code = ("src", "tests", "benchmarks", "scripts/make-sample-db", "noxfile.py", "tasks.py")
    session.run("ruff", "check", *code)
    session.run("ruff", "format", "--check", *code)
    session.run("mypy", *code)
    session.run(
        "shellcheck", "scripts/bootstrap", "scripts/base-images", ".ci/run",
        "src/dcforge/resources/test-utils.sh", *map(str, Path("images").glob("**/*.sh")),
    )  # fmt: skip
    session.run("python", "-m", "dcforge", "lint-workflows", "--scaffold", *session.posargs)
    _commit_subjects(session)


# Commits from here on say what in one short line (issue 29); older ones stay as they are.
SUBJECTS_FROM = "0a205511e212380b480c43366dc688151c6dc534"
MAX_SUBJECT = 72


def _commit_subjects(session: nox.Session) -> None:
    """Every commit subject after SUBJECTS_FROM is one line of at most 72 characters
    (skipped, with a note, in a clone without that commit: a shallow checkout)."""
    git = shutil.which("git") or "git"
    known = subprocess.run(
        [git, "cat-file", "-e", f"{SUBJECTS_FROM}^{{commit}}"], capture_output=True, check=False
    )
    if known.returncode != 0:
        session.log(f"commit subjects: {SUBJECTS_FROM[:12]} is not in this clone; not checked")
        return
    out = subprocess.run(
        [git, "log", "--format=%h %s", f"{SUBJECTS_FROM}..HEAD"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    long = [line for line in out.splitlines() if len(line.split(" ", 1)[1]) > MAX_SUBJECT]
    if long:
        session.error(f"commit subjects over {MAX_SUBJECT} characters: {long}")
    session.log(
        f"commit subjects: {len(out.splitlines())} checked, all <= {MAX_SUBJECT} characters"
    )
