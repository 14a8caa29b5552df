"""vulndb: a DB that cannot be fetched is one problem line — what each repository's tool
said, then the advice its cause calls for, not the registry client's generic hint."""

from __future__ import annotations

from dcforge.core.errors import DcforgeError, RegistryError, ToolError
from dcforge.infra import vulndb

DNS = (
    'Error: failed to resolve digest: Head "https://{host}/v2/x/trivy-db/manifests/2": '
    "dial tcp: lookup {host} on 10.255.255.53:53: no such host"
)


def resolve_failure(reference: str, said: str) -> RegistryError:
    """A failed ``oras resolve`` as :func:`dcforge.infra.tools.registry.resolve` raises it:
    the tool's words wrapped with a hint of its own."""
    tool = ToolError(f"oras exited 1: {said}", details=f"command: oras resolve {reference}")
    try:
        raise RegistryError(
            f"cannot resolve {reference}: {tool} — is the registry up (scripts/bootstrap) and "
            "the image pushed?"
        ) from tool
    except RegistryError as err:
        return err


def test_a_name_that_does_not_resolve_is_not_a_registry_that_is_down() -> None:
    repository = "mirror.example.invalid/x/trivy-db:2"
    err = resolve_failure(repository, DNS.format(host="mirror.example.invalid"))
    problem = vulndb.fetch_problem(repository, [(repository, err)])
    assert problem.startswith(f"the Trivy DB could not be downloaded from {repository} (")
    assert "no such host" in problem  # the tool's own words
    assert "mirror.example.invalid does not resolve" in problem
    assert "is the registry up" not in problem
    assert "trivy-db-mirror" not in problem  # a configured repository: fix its name


def test_trivys_own_repositories_advise_once_per_cause_and_a_mirror() -> None:
    failures: list[tuple[str, DcforgeError]] = [
        (r, resolve_failure(r, DNS.format(host=r.split("/")[0])))
        for r in vulndb.TRIVY_DEFAULT_DB_REPOSITORIES
    ]
    problem = vulndb.fetch_problem("", failures)
    assert "from Trivy's default repositories (mirror.gcr.io/aquasec/trivy-db:2: " in problem
    assert problem.count("does not resolve") == 1
    assert problem.endswith(vulndb.MIRROR_HINT)


def test_a_failed_download_keeps_trivys_words() -> None:
    repository = "127.0.0.1:5999/dcforge/trivy-db:2"
    err = ToolError(
        "trivy exited 1: MANIFEST_UNKNOWN: manifest unknown", details="command: trivy image"
    )
    problem = vulndb.fetch_problem(repository, [(repository, err)])
    assert "trivy exited 1: MANIFEST_UNKNOWN" in problem
    assert "check the repository and tag name" in problem
