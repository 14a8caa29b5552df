"""Fault injectors: wrappers placed first on PATH that run the REAL tool after doing harm
(killing the registry, restarting it) on a chosen call. They never stand in for the tool."""

from __future__ import annotations

import shutil
import stat
from pathlib import Path


def wrapper(
    directory: Path, tool: str, match: str, nth: int, action: str, *, version_json: str = ""
) -> Path:
    """On the ``nth`` call of ``tool`` whose arguments start with ``match`` (counted under a
    lock: calls may run at once), run ``action`` (shell) first; every call then execs the
    real tool. ``version_json``: what ``tool version --json`` answers, for a tool whose
    pinned version is read from the package that installed it (cosign's)."""
    directory.mkdir(parents=True, exist_ok=True)
    real = shutil.which(tool)
    assert real, tool
    counter = directory / f"{tool}.count"
    script = directory / tool
    answer = f"if [ \"$*\" = 'version --json' ]; then echo '{version_json}'; exit 0; fi\n"
    script.write_text(
        "#!/bin/sh\n" + (answer if version_json else "") + f'case "$*" in\n  "{match}"*)\n'
        # Counted under a lock: dcforge runs several calls of a tool at once.
        f'    n=$(flock "{counter}.lock" sh -c \'n=$(($(cat "$1" 2>/dev/null || echo 0) + 1)); '
        f'echo $n > "$1"; echo $n\' sh "{counter}")\n'
        f'    if [ "$n" -eq {nth} ]; then {action}; touch "{directory}/fired"; fi ;;\n'
        "esac\n"
        f'exec {real} "$@"\n'
    )
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return directory


def kill_registry(pid_file: Path) -> str:
    return f'kill -9 "$(cat {pid_file})"'


def restart_registry(pid_file: Path, config: Path, log: Path) -> str:
    """Kill it, then bring it back in the background two seconds later (a supervisor
    restarting a crash). Without the pause a quick restart could be listening before the
    call that follows connects, and nothing would be left to retry (a flaky test)."""
    return (
        f'kill -9 "$(cat {pid_file})"; '
        f"(sleep 2; exec setsid docker-registry serve {config} >>{log} 2>&1) & "
        f"echo $! > {pid_file}"
    )
