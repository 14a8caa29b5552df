"""dcforge's nox sessions for an images repository (``dcforge init`` writes its noxfile).

The noxfile hands nox in — ``register(nox, requirements="requirements.txt")`` — so dcforge
never imports nox itself. Each session is this repository's session of the same name, for
a project that installs dcforge rather than being it: it installs dcforge from the
project's requirements file and runs ``python -m dcforge COMMAND`` with the session's
arguments (``nox -s build -- --permutation NAME``). The local stack (engine, registry,
tools) is the machine's: this repository's ``scripts/bootstrap`` is not part of the package.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

# name → (one-line help, the dcforge command lines it runs; the session's arguments go to
# the first). The same names and commands as dcforge's own noxfile.py.
SESSIONS: dict[str, tuple[str, tuple[tuple[str, ...], ...]]] = {
    "main": (
        "Main job: build, gate, publish and verify every permutation.",
        (("build",), ("gate", "--self-test"), ("gate",), ("publish",), ("verify",)),
    ),
    "plan": ("Print the resolved permutation matrix (--json for a CI matrix).", (("plan",),)),
    "build": (
        "Build permutations (--permutation NAME, --jobs N) into dist/ + manifest.json.",
        (("build",),),
    ),
    "gate": (
        "Scan + SBOM every permutation in dist/manifest.json; block per policy (--self-test).",
        (("gate",),),
    ),
    "rescan": (
        "Scan what is live with today's DB; non-zero when a rebuild could fix a new finding.",
        (("rescan",),),
    ),
    "publish": (
        "Push by digest, sign, attest, store the release record, then move floating tags.",
        (("publish",),),
    ),
    "verify": (
        "Verify a published release (default: last-known-good; --sha GIT_SHA).",
        (("verify",),),
    ),
    "rollback": (
        "Move floating tags back to a verified release (-- --sha X | --last-known-good).",
        (("rollback",),),
    ),
    "merge": (
        "Merge partial manifests from CI matrix jobs (-- DIR …) into dist/manifest.json.",
        (("merge-manifests",),),
    ),
    "prune": (
        "Runner hygiene (--runner); retention (--registry, --artifacts; deletes only with --yes).",
        (("prune",),),
    ),
    "lint": (
        "actionlint + zizmor + dcforge's rules over .github/workflows.",
        (("lint-workflows",),),
    ),
}


def register(nox: Any, requirements: str = "requirements.txt") -> None:
    """Define dcforge's sessions on ``nox`` (the module the noxfile imported); bare ``nox``
    runs ``main``."""
    nox.options.sessions = ["main"]
    nox.options.default_venv_backend = "venv"
    nox.options.reuse_existing_virtualenvs = True
    for name, (summary, commands) in SESSIONS.items():
        nox.session(python=None, name=name)(session_function(name, summary, commands, requirements))


def session_function(
    name: str, summary: str, commands: Sequence[Sequence[str]], requirements: str
) -> Callable[[Any], None]:
    """One session: install dcforge from ``requirements``, then run each command (the
    session's arguments after the first)."""

    def session(session: Any) -> None:
        session.install("-q", "-r", requirements)
        for i, command in enumerate(commands):
            extra = session.posargs if i == 0 else ()
            session.run("python", "-m", "dcforge", *command, *extra)

    session.__name__ = session.__qualname__ = name
    session.__doc__ = summary
    return session
