"""registry_advice: the advice for a registry fetch that failed follows its cause, read from
the tool's own words (oras and Trivy, as they print them)."""

from __future__ import annotations

import pytest

from dcforge.core import registry_advice

DB = "ghcr.io/example/trivy-db:2"
LOCAL_DB = "127.0.0.1:5999/dcforge/trivy-db:2"

# What oras and Trivy say, verbatim (their last lines), and the cause each one is.
SAID = [
    (
        'oras exited 1: Error: failed to resolve digest: Head "https://ghcr.io/v2/example/'
        'trivy-db/manifests/2": dial tcp: lookup ghcr.io on 10.255.255.53:53: no such host',
        "name resolution",
    ),
    (
        "trivy exited 1: FATAL init error: DB error: failed to download vulnerability DB: "
        'Get "https://ghcr.io/v2/": dial tcp: lookup ghcr.io on 10.0.0.53:53: read udp '
        "10.0.0.7:41234->10.0.0.53:53: i/o timeout",
        "name resolution",
    ),
    ("curl: (6) Could not resolve host: ghcr.io", "name resolution"),
    (
        'oras exited 1: Error: failed to resolve digest: Head "http://127.0.0.1:5999/v2/'
        'dcforge/trivy-db/manifests/2": dial tcp 127.0.0.1:5999: connect: connection refused',
        "connection refused",
    ),
    (
        "oras exited 1: Error response from registry: recognizable error message not found: "
        'failed to resolve digest: HEAD "https://ghcr.io/v2/example/trivy-db/manifests/2": '
        "response status code 401: Unauthorized",
        "unauthorized",
    ),
    (
        "trivy exited 1: OCI repository error: GET https://ghcr.io/token?scope=repository%3A"
        "example%2Ftrivy-db%3Apull&service=ghcr.io: DENIED: denied",
        "unauthorized",
    ),
    (
        "oras exited 1: Error: failed to resolve digest: 127.0.0.1:5999/dcforge/no-such-db:2: "
        "not found",
        "not found",
    ),
    (
        "trivy exited 1: GET https://registry.example/v2/aquasec/trivy-db/manifests/2: "
        "MANIFEST_UNKNOWN: manifest unknown; map[Tag:2]",
        "not found",
    ),
    (
        'trivy exited 1: Get "https://ghcr.io/v2/": dial tcp 140.82.121.34:443: i/o timeout',
        "timeout",
    ),
    ("oras exited 1: Error: something nobody has seen before", ""),
]


@pytest.mark.parametrize(("said", "cause"), SAID, ids=[c or "unknown" for _, c in SAID])
def test_the_cause_is_read_from_the_tools_words(said: str, cause: str) -> None:
    assert registry_advice.cause(said) == cause


def test_each_cause_gets_its_own_advice() -> None:
    """A DNS failure is not "is the registry up?"; a missing tag is not the network."""
    dns = registry_advice.advice(SAID[0][0], DB)
    assert "ghcr.io does not resolve" in dns and "DNS" in dns
    assert "is the registry up" not in dns
    refused = registry_advice.advice(SAID[3][0], LOCAL_DB)
    assert "nothing answers at 127.0.0.1:5999: is the registry up" in refused
    credentials = registry_advice.advice(SAID[4][0], DB)
    assert "credentials" in credentials and "is the registry up" not in credentials
    missing = registry_advice.advice(SAID[6][0], LOCAL_DB)
    assert "has no dcforge/trivy-db:2: check the repository and tag name" in missing
    assert "network" not in missing
    assert "network" in registry_advice.advice(SAID[8][0], DB)
    assert registry_advice.advice(SAID[-1][0], DB) == "check ghcr.io and the network"


def test_credentials_come_before_a_missing_repository() -> None:
    """oras wraps a 401 in "recognizable error message not found": it is a login problem."""
    assert "not found" in SAID[4][0]
    assert registry_advice.cause(SAID[4][0]) == "unauthorized"
