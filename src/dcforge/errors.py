"""Typed errors. Only ``dcforge.__main__.main`` prints them and turns them into exit codes."""

from __future__ import annotations


class DcforgeError(Exception):
    """Base of every error dcforge reports to a user as one line."""

    exit_code = 1
    kind = "error"

    def __init__(self, message: str, *, details: str = "") -> None:
        super().__init__(message)
        self.details = details  # shown with --verbose, never needed to act on the error


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
    """Publishing was refused before anything changed in the registry."""

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
