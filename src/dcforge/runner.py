"""The one way dcforge runs an external tool.

argv lists only (never a shell), the executable looked up first, the command echoed with
secrets redacted, a timeout on every call, ``dry_run`` echoing instead of running, and a
failure turned into a :class:`ToolError` naming the tool, its exit code and the last lines
of its stderr.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from dcforge import log
from dcforge.errors import ToolError

# Environment variables whose values must never be printed.
_SECRET_NAME = re.compile(r"(PASSWORD|TOKEN|SECRET|PRIVATE|CREDENTIAL|_KEY$|^COSIGN_KEY$)", re.I)
_MIN_SECRET_LEN = 4
DEFAULT_TIMEOUT = 600.0
STDERR_TAIL_LINES = 8


def secret_values(env: Mapping[str, str]) -> frozenset[str]:
    """Values of variables whose names say they are secrets (long enough to be worth hiding)."""
    return frozenset(
        value
        for name, value in env.items()
        if _SECRET_NAME.search(name) and len(value) >= _MIN_SECRET_LEN
    )


def redact(text: str, secrets: frozenset[str]) -> str:
    for value in sorted(secrets, key=len, reverse=True):
        text = text.replace(value, "***")
    return text


@dataclass(frozen=True)
class Result:
    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str


@dataclass
class Runner:
    """Runs tools. ``env`` is the base environment (the entry point passes ``os.environ``)."""

    env: Mapping[str, str] = field(default_factory=dict)
    dry_run: bool = False
    verbose: bool = False

    def which(self, tool: str) -> str:
        found = shutil.which(tool, path=self.env.get("PATH", os.defpath))
        if found is None:
            raise ToolError(
                f"couldn't find '{tool}' on PATH — run scripts/bootstrap "
                "(and install dcforge into the active environment: pip install -e .)"
            )
        return found

    def run(
        self,
        argv: Sequence[str | Path],
        *,
        timeout: float = DEFAULT_TIMEOUT,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        input_text: str | None = None,
        check: bool = True,
        mutates: bool = True,
        ok_codes: Sequence[int] = (0,),
    ) -> Result:
        """Run ``argv``; ``env`` adds to the base environment.

        ``mutates=False`` marks a read-only call (an inspect, a digest lookup) that still runs
        under ``dry_run`` so that a dry run can show a true plan.
        """
        args = [str(a) for a in argv]
        full_env = {**self.env, **(env or {})}
        secrets = secret_values(full_env)
        shown = redact(shlex.join(args), secrets)
        if self.dry_run and mutates:
            log.info(f"+ {shown}  (dry run: not run)")
            return Result(tuple(args), 0, "", "")
        if self.verbose:
            log.info(f"+ {shown}")
        result = self._execute(args, full_env, cwd, input_text, timeout, shown)
        if self.verbose and result.stderr:
            log.info(redact(result.stderr.rstrip(), secrets))
        if check and result.returncode not in ok_codes:
            raise _failure(result, shown, secrets)
        return result

    def _execute(
        self,
        args: list[str],
        env: Mapping[str, str],
        cwd: Path | None,
        input_text: str | None,
        timeout: float,
        shown: str,
    ) -> Result:
        tool = Path(args[0]).name
        try:
            proc = subprocess.run(
                [self.which(args[0]), *args[1:]],
                env=dict(env),
                cwd=cwd,
                input=input_text,
                capture_output=True,
                text=True,
                errors="replace",
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired as err:
            raise ToolError(f"{tool} timed out after {timeout:g} s: {shown}") from err
        except OSError as err:
            raise ToolError(f"{tool} could not start: {err}") from err
        return Result(tuple(args), proc.returncode, proc.stdout, proc.stderr)


def _failure(result: Result, shown: str, secrets: frozenset[str]) -> ToolError:
    """One line for the user (the tool's last line); the tail is shown with --verbose."""
    lines = [ln.strip() for ln in (result.stderr or result.stdout).splitlines() if ln.strip()]
    last = redact(lines[-1], secrets)[:400] if lines else "(no output)"
    tail = redact("\n".join(lines[-STDERR_TAIL_LINES:]), secrets)
    tool = Path(result.argv[0]).name
    return ToolError(
        f"{tool} exited {result.returncode}: {last}", details=f"command: {shown}\n{tail}"
    )
