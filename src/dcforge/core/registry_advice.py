"""What to do when a registry cannot be read, told from the tool's own words.

oras and Trivy say why a fetch failed in their last lines (Go's resolver, the TCP dial, the
registry's error code). The advice follows that cause: a host name that does not resolve is
not "is the registry up?", and a missing tag is not a network problem.
"""

from __future__ import annotations

import re

from dcforge.core.refs import registry_host

# (cause, what the tools say when it is the cause), checked in this order: a registry's
# 401 can come wrapped in "recognizable error message not found", so credentials are
# asked about before a missing repository; Go reports a DNS timeout as "lookup … on …:
# i/o timeout", so name resolution is asked about before a timeout.
CAUSES: tuple[tuple[str, re.Pattern[str]], ...] = (
    (
        "name resolution",
        re.compile(
            r"no such host|server misbehaving|name resolution|name or service not known|"
            r"nodename nor servname|could not resolve host|\blookup \S+ on \S+:",
            re.IGNORECASE,
        ),
    ),
    ("connection refused", re.compile(r"connection refused", re.IGNORECASE)),
    (
        "unauthorized",
        re.compile(
            r"unauthori[sz]ed|\b401\b|denied|forbidden|\b403\b|authentication required",
            re.IGNORECASE,
        ),
    ),
    (
        "not found",
        re.compile(
            r"not found|name unknown|manifest unknown|repository name not known|\b404\b",
            re.IGNORECASE,
        ),
    ),
    (
        "timeout",
        re.compile(r"i/o timeout|timed out|no route to host|deadline exceeded", re.IGNORECASE),
    ),
)


def cause(said: str) -> str:
    """The first cause in :data:`CAUSES` whose words ``said`` holds, or "" when none does."""
    for name, words in CAUSES:
        if words.search(said):
            return name
    return ""


def advice(said: str, reference: str) -> str:
    """What to check when ``reference`` could not be fetched and its tool said ``said``."""
    host = reference.split("/", 1)[0]  # as written, with its port
    return {
        "name resolution": f"the host name {registry_host(reference)} does not resolve: "
        "check it, and this machine's network and DNS",
        "connection refused": f"nothing answers at {host}: is the registry up "
        "(scripts/bootstrap for the local one)?",
        "unauthorized": f"{host} refused access: check the credentials for it "
        "(DCFORGE_REGISTRY_USERNAME/_PASSWORD) and that they may read the repository",
        "not found": f"{host} has no {reference.split('/', 1)[-1]}: check the repository "
        "and tag name",
        "timeout": f"{host} did not answer in time: check the network (a proxy, a firewall?)",
    }.get(cause(said), f"check {host} and the network")
