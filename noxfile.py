"""dcforge's sessions. Bare ``nox`` is the main job against the local registry."""

from __future__ import annotations

import os

import nox

nox.options.default_venv_backend = "venv"
nox.options.reuse_existing_virtualenvs = True
nox.options.sessions = ["main"]
nox.options.error_on_missing_interpreters = True

# Sessions run on the interpreter nox runs on (any supported Python, >= 3.11): pinning one
# version made every session fail on hosts that have only a newer one.
PYTHON: str | None = None

# The sessions GitHub runs in jobs holding `id-token: write` or `packages: write`
# (dcforge.workflows.LOCKED_SESSIONS) install only from this lock: every runtime dependency,
# the pinned scanner wheels and setuptools (the build backend) by version and sha256.
# Regenerate with the command in its header (see requirements/README.md).
LOCK = "requirements/runtime.lock"


def _install(session: nox.Session, *extras: str) -> None:
    spec = f".[{','.join(extras)}]" if extras else "."
    session.install("-q", "-e", spec)


def _install_locked(session: nox.Session) -> None:
    """Dependencies by hash from LOCK, then dcforge itself: no deps, no build isolation."""
    session.install("-q", "--require-hashes", "-r", LOCK)
    # Without isolation pip builds with the locked setuptools instead of fetching one unhashed.
    session.install("-q", "--no-deps", "--no-build-isolation", "-e", ".")


def _stack(session: nox.Session) -> None:
    session.run("scripts/bootstrap", external=True)
    session.run("scripts/base-images", external=True)


@nox.session(python=PYTHON)
def main(session: nox.Session) -> None:
    """Main job: bootstrap, build, gate, publish and verify every shipped permutation."""
    _install(session)
    _stack(session)
    session.run("python", "-m", "dcforge", "build", *session.posargs)
    session.run("python", "-m", "dcforge", "gate", "--self-test")
    session.run("python", "-m", "dcforge", "gate")
    session.run("python", "-m", "dcforge", "publish")
    session.run("python", "-m", "dcforge", "verify")


@nox.session(python=PYTHON)
def gate(session: nox.Session) -> None:
    """Scan + SBOM every permutation in dist/manifest.json; block per policy (--self-test)."""
    _install(session)
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
    session.run("pytest", "tests/integration", "-q", "--timeout=900", *session.posargs)
    _unit_tests_on_newest_python(session)


NEWER_PYTHONS = ("3.14", "3.13", "3.12")


def _newest_python() -> str | None:
    """The newest interpreter on this machine newer than the session's (PATH, then pyenv)."""
    import glob
    import shutil
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
    """Benchmarks vs buildx bake and a plain script (-- --sizes 1,4,16,64); dist/bench/."""
    _install(session, "bench")
    _stack(session)
    session.run("python", "benchmarks/bench.py", *session.posargs)


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    """ruff, mypy (strict), shellcheck, and actionlint + zizmor over the workflows."""
    _install(session, "lint", "test")
    code = ("src", "tests", "benchmarks", "scripts/make-sample-db", "noxfile.py", "tasks.py")
    session.run("ruff", "check", *code)
    session.run("ruff", "format", "--check", *code)
    session.run("mypy", *code)
    session.run("shellcheck", "scripts/bootstrap", "scripts/base-images", ".ci/run")
    session.run("python", "-m", "dcforge", "lint-workflows", *session.posargs)
