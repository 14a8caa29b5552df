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
        tool = Path(args[0]).name
        full_env = {**self.env, **(env or {})}
        secrets = secret_values(full_env)
        shown = redact(shlex.join(args), secrets)
        if self.dry_run and mutates:
            log.info(f"+ {shown}  (dry run: not run)")
            return Result(tuple(args), 0, "", "")
        if self.verbose:
            log.info(f"+ {shown}")
        executable = self.which(args[0])
        try:
            proc = subprocess.run(
                [executable, *args[1:]],
                env=full_env,
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
        result = Result(tuple(args), proc.returncode, proc.stdout, proc.stderr)
        if self.verbose and proc.stderr:
            log.info(redact(proc.stderr.rstrip(), secrets))
        if check and proc.returncode not in ok_codes:
            lines = [ln.strip() for ln in (proc.stderr or proc.stdout).splitlines() if ln.strip()]
            last = redact(lines[-1], secrets)[:400] if lines else "(no output)"
            tail = redact("\n".join(lines[-STDERR_TAIL_LINES:]), secrets)
            raise ToolError(
                f"{tool} exited {proc.returncode}: {last}",
                details=f"command: {shown}\n{tail}",
            )
        return result
