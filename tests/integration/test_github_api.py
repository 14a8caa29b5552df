"""The GitHub REST client against a local server answering as the documented API does
(GitHub itself cannot be reached here): Link-header pagination, org and user owners, the
documented 404/403/429 answers, and a token that never leaves the API's origin."""

from __future__ import annotations

import pytest

from dcforge.core.errors import RegistryError
from dcforge.infra.tools import github
from tests.integration.fake_github import FakeGitHub, State

TOKEN = "ghp_" + "y" * 36


def packages(n: int, **state: object) -> State:
    st = State(**state)  # type: ignore[arg-type]
    for i in range(n):
        st.add_version(f"dc/p{i:03d}", "sha256:" + f"{i:064x}", [f"t{i}"], "2026-01-01T00:00:00Z")
    st.add_version("other/x", "sha256:" + "f" * 64, [], "2026-01-01T00:00:00Z")
    return st


@pytest.mark.parametrize("owner_type", ["Organization", "User"])
def test_container_packages_of_an_org_or_a_user_page_by_page_as_the_link_header_leads(
    owner_type: str,
) -> None:
    st = packages(250, owner_type=owner_type)
    with FakeGitHub(st) as fake:
        client = github.GitHub(TOKEN, fake.url)
        kind = client.owner_kind("acme")
        names = client.container_packages(kind, "acme")
    assert kind == ("orgs" if owner_type == "Organization" else "users")
    assert len(names) == 251 and len(set(names)) == 251
    listed = [r for r in st.requests if r.startswith(f"GET /{kind}/acme/packages?")]
    assert len(listed) == 3  # 100 + 100 + 51, then no rel="next"
    assert all(a == f"Bearer {TOKEN}" for a in st.auth)


def test_the_documented_errors_are_one_clear_line() -> None:
    with FakeGitHub(packages(1)) as fake:
        client = github.GitHub(TOKEN, fake.url, attempts=2)
        with pytest.raises(RegistryError, match="404 Not Found — no such owner"):
            client.container_packages("orgs", "nobody")
        fake.state.forbid = True
        with pytest.raises(RegistryError, match=r"403 .*packages: read"):
            client.container_packages("orgs", "acme")
        fake.state.forbid = False
        fake.state.rate_limit_next = 1  # 429 Retry-After: 0, then served
        assert len(client.container_packages("orgs", "acme")) == 2
        fake.state.rate_limit_next = 5
        with pytest.raises(RegistryError, match="gave up after retries"):
            client.container_packages("orgs", "acme")


def test_a_link_off_the_api_origin_is_never_followed_with_the_token() -> None:
    st = packages(150, link_host="http://127.0.0.2:9")
    with FakeGitHub(st) as fake:
        client = github.GitHub(TOKEN, fake.url)
        with pytest.raises(RegistryError, match=r"refusing to follow http://127\.0\.0\.2:9"):
            client.container_packages("orgs", "acme")
    assert len(st.requests) == 1
