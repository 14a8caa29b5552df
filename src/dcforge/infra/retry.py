"""Retry transient registry failures with backoff (tenacity); permanent ones fail at once."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TypeVar

import tenacity

from dcforge.core.errors import ToolError
from dcforge.infra import log

T = TypeVar("T")

# What a registry that is restarting, overloaded or briefly unreachable looks like.
TRANSIENT = re.compile(
    r"connection refused|connection reset|broken pipe|\bEOF\b|i/o timeout|timed out|"
    r"TLS handshake timeout|no route to host|\b50[0234]\b|too many requests|\b429\b|"
    r"service unavailable|bad gateway",
    re.IGNORECASE,
)
ATTEMPTS = 5


def is_transient(err: BaseException) -> bool:
    return isinstance(err, ToolError) and bool(TRANSIENT.search(f"{err} {err.details}"))


def _log(state: tenacity.RetryCallState) -> None:
    exc = state.outcome.exception() if state.outcome else None
    log.warn(f"transient registry error, retry {state.attempt_number}/{ATTEMPTS - 1}: {exc}")


def transient(fn: Callable[[], T], *, attempts: int = ATTEMPTS) -> T:
    """Call ``fn``, retrying transient ToolErrors with exponential backoff (0.5 s … 8 s)."""
    retrying = tenacity.Retrying(
        retry=tenacity.retry_if_exception(is_transient),
        wait=tenacity.wait_exponential(multiplier=0.5, max=8),
        stop=tenacity.stop_after_attempt(attempts),
        before_sleep=_log,
        reraise=True,
    )
    return retrying(fn)
