from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from dcforge.core import cache

LOCAL = Path("/cache")
H = "0123456789abcdef" * 4


def ctx(event: str, ref: str, payload: Mapping[str, Any] | None = None) -> cache.CiContext:
    env = {"GITHUB_ACTIONS": "true", "GITHUB_EVENT_NAME": event, "GITHUB_REF": ref}
    return cache.ci_context(env, payload, "main")


def args(c: cache.CiContext, backend: str = "local") -> cache.CacheArgs:
    return cache.cache_args(c, backend, "python-3.12", H, local_dir=LOCAL, cache_registry="r/cache")


def test_default_branch_reads_and_writes_main_scope() -> None:
    a = args(ctx("push", "refs/heads/main"))
    assert a.scope == "main"
    assert a.cache_from == ("type=local,src=/cache/main-python-3.12-0123456789ab",)
    assert a.cache_to == ("type=local,dest=/cache/main-python-3.12-0123456789ab,mode=max",)


def test_pull_request_reads_own_and_main_writes_only_own() -> None:
    payload = {"number": 42, "pull_request": {"number": 42, "head": {"repo": {"fork": False}}}}
    a = args(ctx("pull_request", "refs/pull/42/merge", payload), "gha")
    assert a.scope == "pr-42"
    assert a.cache_from == (
        "type=gha,scope=pr-42-python-3.12-0123456789ab",
        "type=gha,scope=main-python-3.12-0123456789ab",
    )
    assert a.cache_to == ("type=gha,scope=pr-42-python-3.12-0123456789ab,mode=max",)
    assert all("main-" not in t for t in a.cache_to)


def test_fork_pull_request_never_writes_a_registry_cache() -> None:
    payload = {"pull_request": {"number": 7, "head": {"repo": {"fork": True}}}}
    a = args(ctx("pull_request", "refs/pull/7/merge", payload), "registry")
    assert a.scope == "pr-7"
    assert a.cache_to == ()
    assert a.cache_from[1] == "type=registry,ref=r/cache:main-python-3.12-0123456789ab"


def test_pr_number_from_ref_when_payload_missing() -> None:
    assert args(ctx("pull_request", "refs/pull/9/merge")).scope == "pr-9"


def test_tag_and_manual_runs_get_their_own_scope_and_read_main() -> None:
    tag = args(ctx("push", "refs/tags/v1.2.3"))
    assert tag.scope == "tag-v1-2-3"
    assert tag.cache_from[1].endswith("/main-python-3.12-0123456789ab")
    manual_main = args(ctx("workflow_dispatch", "refs/heads/main"))
    assert manual_main.scope == "main"
    manual_branch = args(ctx("workflow_dispatch", "refs/heads/feature/x"))
    assert manual_branch.scope == "branch-feature-x"
    assert all("main-" not in t for t in manual_branch.cache_to)


def test_default_branch_from_event_payload() -> None:
    payload = {"repository": {"default_branch": "trunk"}}
    assert args(ctx("push", "refs/heads/trunk", payload)).scope == "main"
    assert args(ctx("push", "refs/heads/main", payload)).scope == "branch-main"


def test_local_runs_use_the_local_scope() -> None:
    a = args(cache.ci_context({}, None, "main"))
    assert a.scope == "local"
    assert a.cache_from == ("type=local,src=/cache/local-python-3.12-0123456789ab",)


def test_none_backend_and_unknown_backend() -> None:
    assert args(ctx("push", "refs/heads/main"), "none").cache_to == ()
    with pytest.raises(ValueError, match="unknown cache backend"):
        args(ctx("push", "refs/heads/main"), "s3")


@pytest.mark.parametrize("event", ["pull_request", "pull_request_target"])
def test_no_pr_context_ever_writes_main(event: str) -> None:
    for backend in ("local", "gha", "registry"):
        a = args(ctx(event, "refs/pull/3/merge", {"pull_request": {"number": 3}}), backend)
        assert all("main-" not in t for t in a.cache_to)
