"""Unit tests never spawn a process: a tripwire makes any attempt fail loudly."""

from __future__ import annotations

import subprocess
from typing import Any

import pytest


@pytest.fixture(autouse=True)
def _no_subprocesses(monkeypatch: pytest.MonkeyPatch) -> None:
    def tripwire(*args: Any, **kwargs: Any) -> None:
        raise AssertionError(f"unit tests must not spawn processes: {args[:1]}")

    monkeypatch.setattr(subprocess, "Popen", tripwire)
