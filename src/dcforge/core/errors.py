"""Typed errors. Only ``dcforge.cli.main.main`` prints them and turns them into exit codes.

Every error is one line on stderr, ``error: <meaning>: <what is wrong and what to do>``, and
one exit code. docs/exit-codes.md holds the same table (tests/unit/test_cli.py checks it).

====  ====================  ==============================================================
code  meaning               raised when
====  ====================  ==============================================================
0     (success)             the command did what it was asked
1     error                 DcforgeError: a file could not be written, a tag move failed
                            and was put back, a prune without --runner/--registry/
                            --artifacts, --now not an ISO time, GITHUB_OUTPUT or
                            GITHUB_REPOSITORY unset, workflow problems (lint-workflows)
2     config error          ConfigError: a permutation file, setting, waiver, --since
                            reference or input file is invalid; also argparse's status for
                            a command line it rejects
3     tool failed           ToolError: an external tool is missing, failed or timed out
4     build failed          BuildError: buildx bake, the OCI archive or a smoke test failed
5     manifest error        ManifestError: manifest.json or a release record is missing,
                            malformed, or does not match the files it names
6     gate blocked          GateBlocked: the gate refused a permutation, cannot vouch for
                            its tools, or its self-test canary was not blocked
7     publish refused       PublishRefused: publish refused (no passing gate verdict, a
                            dirty tree without --allow-dirty, no key or SBOM, the new
                            release does not verify); floating tags and last-known-good
                            stay on (or went back to) the previous release
8     registry error        RegistryError: the registry or the GitHub API is unreachable
                            or answered something unexpected
9     verify failed         VerifyFailed: a release record, pin, signature or attestation
                            is not what it claims to be
10    rollback refused      RollbackRefused: a rollback or pin was refused before any tag
                            moved
11    retention incomplete  RetentionIncomplete (dcforge.stages.retention): retention
                            stopped part-way or before deleting; it says what was deleted
130   interrupted           Ctrl-C (KeyboardInterrupt), caught by ``dcforge.cli.main.main``
====  ====================  ==============================================================
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

# Ctrl-C: 128 + SIGINT, as shells report a process the signal stopped.
INTERRUPTED_EXIT_CODE = 130


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """`` — did you mean X?`` for the one close match among ``choices``, else ""."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.8)
    return f" — did you mean {close[0]}?" if close else ""


class DcforgeError(Exception):
    """Base of every error dcforge reports to a user as one line."""

    exit_code = 1
    kind = "error"

    def __init__(self, message: str, *, details: str = "") -> None:
        super().__init__(message)
        self.details = details  # shown with --verbose, never needed to act on the error

    def adding(self, text: str) -> DcforgeError:
        """The same kind of error (its exit code), with ``text`` after its message."""
        return type(self)(f"{self}{text}", details=self.details)


class ConfigError(DcforgeError):
    """A permutation file, setting or input file is invalid."""

    exit_code = 2
    kind = "config error"


class ToolError(DcforgeError):
    """An external tool is missing, failed or timed out."""

    exit_code = 3
    kind = "tool failed"


class BuildError(DcforgeError):
    """A build or smoke test failed."""

    exit_code = 4
    kind = "build failed"


class ManifestError(DcforgeError):
    """manifest.json is missing, malformed, or does not match the files it names."""

    exit_code = 5
    kind = "manifest error"


class GateBlocked(DcforgeError):
    """The gate refused at least one permutation."""

    exit_code = 6
    kind = "gate blocked"


class PublishRefused(DcforgeError):
    """Publishing was refused; the floating tags and last-known-good did not move (or went back)."""

    exit_code = 7
    kind = "publish refused"


class RegistryError(DcforgeError):
    """The registry is unreachable or answered something unexpected."""

    exit_code = 8
    kind = "registry error"


class VerifyFailed(DcforgeError):
    """A release record, pin, signature or attestation is not what it claims to be."""

    exit_code = 9
    kind = "verify failed"


class RollbackRefused(DcforgeError):
    """A rollback or pin was refused before any tag moved."""

    exit_code = 10
    kind = "rollback refused"
